"""Signed checkpoints of project logs: issuing, storing, reading, and the automatic policy.

A checkpoint is a C2SP tlog-checkpoint (origin ``<origin_prefix>/<project>``, tree
size, root hash) signed as a C2SP signed note with the ledger's Ed25519 key (see
:mod:`ledger.checkpoint` and :mod:`ledger.note`). Checkpoints are stored, one per
(project, tree size), in the append-only ``checkpoints`` table, and the verifier key of
every key that signed one is recorded in the append-only ``verifier_keys`` table.

Before signing, :meth:`CheckpointService.issue` proves with the stored tree that the
new tree extends the project's latest checkpoint (an RFC 9162 consistency proof, read
in one query together with the new root): the ledger never signs two checkpoints that
contradict each other, even if its database was rewritten behind its back.

Reading (no key needed): :func:`latest_checkpoint`, :func:`get_checkpoint`,
:func:`list_checkpoints`, :func:`stored_verifier_keys`. Issuing:
:class:`CheckpointService` (``issue``, ``maybe_issue``, ``maybe_issue_all``,
``on_append`` for ``Ledger(on_append=...)``) and :class:`CheckpointTimer`. Keys:
:func:`ensure_signing_key`, :func:`published_verifier_keys`.

Key rotation: generate a new key (``ledger keys generate``), add the old verifier key
to the file ``LEDGER_VERIFIER_KEYS_FILE`` names, and point ``LEDGER_SIGNING_KEY_FILE``
at the new key. Earlier checkpoints keep their signatures and stay verifiable against
the published keys.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger import merkle
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.config import Settings
from ledger.entry import format_time, parse_time
from ledger.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    LedgerError,
    NoteError,
    NotFound,
    ProofError,
    VerificationFailed,
)
from ledger.keys import load_signer_key, load_verifier_keys, write_signer_key
from ledger.note import Signer, Verifier, generate_signer, parse_verifier_key
from ledger.proofs import read_batched
from ledger.service import AppendResult
from ledger.store.base import Store

__all__ = [
    "CheckpointService",
    "CheckpointTimer",
    "StoredCheckpoint",
    "ensure_signing_key",
    "get_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "origin_for",
    "publish_verifier_key",
    "published_verifier_keys",
    "stored_verifier_keys",
]

log = logging.getLogger(__name__)

_COLUMNS = "project, size, root, key_name, key_id, note, created_at"


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint as stored: ``note`` is the signed note, byte for byte."""

    project: str
    size: int
    root: bytes
    key_name: str
    key_id: bytes
    note: bytes
    created_at: str

    @property
    def text(self) -> str:
        """The signed note as text (it is UTF-8 by construction)."""
        return self.note.decode("utf-8", errors="replace")

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "tree_size": self.size,
            "root_hash": self.root.hex(),
            "key_name": self.key_name,
            "key_id": self.key_id.hex(),
            "created_at": self.created_at,
            "note": self.text,
        }


def _from_row(r: dict[str, Any]) -> StoredCheckpoint:
    return StoredCheckpoint(
        project=r["project"],
        size=int(r["size"]),
        root=bytes(r["root"]),
        key_name=r["key_name"],
        key_id=bytes(r["key_id"]),
        note=bytes(r["note"]),
        created_at=r["created_at"],
    )


def origin_for(origin_prefix: str, project: str) -> str:
    """The checkpoint origin line of a project's log: ``<origin_prefix>/<project>``."""
    return f"{origin_prefix}/{project}"


# --- reading --------------------------------------------------------------------------


def latest_checkpoint(store: Store, project: str) -> StoredCheckpoint | None:
    """The project's checkpoint with the largest tree size, or None."""
    rows = store.query(
        f"SELECT {_COLUMNS} FROM checkpoints WHERE project = ? ORDER BY size DESC LIMIT 1",
        (project,),
    )
    return _from_row(rows[0]) if rows else None


