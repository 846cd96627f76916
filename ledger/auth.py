"""API tokens and roles: who may do what, to which project.

A token is ``ldg_<id>_<secret>``: a public 16-hex-digit id and 32 random bytes
(base64url). Only the SHA-256 of the whole token is stored; a presented token is looked
up by its id and its hash compared with :func:`hmac.compare_digest`. A token has one
role and is scoped to one project or to all projects. Tokens are never deleted, only
revoked, so the principal recorded in every entry (``token:<name>``) stays explained.

Roles (see docs/api.md for the full matrix):

* ``writer``   annotation tools and pipelines: ``image.registered``, ``mask.*``,
  ``counts.declared``, ``job.status_changed``; reads;
* ``reviewer`` QA: ``review.decided``, ``review.assigned``, ``mask.deleted``,
  ``counts.declared``; reads;
* ``auditor``  reads everything, verifies, writes nothing;
* ``admin``    every event type, projects, releases, checkpoints; with the
  all-projects scope also tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ledger.entry import format_time
from ledger.errors import Conflict, FieldError, InvalidInput, LedgerError, NotFound
from ledger.events import EVENT_TYPES
from ledger.service import check_project_name
from ledger.store.base import Store

Role = Literal["writer", "reviewer", "auditor", "admin"]
ROLES: tuple[Role, ...] = ("writer", "reviewer", "auditor", "admin")

#: event types each role may post
EVENT_PERMISSIONS: dict[str, frozenset[str]] = {
    "writer": frozenset(
        {
            "image.registered",
            "mask.created",
            "mask.edited",
            "mask.deleted",
            "counts.declared",
            "job.status_changed",
        }
    ),
    "reviewer": frozenset({"review.decided", "review.assigned", "mask.deleted", "counts.declared"}),
    "auditor": frozenset(),
    # every type, including types added later: the others opt in
    "admin": frozenset(EVENT_TYPES),
}

#: actions other than posting events, and the roles that may take them
ACTIONS: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "verify": frozenset({"auditor", "admin"}),
    "project.create": frozenset({"admin"}),
    "release.create": frozenset({"admin"}),
    "checkpoint.create": frozenset({"admin"}),
    # token management also needs the all-projects scope
    "tokens.manage": frozenset({"admin"}),
}

TOKEN_PREFIX = "ldg"
_TOKEN = re.compile(r"^ldg_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_ID = re.compile(r"^[0-9a-f]{16}$")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)

_COLUMNS = "id, name, role, project, hash, created_at, created_by, revoked_at"


class Unauthorized(LedgerError):
    """No credentials, or credentials that are malformed, unknown or revoked."""

    exit_code = 2
    http_status = 401
    title = "Unauthorized"


class Forbidden(LedgerError):
    """The credentials are valid but do not allow this action on this project."""

    exit_code = 2
    http_status = 403
    title = "Forbidden"

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        self.errors = list(errors or [])
        super().__init__(message)


@dataclass(frozen=True)
class Token:
    """A stored token, without its secret."""

    id: str
    name: str
    role: Role
    #: the one project it may act on, or None for every project
    project: str | None
    created_at: str
    created_by: str
    revoked_at: str | None = None

    @property
    def principal(self) -> str:
        """What entries record as the submitter."""
        return f"token:{self.name}"

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def in_scope(self, project: str) -> bool:
        return self.project is None or self.project == project

    def may(self, action: str) -> bool:
        """Whether the role allows ``action`` (see :data:`ACTIONS`), scope aside."""
        if action == "tokens.manage" and self.project is not None:
            return False
        return self.role in ACTIONS.get(action, frozenset())

    def may_post(self, event_type: str) -> bool:
        return event_type in EVENT_PERMISSIONS[self.role]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "project": self.project,
            "principal": self.principal,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "revoked_at": self.revoked_at,
        }


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def check_role(role: str, loc: str = "role") -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise InvalidInput.field(loc, f"unknown role {role!r}: use one of {', '.join(ROLES)}")


def check_token_name(name: str, loc: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput.field(
            loc,
            "token names are 1-64 characters of letters, digits, '.', '_', '@' and '-', "
            "starting with a letter or digit",
        )
    return name


def check_token_id(token_id: str, loc: str = "id") -> str:
    if not isinstance(token_id, str) or not _ID.match(token_id):
        raise InvalidInput.field(loc, "token ids are 16 lower-case hexadecimal digits")
    return token_id


def require(token: Token, action: str, project: str | None = None) -> None:
    """Raise Forbidden unless ``token`` may take ``action`` (on ``project``)."""
    if project is not None and not token.in_scope(project):
        raise Forbidden(f"token {token.name} is scoped to project {token.project}")
    if not token.may(action):
        if action == "tokens.manage" and token.role == "admin":
            raise Forbidden("managing tokens needs an admin token for all projects")
        raise Forbidden(f"a {token.role} token may not {action.replace('.', ' ')}")


def require_events(token: Token, project: str, types: Sequence[tuple[str, str]]) -> None:
    """Raise Forbidden naming the first event whose type the token may not post.

    ``types`` holds (location, event type) pairs; unknown types are left to validation.
    """
    require(token, "read", project)
    refused = [
        FieldError(loc, f"a {token.role} token may not post {kind} events")
        for loc, kind in types
        if kind in EVENT_TYPES and not token.may_post(kind)
    ]
    if refused:
        raise Forbidden(f"{refused[0].loc}: {refused[0].message}", refused)


def _row(row: dict[str, Any]) -> Token:
    return Token(
        id=str(row["id"]),
        name=str(row["name"]),
        role=check_role(str(row["role"])),
        project=row["project"],
        created_at=str(row["created_at"]),
        created_by=str(row["created_by"]),
        revoked_at=row["revoked_at"],
    )


class TokenStore:
    """Tokens in the ``tokens`` table of a ledger store.

    With ``cache_seconds``, a token that authenticated is trusted again for that long
    without a database query (keyed by its SHA-256): a revocation made by another
    process takes effect within that time, one made through this store at once.
    """

    #: most tokens cached at once; the cache is emptied when it is full
    CACHE_SIZE = 4096

    def __init__(self, store: Store, *, cache_seconds: float = 0.0) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[bytes, tuple[Token, float]] = {}
        self._lock = threading.Lock()

    def create(
        self,
        role: str,
        *,
        project: str | None = None,
        name: str | None = None,
        created_by: str,
    ) -> tuple[Token, str]:
        """Make a token; return it and its secret string, which is never stored."""
        checked_role = check_role(role)
        if project is not None:
            check_project_name(project)
        token_id = secrets.token_hex(8)
        name = check_token_name(name if name is not None else f"{role}-{token_id[:8]}")
        secret = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        token = Token(
            id=token_id,
            name=name,
            role=checked_role,
            project=project,
            created_at=format_time(datetime.now(UTC)),
            created_by=created_by,
        )
        if self.store.query("SELECT id FROM tokens WHERE name = ?", (name,)):
            raise Conflict(f"a token named {name!r} already exists")
        self.store.execute(
            f"INSERT INTO tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            (
                token.id, token.name, token.role, token.project, token_hash(secret),
                token.created_at, token.created_by,
            ),
        )  # fmt: skip
        return token, secret

    def list(self, *, include_revoked: bool = True) -> list[Token]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        rows = self.store.query(f"SELECT {_COLUMNS} FROM tokens{where} ORDER BY created_at, id")
        return [_row(r) for r in rows]

    def get(self, token_id: str) -> Token:
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (check_token_id(token_id),)
        )
        if not rows:
            raise NotFound(f"no token with id {token_id}")
        return _row(rows[0])

    def count_active(self) -> int:
        rows = self.store.query("SELECT COUNT(*) AS n FROM tokens WHERE revoked_at IS NULL")
        return int(rows[0]["n"])

    def revoke(self, token_id: str) -> Token:
        """Revoke a token (idempotent); return it as stored afterwards."""
        self.get(token_id)
        with self._lock:
            self._cache.clear()
        self.store.execute(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (format_time(datetime.now(UTC)), token_id),
        )
        return self.get(token_id)

    def authenticate(self, presented: str) -> Token:
        """The active token ``presented`` is, or Unauthorized. Messages never echo it."""
        match = _TOKEN.match(presented)
        if match is None:
            raise Unauthorized("the bearer token is malformed")
        digest = token_hash(presented)
        now = time.monotonic()
        if self.cache_seconds > 0:
            with self._lock:
                cached = self._cache.get(digest)
            if cached is not None and cached[1] > now:
                return cached[0]
        rows = self.store.query(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (match.group(1),))
        expected = bytes(rows[0]["hash"]) if rows else b"\0" * 32
        if not hmac.compare_digest(expected, digest) or not rows:
            raise Unauthorized("the bearer token is not valid")
        token = _row(rows[0])
        if not token.active:
            raise Unauthorized(f"token {token.name} was revoked at {token.revoked_at}")
        if self.cache_seconds > 0:
            with self._lock:
                if len(self._cache) >= self.CACHE_SIZE:
                    self._cache.clear()
                self._cache[digest] = (token, now + self.cache_seconds)
        return token
