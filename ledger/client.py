"""A Python client of the ledger's HTTP API, for annotation tools and auditors.

    with LedgerClient("https://ledger.example", token) as client:
        reply = client.append("street-scenes", [event, ...])   # atomic batch
        for entry in client.entries("street-scenes", type="mask.created"):
            ...

Retries are safe because every event carries its client UUID: posting a batch again
after a lost answer returns the original sequence numbers instead of appending twice.
The client retries on connection errors, timeouts and 502/503/504, waiting what
``Retry-After`` says (else an exponential backoff with jitter), and gives up after
``retries`` attempts. Events without an ``id`` get a fresh UUID once, before the first
attempt, so that the retries carry the same one.

Auditors check what the server says instead of trusting it: ``verified_checkpoint``
opens a signed checkpoint with verifier keys the auditor holds, ``verify_inclusion``
proves an entry is in it, and ``verify_consistency`` proves a newer checkpoint extends
an older one (RFC 9162 proofs, checked with ``ledger.merkle``).

Errors are ``LedgerError`` subclasses, as in the library: ``InvalidInput`` (400, 413,
415, 422, with ``.errors`` naming each field), ``Unauthorized``, ``Forbidden``,
``NotFound``, ``Conflict`` (409), ``StorageUnavailable`` (503 or unreachable after the
retries), and :class:`ApiError` for anything else. ``ApiError.problem`` and the
``request_id`` in the message identify the request in the server's logs.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from ledger import merkle
from ledger.auth import Forbidden, Unauthorized
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    LedgerError,
    NotFound,
    ProofError,
    StorageUnavailable,
    VerificationFailed,
)
from ledger.note import Verifier, parse_verifier_key

__all__ = [
    "ApiError",
    "AppendReply",
    "Appended",
    "LedgerClient",
    "RemoteEntry",
]

RETRY_STATUSES = frozenset({502, 503, 504})
DEFAULT_BATCH = 1000


class ApiError(LedgerError):
    """An answer the client has no more specific error for."""

    exit_code = 5

    def __init__(self, message: str, status: int, problem: Mapping[str, Any] | None) -> None:
        super().__init__(message)
        self.status = status
        self.http_status = status
        self.problem = dict(problem or {})


@dataclass(frozen=True)
class Appended:
    id: str
    seq: int
    #: True when the event was already in the log (an idempotent retry)
    duplicate: bool


@dataclass(frozen=True)
class AppendReply:
    project: str
    size: int
    root: bytes
    results: list[Appended]

    @property
    def appended(self) -> int:
        return sum(1 for r in self.results if not r.duplicate)


@dataclass(frozen=True)
class RemoteEntry:
    seq: int
    #: the stored entry bytes, exactly as hashed
    raw: bytes

    @property
    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.raw)


def _problem_errors(problem: Mapping[str, Any]) -> list[FieldError]:
    errors = problem.get("errors") or []
    out = []
    for e in errors if isinstance(errors, list) else []:
        if isinstance(e, dict):
            out.append(FieldError(str(e.get("loc", "")), str(e.get("message", ""))))
    return out


def _error(response: httpx.Response) -> LedgerError:
    """The LedgerError an error answer stands for."""
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    status = response.status_code
    detail = str(problem.get("detail") or response.reason_phrase or f"HTTP {status}")
    errors = _problem_errors(problem)
    if status in (400, 413, 415, 422):
        invalid = InvalidInput(detail)  # the detail already lists the fields
        invalid.errors = errors
        return invalid
    if status == 401:
        return Unauthorized(detail)
    if status == 403:
        return Forbidden(detail, errors)
    if status == 404:
        return NotFound(detail)
    if status == 409:
        return Conflict(detail, errors)
    if status == 503:
        return StorageUnavailable(detail)
    rid = problem.get("request_id") or response.headers.get("X-Request-Id")
    return ApiError(f"{detail} (HTTP {status}, request id {rid})", status, problem)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _hash(value: Any, what: str) -> bytes:
    """A 32-byte hash sent as hex (or base64)."""
    if isinstance(value, str):
        if re.fullmatch(r"[0-9a-fA-F]{64}", value):
            return bytes.fromhex(value)
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == merkle.HASH_SIZE:
            return raw
    raise ProofError(f"{what} is not a 32-byte hash in hex or base64")


def _hashes(body: Mapping[str, Any], keys: Sequence[str], what: str) -> list[bytes]:
    for key in keys:
        if key in body:
            values = body[key]
            if not isinstance(values, list):
                raise ProofError(f"{what}: {key} is not a list")
            return [_hash(v, f"{what} hash {i}") for i, v in enumerate(values)]
    raise ProofError(f"{what}: the answer has none of the fields {', '.join(keys)}")


class LedgerClient:
    """A client of one ledger service, with one token. Thread-safe; reuse it."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 30.0,
        verifiers: Iterable[Verifier] = (),
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"User-Agent": "annotation-ledger-client"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.retries = max(1, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        #: the auditor's own verifier keys, used when none are passed to a check
        self.verifiers = list(verifiers)
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LedgerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ----------------------------------------------------------------------
    def _wait(self, attempt: int, response: httpx.Response | None) -> None:
        told = _retry_after(response) if response is not None else None
        if told is None:
            told = self.backoff * 2**attempt * (0.5 + random.random())
        self._sleep(min(told, self.max_backoff))

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Send a request, retrying what is safe to retry; raise on an error answer.

        Every endpoint is safe to retry: reads have no effect and appends are idempotent
        by event UUID.
        """
        query = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(self.retries):
            last = attempt == self.retries - 1
            try:
                response = self._http.request(method, path, json=json, params=query)
            except httpx.TransportError as e:
                if last:
                    raise StorageUnavailable(
                        f"cannot reach the ledger at {self._http.base_url}: {e}"
                    ) from e
                self._wait(attempt, None)
                continue
            if response.status_code in RETRY_STATUSES and not last:
                self._wait(attempt, response)
                continue
            if response.status_code >= 400:
                raise _error(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # --- writing ------------------------------------------------------------------------
    def append(self, project: str, events: Sequence[Mapping[str, Any]]) -> AppendReply:
        """Append a batch atomically (all or nothing); retried safely on failures."""
        batch = [dict(e) if "id" in e else {**e, "id": str(uuid.uuid4())} for e in events]
        body = self._json("POST", f"/v1/projects/{project}/events", json={"events": batch})
        return AppendReply(
            project=body["project"],
            size=int(body["size"]),
            root=bytes.fromhex(body["root"]),
            results=[
                Appended(r["id"], int(r["seq"]), bool(r["duplicate"])) for r in body["results"]
            ],
        )

    def append_one(self, project: str, event: Mapping[str, Any]) -> Appended:
        return self.append(project, [event]).results[0]

    def append_all(
        self,
        project: str,
        events: Iterable[Mapping[str, Any]],
        batch_size: int = DEFAULT_BATCH,
    ) -> list[AppendReply]:
        """Append many events in batches of ``batch_size``; each batch is atomic."""
        replies = []
        batch: list[Mapping[str, Any]] = []
        for event in events:
            batch.append(event)
            if len(batch) >= batch_size:
                replies.append(self.append(project, batch))
                batch = []
        if batch:
            replies.append(self.append(project, batch))
        return replies

    def create_project(
        self, project: str, name: str, description: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"project": project, "name": name}
        if description is not None:
            body["description"] = description
        found: dict[str, Any] = self._json("POST", "/v1/projects", json=body)
        return found

    # --- reading ------------------------------------------------------------------------
    def whoami(self) -> dict[str, Any]:
        found: dict[str, Any] = self._json("GET", "/v1/whoami")
        return found

    def projects(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._json("GET", "/v1/projects")["projects"]
        return found

    def project(self, project: str) -> dict[str, Any]:
        found: dict[str, Any] = self._json("GET", f"/v1/projects/{project}")
        return found

    def entries(
        self,
        project: str,
        start: int = 0,
        end: int | None = None,
        *,
        type: str | None = None,
        actor: str | None = None,
        instance: str | None = None,
        image: str | None = None,
        guideline: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 1000,
    ) -> Iterator[RemoteEntry]:
        """Entries in sequence order, following the cursor page by page."""
        params: dict[str, Any] = {
            "from": start,
            "to": end,
            "type": type,
            "actor": actor,
            "instance": instance,
            "image": image,
            "guideline": guideline,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "limit": page_size,
        }
        while True:
            page = self._json("GET", f"/v1/projects/{project}/entries", params=params)
            for item in page["entries"]:
                yield self._entry(item)
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def entry(self, project: str, seq: int) -> RemoteEntry:
        return self._entry(self._json("GET", f"/v1/projects/{project}/entries/{seq}"))

    @staticmethod
    def _entry(item: Mapping[str, Any]) -> RemoteEntry:
        entry = RemoteEntry(int(item["seq"]), str(item["entry"]).encode("utf-8"))
        if "leaf_hash" in item and entry.leaf_hash.hex() != item["leaf_hash"]:
            raise VerificationFailed(f"entry {entry.seq}: the leaf hash sent does not match")
        return entry

    def instance(self, project: str, instance_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._json("GET", f"/v1/projects/{project}/instances/{instance_id}")
        return found

    def verify(self, project: str) -> dict[str, Any]:
        """The server's own verification of the log (``ok``, ``failure``)."""
        found: dict[str, Any] = self._json("GET", f"/v1/projects/{project}/verify")
        return found

    # --- checkpoints and proofs, checked here --------------------------------------------
    def verifier_keys(self) -> list[Verifier]:
        """The verifier keys the server publishes (compare them with yours out of band:
        checking a server's checkpoints with the keys it serves proves nothing)."""
        response = self.request("GET", "/v1/keys")
        if "json" in response.headers.get("Content-Type", ""):
            body = response.json()
            items = body.get("keys", body) if isinstance(body, dict) else body
            texts = [k if isinstance(k, str) else k.get("verifier_key", "") for k in items]
        else:
            texts = [line.strip() for line in response.text.splitlines()]
        return [parse_verifier_key(t) for t in texts if t and not t.startswith("#")]

    def checkpoint_note(self, project: str, size: int | None = None) -> bytes:
        """The signed checkpoint note, unverified: the latest, or the one at ``size``."""
        path = f"/v1/projects/{project}/checkpoints/{'latest' if size is None else size}"
        response = self.request("GET", path)
        if "json" in response.headers.get("Content-Type", ""):
            body = response.json()
            note = body.get("note") or body.get("checkpoint")
            if not isinstance(note, str):
                raise VerificationFailed(f"the checkpoint answer for {project} has no note")
            return note.encode("utf-8")
        return response.content

    def verified_checkpoint(
        self,
        project: str,
        size: int | None = None,
        verifiers: Iterable[Verifier] | None = None,
    ) -> Checkpoint:
        """A checkpoint whose signature verifies with ``verifiers`` (default: the
        client's), for this project's log."""
        keys = list(verifiers) if verifiers is not None else self.verifiers
        if not keys:
            raise VerificationFailed("no verifier keys to check the checkpoint with")
        cp, _ = open_checkpoint(self.checkpoint_note(project, size), keys)
        if not cp.origin.endswith(f"/{project}"):
            raise VerificationFailed(f"checkpoint origin {cp.origin!r} is not project {project}")
        if size is not None and cp.size != size:
            raise VerificationFailed(f"asked for the checkpoint at size {size}, got {cp.size}")
        return cp

    def inclusion_proof(self, project: str, index: int, size: int) -> list[bytes]:
        body = self._json(
            "GET",
            f"/v1/projects/{project}/proofs/inclusion",
            params={"index": index, "size": size},
        )
        return _hashes(body, ("inclusion_path", "hashes", "proof"), "inclusion proof")

    def consistency_proof(self, project: str, old_size: int, new_size: int) -> list[bytes]:
        body = self._json(
            "GET",
            f"/v1/projects/{project}/proofs/consistency",
            params={"from": old_size, "to": new_size},
        )
        return _hashes(body, ("consistency_path", "hashes", "proof"), "consistency proof")

    def verify_inclusion(
        self, project: str, seq: int, checkpoint: Checkpoint, entry: bytes | None = None
    ) -> RemoteEntry:
        """Prove that entry ``seq`` (fetched unless given) is in the signed tree."""
        found = RemoteEntry(seq, entry) if entry is not None else self.entry(project, seq)
        proof = self.inclusion_proof(project, seq, checkpoint.size)
        merkle.verify_inclusion(seq, checkpoint.size, found.leaf_hash, proof, checkpoint.root_hash)
        return found

    def verify_consistency(self, project: str, old: Checkpoint, new: Checkpoint) -> None:
        """Prove that the log of ``new`` extends the log of ``old`` (nothing rewritten)."""
        if old.origin != new.origin:
            raise VerificationFailed(f"checkpoints of two logs: {old.origin} and {new.origin}")
        proof = (
            [] if old.size in (0, new.size) else self.consistency_proof(project, old.size, new.size)
        )
        merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)

    def audit(
        self,
        project: str,
        trusted: Checkpoint | None = None,
        verifiers: Iterable[Verifier] | None = None,
    ) -> Checkpoint:
        """The latest signed checkpoint, proven to extend ``trusted`` when given: keep
        it and pass it next time."""
        latest = self.verified_checkpoint(project, verifiers=verifiers)
        if trusted is not None:
            if latest.size < trusted.size:
                raise VerificationFailed(
                    f"the latest checkpoint ({latest.size}) is older than the trusted one "
                    f"({trusted.size})"
                )
            self.verify_consistency(project, trusted, latest)
        return latest