def get_checkpoint(store: Store, project: str, size: int) -> StoredCheckpoint:
    """The checkpoint at tree size ``size``; NotFound if none was issued at that size."""
    rows = store.query(
        f"SELECT {_COLUMNS} FROM checkpoints WHERE project = ? AND size = ?", (project, size)
    )
    if not rows:
        raise NotFound(f"project {project} has no checkpoint at tree size {size}")
    return _from_row(rows[0])


def list_checkpoints(
    store: Store, project: str, *, after: int = 0, limit: int = 100
) -> list[StoredCheckpoint]:
    """Checkpoints with tree size above ``after``, smallest first, at most ``limit``
    (page on with ``after`` = the last size returned)."""
    if limit < 1:
        raise InvalidInput.field("limit", f"must be at least 1, got {limit}")
    rows = store.query(
        f"SELECT {_COLUMNS} FROM checkpoints WHERE project = ? AND size > ? ORDER BY size LIMIT ?",
        (project, after, limit),
    )
    return [_from_row(r) for r in rows]


def stored_verifier_keys(store: Store) -> list[Verifier]:
    """Every verifier key published in the database, oldest first."""
    out = []
    for r in store.query("SELECT verifier_key FROM verifier_keys ORDER BY published_at"):
        try:
            out.append(parse_verifier_key(r["verifier_key"]))
        except NoteError:
            log.warning("skipping a malformed key in the verifier_keys table")
    return out


def publish_verifier_key(store: Store, verifier: Verifier, clock: datetime | None = None) -> bool:
    """Record a verifier key in the database; True if it was not there yet."""
    count = store.execute(
        "INSERT INTO verifier_keys (key_name, key_id, verifier_key, published_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (key_name, key_id) DO NOTHING",
        (verifier.name, verifier.key_id, verifier.key_string(), format_time(clock or _now())),
    )
    return count > 0


# --- keys -----------------------------------------------------------------------------


def ensure_signing_key(settings: Settings) -> Signer:
    """The signer in ``settings.effective_signing_key_file``, generated on first run.

    Only the default file (``<data_dir>/signing.key``) is generated, mode 0600, named
    after ``origin_prefix``; a key file named explicitly by ``LEDGER_SIGNING_KEY_FILE``
    must exist. Two processes starting at once end up with the same key.
    """
    path = settings.effective_signing_key_file
    if path.exists() or settings.signing_key_file is not None:
        if not path.exists():
            raise ConfigError(
                f"LEDGER_SIGNING_KEY_FILE names {path}, which does not exist; "
                "create a key with `ledger keys generate --name NAME --out FILE`"
            )
        return load_signer_key(path)
    try:
        signer = generate_signer(settings.origin_prefix)
    except NoteError as e:
        raise ConfigError(f"LEDGER_ORIGIN_PREFIX cannot name a signing key: {e}") from e
    # Write the whole file under a temporary name, then link it into place: the link
    # fails if another process got there first, and nobody ever reads a partial key.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    write_signer_key(temp, signer)
    try:
        os.link(temp, path)
    except FileExistsError:
        return load_signer_key(path)
    except OSError as e:
        raise ConfigError(f"cannot create signing key file {path}: {e.strerror}") from e
    finally:
        temp.unlink(missing_ok=True)
    log.info("generated a new signing key %s in %s", signer.verifier().key_string(), path)
    return signer


def published_verifier_keys(settings: Settings, signer: Signer | None = None) -> list[Verifier]:
    """The keys checkpoints are verified against: the current signing key's verifier
    (``signer``, or the key file if it exists) and every key in
    ``LEDGER_VERIFIER_KEYS_FILE``. Duplicates are dropped."""
    keys: list[Verifier] = []
    if signer is None and settings.effective_signing_key_file.exists():
        signer = load_signer_key(settings.effective_signing_key_file)
    if signer is not None:
        keys.append(signer.verifier())
    if settings.verifier_keys_file is not None:
        keys.extend(load_verifier_keys(Path(settings.verifier_keys_file)))
    unique: dict[tuple[str, bytes, bytes], Verifier] = {}
    for k in keys:
        unique.setdefault((k.name, k.key_id, k.public_key), k)
    return list(unique.values())


# --- issuing --------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


class CheckpointService:
    """Issues signed checkpoints with one key, on demand and by policy.

    ``every``: issue once this many entries were appended since the latest checkpoint
    (0: never by count). ``interval``: issue once this many seconds passed since the
    latest checkpoint (or since the first entry) and there are new entries (0: never
    by time). Thread-safe; several processes may share one database.
    """

    def __init__(
        self,
        store: Store,
        signer: Signer,
        *,
        origin_prefix: str,
        every: int = 1000,
        interval: float = 60.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if every < 0 or interval < 0:
            raise ConfigError("checkpoint_every and checkpoint_interval must not be negative")
        self.store = store
        self.signer = signer
        self.origin_prefix = origin_prefix
        self.every = every
        self.interval = interval
        self.clock = clock
        self._published = False
        self._lock = threading.Lock()
        # project -> (size, time) of the latest checkpoint known here: a lower bound,
        # so the policy can say "not due" after an append without a query.
        self._known: dict[str, tuple[int, datetime]] = {}

    @classmethod
    def from_settings(
        cls, store: Store, settings: Settings, signer: Signer | None = None
    ) -> CheckpointService:
        """A service with the configured key (generated on first run) and policy."""
        return cls(
            store,
            signer or ensure_signing_key(settings),
            origin_prefix=settings.origin_prefix,
            every=settings.checkpoint_every,
            interval=settings.checkpoint_interval,
        )

    def origin(self, project: str) -> str:
        return origin_for(self.origin_prefix, project)

    # --- on demand --------------------------------------------------------------------
    def issue(
        self, project: str, *, size: int | None = None, root: bytes | None = None
    ) -> StoredCheckpoint:
        """Sign and store a checkpoint at ``size`` (default: the whole log).

        Returns the stored checkpoint at that size if there is one already (signed by
        whichever key signed it then). ``root``, if given (e.g. from an
        ``AppendResult``), must equal the stored tree's root at ``size``. Raises
        NotFound for an unknown project, Conflict for a size below the latest
        checkpoint, and VerificationFailed when the stored tree does not extend the
        latest checkpoint (nothing is signed then).
        """
        head = self.store.head(project)
        if head is None or head.size == 0:
            raise NotFound(f"project {project} does not exist")
        n = head.size if size is None else size
        if not 1 <= n <= head.size:
            raise InvalidInput.field("size", f"tree size {n} is not in the log (1 to {head.size})")
        latest = latest_checkpoint(self.store, project)
        if latest is not None:
            if latest.size == n:
                return latest
            if latest.size > n:
                if size is None:
                    raise VerificationFailed(
                        f"project {project}: the latest checkpoint is at size {latest.size} "
                        f"but the log holds {n} entries; refusing to sign a shorter log"
                    )
                return get_checkpoint_or_conflict(self.store, project, n, latest.size)
        new_root = self._checked_root(project, n, root, latest)
        note = sign_checkpoint(Checkpoint(self.origin(project), n, new_root), self.signer)
        self._publish_key()
        now = self.clock()
        self.store.execute(
            f"INSERT INTO checkpoints ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (project, size) DO NOTHING",
            (
                project,
                n,
                new_root,
                self.signer.name,
                self.signer.key_id,
                note,
                format_time(now),
            ),
        )
        stored = get_checkpoint(self.store, project, n)
        self._remember(project, stored)
        return stored

    def _checked_root(
        self, project: str, n: int, root: bytes | None, latest: StoredCheckpoint | None
    ) -> bytes:
        """The stored tree's root at n, after proving it extends ``latest``."""
        old = latest.size if latest is not None else 0
        new_root, proof = read_batched(
            self.store,
            project,
            lambda r: [merkle.tree_hash(n, r)],
            lambda r: merkle.consistency_proof(old, n, r) if old else [],
        )
        if root is not None and root != new_root[0]:
            raise VerificationFailed(
                f"project {project}: the root given for size {n} is not the stored tree's root"
            )
        if latest is not None:
            try:
                merkle.verify_consistency(old, n, latest.root, new_root[0], proof)
            except ProofError as e:
                raise VerificationFailed(
                    f"project {project}: the stored tree at size {n} does not extend the "
                    f"checkpoint at size {old} ({e}); refusing to sign. Run `ledger verify`."
                ) from e
        return new_root[0]

    def _publish_key(self) -> None:
        if not self._published:
            publish_verifier_key(self.store, self.signer.verifier(), self.clock())
            self._published = True

    def _remember(self, project: str, cp: StoredCheckpoint) -> None:
        with self._lock:
            known = self._known.get(project)
            if known is None or known[0] < cp.size:
                self._known[project] = (cp.size, parse_time(cp.created_at))

    # --- by policy --------------------------------------------------------------------
    def _due(self, size: int, last_size: int, last_time: datetime, now: datetime) -> bool:
        if size <= last_size:
            return False
        if self.every and size - last_size >= self.every:
            return True
        return bool(self.interval) and (now - last_time).total_seconds() >= self.interval

    def maybe_issue(
        self, project: str, *, size: int | None = None, root: bytes | None = None
    ) -> StoredCheckpoint | None:
        """Issue a checkpoint if the policy says one is due; return it, else None.

        ``size`` and ``root`` (from an ``AppendResult``) spare a query in the common
        case where nothing is due.
        """
        if not self.every and not self.interval:
            return None
        now = self.clock()
        with self._lock:
            known = self._known.get(project)
        if known is not None and size is not None and not self._due(size, *known, now):
            return None
        if size is None:
            head = self.store.head(project)
            if head is None or head.size == 0:
                return None
            size, root = head.size, None
        latest = latest_checkpoint(self.store, project)
        if latest is not None:
            self._remember(project, latest)
            last = (latest.size, parse_time(latest.created_at))
        else:
            last = (0, self._first_entry_time(project) or now)
            with self._lock:
                self._known.setdefault(project, last)
        if not self._due(size, *last, now):
            return None
        return self.issue(project, size=size, root=root)

    def _first_entry_time(self, project: str) -> datetime | None:
        rows = self.store.query(
            "SELECT recorded_at FROM entries WHERE project = ? AND seq = 0", (project,)
        )
        return parse_time(rows[0]["recorded_at"]) if rows else None

    def maybe_issue_all(self) -> list[StoredCheckpoint]:
        """Apply the policy to every project (for a timer); errors are logged, not raised."""
        issued = []
        for head in self.store.projects():
            if head.size == 0:
                continue
            try:
                cp = self.maybe_issue(head.project)
            except LedgerError as e:
                log.error("checkpoint for project %s failed: %s", head.project, e)
                continue
            if cp is not None:
                issued.append(cp)
        return issued

    def on_append(self, result: AppendResult) -> None:
        """``Ledger(on_append=service.on_append)``: apply the policy after each append.

        The append has committed by then, so a failure here is logged, never raised.
        """
        try:
            self.maybe_issue(result.project, size=result.size, root=result.root)
        except LedgerError as e:
            log.error("checkpoint for project %s failed: %s", result.project, e)


def get_checkpoint_or_conflict(
    store: Store, project: str, size: int, latest: int
) -> StoredCheckpoint:
    """The stored checkpoint at ``size`` below the latest one; Conflict if none was."""
    try:
        return get_checkpoint(store, project, size)
    except NotFound:
        raise Conflict(
            f"project {project} has a checkpoint at size {latest}; checkpoints are issued "
            f"at increasing sizes, and none was issued at size {size}"
        ) from None


class CheckpointTimer:
    """A daemon thread calling ``service.maybe_issue_all()`` every ``period`` seconds."""

    def __init__(self, service: CheckpointService, period: float | None = None) -> None:
        self.service = service
        self.period = period if period is not None else max(1.0, service.interval or 60.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoint-timer", daemon=True)

    def start(self) -> CheckpointTimer:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.service.maybe_issue_all()
            except LedgerError as e:  # e.g. the database is restarting: try next time
                log.error("checkpoint timer: %s", e)
