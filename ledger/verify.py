"""Verification of a log: every leaf, chain link, stored tree hash and signed checkpoint.

The log is read in sequence-ordered pages (keyset pages, never loaded whole) and
checked by a :class:`LogChecker`, which keeps O(log n) state: the right edge of the
tree. For each entry it recomputes exactly the hashes the writer stored for it (the
leaf, then every subtree the entry completes, in stored-hash index order), so a page
of entries is compared with the matching range of stored tree hashes in one list
comparison. At each stored checkpoint's size the recomputed root is compared with the
signed root, after the checkpoint's signature has been checked against the published
verifier keys. Consecutive checkpoints are then consistent by construction: both roots
are recomputed from the same entries, the smaller tree a prefix of the larger (RFC 9162
consistency is exactly this prefix property). The first failure is reported, by entry
sequence number or checkpoint size, with its kind.

The entry check is fast and exact: instead of a full JSON parse per entry it compares
the entry's fixed frame, the end of the RFC 8785 bytes that the server writes,
``,"prev":<expected>,"principal":"...","project":<project>,"recorded_at":"<time>",
"seq":<n>,"v":1}`` after ``{"event":{``, with the values expected at that position.
A JSON string cannot contain ``,"`` (the quote would have to be escaped), so for any
entry that is well-formed JSON this reads the same ``seq``, ``prev``, ``project`` and
``recorded_at`` as a JSON parser. Anything that does not match the frame byte for byte
(an escaped principal, a tampered field) is re-checked with the full parser, which
names the problem. Only a full parse can tell whether the event object itself is
well-formed JSON; ``deep=True`` adds one per entry. The event bytes are covered by the
leaf hash either way.

The next page is read on a second thread while the current one is checked (both
drivers release the GIL while the database works), and ``verify_log(workers=...)``
checks contiguous ranges of a large log in separate processes.
"""

from __future__ import annotations

import binascii
import hashlib
import multiprocessing
import os
import re
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ledger.canonical import canonical_bytes
from ledger.checkpoint import MalformedCheckpoint, parse_checkpoint
from ledger.entry import MalformedEntry, parse_entry
from ledger.errors import NoteError, VerificationFailed
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    leaf_hash,
    split_stored_hash_index,
    stored_hash_count,
)
from ledger.note import InvalidSignature, MalformedNote, UnverifiedNote, Verifier, open_note
from ledger.store.base import Store

__all__ = [
    "CheckpointNote",
    "CheckpointProblem",
    "Failure",
    "FailureFound",
    "LogChecker",
    "Progress",
    "Report",
    "check_checkpoint_note",
    "verify_log",
]

#: progress(done, total): called after every page
Progress = Callable[[int, int], None]

_ENTRY_PAGE = 5000  # entries per page read
_TIME = rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
_EVENT_START = b'{"event":{'
_SHA256 = hashlib.sha256


@dataclass(frozen=True)
class Failure:
    """The first thing found wrong.

    ``subject`` says what ``seq`` counts: ``"entry"`` (a sequence number),
    ``"checkpoint"`` (a checkpoint's tree size) or ``"head"`` (the log head row).
    """

    seq: int
    kind: str
    message: str
    subject: str = "entry"

    def __str__(self) -> str:
        if self.subject == "checkpoint":
            where = f"checkpoint at size {self.seq}"
        elif self.subject == "head":
            where = "log head"
        else:
            where = f"entry {self.seq}"
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class Report:
    """What a verification found. ``root`` is the recomputed root of the entries read."""

    project: str
    size: int
    checked: int = 0
    root: bytes | None = None
    checkpoints: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> Failure | None:
        return self.failures[0] if self.failures else None


class FailureFound(Exception):
    """Raised inside verification to stop at the first failure, which it carries."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure))
        self.failure = failure


# --- checkpoints --------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointNote:
    """A checkpoint whose signature verified: its size and signed root."""

    size: int
    root: bytes
    origin: str
    key_name: str


def _has_signature_line(note: bytes) -> bool:
    split = note.rfind(b"\n\n")
    return split >= 0 and note[split + 2 :].startswith("— ".encode())


def check_checkpoint_note(
    note: bytes, verifiers: Sequence[Verifier], *, size: int, project: str | None = None
) -> CheckpointNote:
    """Open a signed checkpoint and check that it is the one for ``size``.

    Raises :class:`CheckpointProblem` naming the kind of failure:
    ``checkpoint-unsigned`` (no signature line), ``checkpoint-signature`` (a signature
    by a known key that does not verify), ``checkpoint-unknown-key`` (signed only by
    keys not among ``verifiers``), ``checkpoint-malformed`` (not a checkpoint, another
    size, or an origin that is not ``.../<project>``).
    """
    try:
        opened = open_note(note, verifiers)
    except InvalidSignature as e:
        raise CheckpointProblem("checkpoint-signature", f"forged or damaged signature: {e}") from e
    except UnverifiedNote as e:
        raise CheckpointProblem("checkpoint-unknown-key", str(e)) from e
    except MalformedNote as e:
        if not _has_signature_line(note):
            raise CheckpointProblem("checkpoint-unsigned", "the note carries no signature") from e
        raise CheckpointProblem("checkpoint-malformed", str(e)) from e
    except NoteError as e:
        raise CheckpointProblem("checkpoint-malformed", str(e)) from e
    try:
        cp = parse_checkpoint(opened.text)
    except MalformedCheckpoint as e:
        raise CheckpointProblem("checkpoint-malformed", str(e)) from e
    if cp.size != size:
        raise CheckpointProblem(
            "checkpoint-malformed", f"the signed note is for tree size {cp.size}, not {size}"
        )
    if project is not None and not cp.origin.endswith("/" + project):
        raise CheckpointProblem(
            "checkpoint-malformed",
            f"origin {cp.origin!r} is not the origin of project {project!r}",
        )
    return CheckpointNote(cp.size, cp.root_hash, cp.origin, opened.sigs[0].name)


class CheckpointProblem(Exception):
    """Why a stored or bundled checkpoint does not verify (internal to verification)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


# --- the entry and tree checker -----------------------------------------------------


class LogChecker:
    """Checks one project's entries, fed in order, in O(log n) memory.

    :meth:`feed` takes a page of entry bytes and returns the stored-order tree hashes
    they imply; the roots at the sizes named in ``root_sizes`` are collected in
    :attr:`roots` as the checker passes them. A bad entry raises an internal stop
    signal carrying a :class:`Failure`; callers use :func:`verify_log` or
    :func:`ledger.bundle.verify_bundle`.
    """

    def __init__(
        self,
        project: str,
        root_sizes: Iterable[int] = (),
        deep: bool = False,
        *,
        start: int = 0,
        prev: bytes | None = None,
        last_time: bytes = b"",
        right_edge: Sequence[bytes] = (),
    ) -> None:
        """A checker for entries from ``start`` on; after entry 0 it needs the state
        there: the leaf hash and recorded_at of entry ``start - 1`` and the right edge
        of the tree of ``start`` entries (``CompactRange.hashes``)."""
        self.project = project
        self.deep = deep
        self.size = start
        self._stack: list[bytes] = list(right_edge)
        self._prev = prev
        self._last_time = last_time
        # principal (a string without escapes), project, recorded_at, up to the seq
        self._frame = re.compile(
            rb'"[^"\\\x00-\x1f]*","project":'
            + re.escape(canonical_bytes(project))
            + rb',"recorded_at":"('
            + _TIME
            + rb')","seq":'
        )
        self._want = iter(sorted(x for x in set(root_sizes) if x >= start))
        self._next_want = next(self._want, -1)
        #: (size, root) for each wanted size passed so far, in size order
        self.roots: list[tuple[int, bytes]] = []
        if self._next_want == start:
            self.roots.append((start, self.root()))
            self._next_want = next(self._want, -1)

    @property
    def last_leaf(self) -> bytes | None:
        return self._prev

    def root(self) -> bytes:
        """Root hash of the entries fed so far."""
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1]
        for piece in reversed(self._stack[:-1]):
            h = _SHA256(b"\x01" + piece + h).digest()
        return h

    def feed(self, raws: Sequence[bytes], out: list[bytes]) -> None:
        """Check the next entries; append the hashes each stores to ``out``.

        On a bad entry, ``out`` holds the hashes of the entries before it and the
        internal stop signal is raised.
        """
        sha = _SHA256
        hexlify = binascii.hexlify
        stack = self._stack
        frame = self._frame.fullmatch
        prev = self._prev
        prev_part = _prev_part(prev)
        last_time = self._last_time
        seq = self.size
        want = self._next_want
        deep = self.deep
        try:
            for raw in raws:
                # The frame, from the end (see the module docstring): the tail with the
                # sequence number, the expected prev, then principal, project and time
                # in one match, and the brace that closes the event object.
                tail = b'%d,"v":1}' % seq
                pos = raw.rfind(prev_part)
                if (
                    pos > 10
                    and raw.endswith(tail)
                    and (m := frame(raw, pos + len(prev_part) - 1, len(raw) - len(tail)))
                    and raw[pos - 1] == 0x7D
                    and raw.startswith(_EVENT_START)
                    and (stamp := m.group(1)) >= last_time
                ):
                    if deep:
                        self._slow_check(seq, raw, prev, last_time)
                else:
                    stamp = self._slow_check(seq, raw, prev, last_time)
                last_time = stamp

                leaf = sha(b"\x00" + raw).digest()
                out.append(leaf)
                h = leaf
                n = seq
                while n & 1:
                    h = sha(b"\x01" + stack.pop() + h).digest()
                    out.append(h)
                    n >>= 1
                stack.append(h)
                prev = leaf
                prev_part = b',"prev":"' + hexlify(leaf) + b'","principal":"'
                seq += 1
                if seq == want:
                    self.size = seq
                    self.roots.append((seq, self.root()))
                    want = next(self._want, -1)
        finally:
            self.size = seq
            self._prev = prev
            self._last_time = last_time
            self._next_want = want

    def _slow_check(self, seq: int, raw: bytes, prev: bytes | None, last_time: bytes) -> bytes:
        """The full parse, for entries off the fast path: name the problem or accept."""
        try:
            entry = parse_entry(raw)
        except MalformedEntry as e:
            raise FailureFound(Failure(seq, "malformed", str(e))) from e
        if entry.seq != seq:
            raise FailureFound(
                Failure(seq, "sequence", f"entry bytes say seq {entry.seq}, stored at {seq}")
            )
        if entry.project != self.project:
            raise FailureFound(
                Failure(seq, "project", f"entry belongs to project {entry.project!r}")
            )
        if entry.prev != prev:
            raise FailureFound(
                Failure(
                    seq,
                    "chain",
                    f"prev is {_hex(entry.prev)}, the leaf hash of entry {seq - 1} is {_hex(prev)}",
                )
            )
        stamp = entry.recorded_at.encode()
        if stamp < last_time:
            raise FailureFound(
                Failure(
                    seq, "time", f"recorded_at {entry.recorded_at} is before {last_time.decode()}"
                )
            )
        return stamp


def _prev_part(prev: bytes | None) -> bytes:
    """The frame bytes from ``,"prev":`` to the principal's opening quote."""
    if prev is None:
        return b',"prev":null,"principal":"'
    return b',"prev":"' + binascii.hexlify(prev) + b'","principal":"'


def _hex(value: bytes | None) -> str:
    return "null" if value is None else value.hex()[:16] + "…"


def _first_hash_mismatch(
    first_seq: int, computed: Sequence[bytes], stored: Sequence[bytes]
) -> Failure:
    """The failure for the first position where stored tree hashes differ from the
    recomputed ones (both lists start at the first hash of entry ``first_seq``)."""
    base = stored_hash_count(first_seq)
    for offset, (mine, theirs) in enumerate(zip(computed, stored, strict=False)):
        if mine != theirs:
            level, n = split_stored_hash_index(base + offset)
            record = ((n + 1) << level) - 1
            if level == 0:
                return Failure(record, "leaf", "stored leaf hash does not match the entry bytes")
            return Failure(record, "tree", f"stored tree hash (level {level}) does not match")
    missing = base + min(len(computed), len(stored))
    level, n = split_stored_hash_index(missing)
    return Failure(((n + 1) << level) - 1, "tree", f"stored tree hash {missing} is missing")


# --- the stored log -----------------------------------------------------------------


@dataclass(frozen=True)
class _StoredCheckpoint:
    size: int
    root: bytes
    note: bytes


def _iter_stored_checkpoints(store: Store, project: str) -> Iterator[_StoredCheckpoint]:
    after = -1
    while True:
        rows = store.query(
            "SELECT size, root, note FROM checkpoints WHERE project = ? AND size > ?"
            " ORDER BY size LIMIT 1000",
            (project, after),
        )
        for r in rows:
            yield _StoredCheckpoint(int(r["size"]), bytes(r["root"]), bytes(r["note"]))
        if len(rows) < 1000:
            return
        after = int(rows[-1]["size"])


def verify_log(
    store: Store,
    project: str,
    progress: Progress | None = None,
    *,
    verifiers: Sequence[Verifier] | None = None,
    checkpoints: bool = True,
    deep: bool = False,
    workers: int | None = 1,
) -> Report:
    """Recompute and compare every leaf, chain link, stored tree hash and checkpoint.

    ``verifiers`` are the keys checkpoint signatures are checked against; by default
    the keys published in the database itself, which proves the checkpoints were
    signed by a key this ledger published but not that the table is untouched: pass
    the keys from configuration (``ledger.checkpoints.published_verifier_keys``) for
    an independent check. ``deep`` adds a full JSON parse of every entry.

    ``workers``: processes that check contiguous ranges of the log side by side; 1
    (the default) checks in this process, None picks one per CPU (up to 4) for logs
    of 200,000 entries or more. Each range starts from the stored right edge of the
    tree at its first entry, which the ranges before it verify, so the first failure
    in range order is the first failure of the log: the report is the same either
    way. Worker processes are started with ``spawn``, so a script calling this with
    ``workers != 1`` needs the usual ``if __name__ == "__main__":`` guard.
    """
    head = store.head(project)
    size = head.size if head is not None else 0
    report = Report(project=project, size=size)
    stored_cps = list(_iter_stored_checkpoints(store, project)) if checkpoints else []
    if verifiers is None:
        from ledger.checkpoints import stored_verifier_keys

        verifiers = stored_verifier_keys(store)
    keys = [v.key_string() for v in verifiers]
    if workers is None:
        workers = min(os.cpu_count() or 1, 4) if size >= _PARALLEL_FROM else 1
    ranges = _ranges(size, workers)
    try:
        if len(ranges) > 1:
            results = _check_in_processes(
                store, project, size, ranges, stored_cps, keys, deep, progress, report
            )
        else:
            results = [
                _verify_range(store, project, 0, size, size, stored_cps, verifiers, deep, progress)
            ]
            report.checked = results[0].checked
        report.checkpoints = sum(r.checkpoints for r in results)
        for r in results:
            if r.failure is not None:
                raise FailureFound(r.failure)
        _check_end(store, project, size, stored_cps, results[-1])
        report.root = results[-1].root
    except FailureFound as stop:
        report.failures.append(stop.failure)
    return report


#: logs from this size on are checked by several processes by default
_PARALLEL_FROM = 200_000
#: the smallest range one process checks
_MIN_RANGE = 50_000


def _ranges(size: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous ranges covering [0, size): a few per worker, in whole pages."""
    if workers <= 1 or size < 2 * _MIN_RANGE:
        return [(0, size)]
    count = min(workers * 3, size // _MIN_RANGE)
    step = -(-size // count)
    step = -(-step // _ENTRY_PAGE) * _ENTRY_PAGE
    return [(a, min(a + step, size)) for a in range(0, size, step)]


@dataclass(frozen=True)
class _RangeResult:
    failure: Failure | None
    checked: int  # entries checked, from the range start
    checkpoints: int  # checkpoints verified in the range
    last_leaf: bytes | None
    root: bytes


def _check_in_processes(
    store: Store,
    project: str,
    size: int,
    ranges: list[tuple[int, int]],
    cps: list[_StoredCheckpoint],
    keys: list[str],
    deep: bool,
    progress: Progress | None,
    report: Report,
) -> list[_RangeResult]:
    """Check the ranges in worker processes; stop at the first range that fails."""
    results: list[_RangeResult] = []
    with _range_pool(min(len(ranges), os.cpu_count() or 1, 4)) as pool:
        futures = [
            pool.submit(
                _verify_range_in_process,
                store.url,
                project,
                a,
                b,
                size,
                [c for c in cps if a < c.size <= b],
                keys,
                deep,
            )
            for a, b in ranges
        ]
        try:
            for (a, _), future in zip(ranges, futures, strict=True):
                result = future.result()
                results.append(result)
                report.checked = a + result.checked
                if progress is not None:
                    progress(report.checked, size)
                if result.failure is not None:
                    break
        finally:
            for future in futures:
                future.cancel()
    return results


def _range_pool(workers: int) -> Executor:
    # spawn: the workers inherit no threads, locks or database connections
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _verify_range_in_process(
    url: str,
    project: str,
    start: int,
    stop: int,
    size: int,
    cps: list[_StoredCheckpoint],
    keys: list[str],
    deep: bool,
) -> _RangeResult:
    from ledger.note import parse_verifier_key
    from ledger.store import open_store

    store = open_store(url)
    try:
        verifiers = [parse_verifier_key(k) for k in keys]
        return _verify_range(store, project, start, stop, size, cps, verifiers, deep, None)
    finally:
        store.close()


def _range_start(
    store: Store, project: str, start: int, deep: bool, wanted: list[int]
) -> LogChecker:
    """A checker resuming at entry ``start``, from the stored state there. A problem in
    that state is a failure of an earlier range, which is reported first; the failure
    raised here (at ``start``) only stops this range."""
    if start == 0:
        return LogChecker(project, wanted, deep)
    rows = store.query_rows(
        "SELECT entry FROM entries WHERE project = ? AND seq = ?", (project, start - 1)
    )
    try:
        before = parse_entry(bytes(rows[0][0]))
        edge = CompactRange.from_reader(start, lambda idx: store.read_hashes(project, idx))
    except (IndexError, MalformedEntry, VerificationFailed) as e:
        raise FailureFound(Failure(start, "missing", f"cannot resume at entry {start}: {e}")) from e
    return LogChecker(
        project,
        wanted,
        deep,
        start=start,
        prev=leaf_hash(bytes(rows[0][0])),
        last_time=before.recorded_at.encode(),
        right_edge=edge.hashes,
    )


def _verify_range(
    store: Store,
    project: str,
    start: int,
    stop: int,
    size: int,
    cps: Sequence[_StoredCheckpoint],
    verifiers: Sequence[Verifier] | Sequence[str],
    deep: bool,
    progress: Progress | None,
) -> _RangeResult:
    """Check entries [start, stop) and the checkpoints of sizes in (start, stop]."""
    keys = [_as_verifier(k) for k in verifiers]
    mine = [c for c in cps if start < c.size <= stop]
    checker: LogChecker | None = None
    verified = 0
    try:
        checker = _range_start(store, project, start, deep, [c.size for c in mine])
        verified = _walk(store, project, start, stop, size, checker, mine, keys, progress)
    except FailureFound as found:
        return _RangeResult(
            found.failure,
            (checker.size if checker else start) - start,
            verified,
            None,
            EMPTY_ROOT,
        )
    return _RangeResult(None, checker.size - start, verified, checker.last_leaf, checker.root())


def _as_verifier(key: Verifier | str) -> Verifier:
    from ledger.note import parse_verifier_key

    return key if isinstance(key, Verifier) else parse_verifier_key(key)


def _check_stored_checkpoint(
    cp: _StoredCheckpoint, computed: bytes, keys: Sequence[Verifier], project: str
) -> Failure | None:
    try:
        opened = check_checkpoint_note(cp.note, keys, size=cp.size, project=project)
    except CheckpointProblem as p:
        return Failure(cp.size, p.kind, p.message, "checkpoint")
    if opened.root != cp.root:
        return Failure(
            cp.size,
            "checkpoint-malformed",
            "the stored root column differs from the root in the signed note",
            "checkpoint",
        )
    if opened.root != computed:
        return Failure(
            cp.size,
            "checkpoint-root",
            f"the signed root {opened.root.hex()[:16]}… is not the root of the log's first "
            f"{cp.size} entries ({computed.hex()[:16]}…): entries before {cp.size} were "
            "changed after the checkpoint was signed",
            "checkpoint",
        )
    return None


_ENTRIES_SQL = "SELECT entry FROM entries WHERE project = ? AND seq >= ? AND seq < ? ORDER BY seq"
_SEQS_SQL = "SELECT seq FROM entries WHERE project = ? AND seq >= ? AND seq < ? ORDER BY seq"
_HASHES_SQL = "SELECT hash FROM tree_hashes WHERE project = ? AND idx >= ? AND idx < ? ORDER BY idx"
_INDEXES_SQL = "SELECT idx FROM tree_hashes WHERE project = ? AND idx >= ? AND idx < ? ORDER BY idx"

_reader_lock = threading.Lock()
_reader_pool: ThreadPoolExecutor | None = None


def _reader() -> ThreadPoolExecutor:
    """One thread that reads the next page while the current one is checked. (SQLite
    and psycopg release the GIL while the database works; one thread, reused, keeps
    SQLite's per-thread connections to one more per store.)"""
    global _reader_pool
    with _reader_lock:
        if _reader_pool is None:
            _reader_pool = ThreadPoolExecutor(1, thread_name_prefix="ledger-verify-read")
        return _reader_pool


@dataclass(frozen=True)
class _Page:
    start: int
    raws: list[bytes]  # entries start, start + 1, ... without gaps
    hashes: list[bytes]  # the stored hashes those entries wrote, without gaps
    problem: Failure | None  # a missing entry or one beyond the head, right after raws
    more: bool  # whether a next page may exist


def _read_page(store: Store, project: str, start: int, stop: int | None, size: int) -> _Page:
    """Entries from ``start``, up to a page or ``stop``; None reads on past the head."""
    end = start + _ENTRY_PAGE if stop is None else min(start + _ENTRY_PAGE, stop)
    raws = [r[0] for r in store.query_rows(_ENTRIES_SQL, (project, start, end))]
    full = len(raws) == end - start
    problem: Failure | None = None
    if not full and raws:
        # the end of the log, or a gap: the sequence numbers tell which (rare path)
        seqs = [int(r[0]) for r in store.query_rows(_SEQS_SQL, (project, start, end))]
        for i, seq in enumerate(seqs):
            if seq != start + i:
                problem = Failure(
                    start + i, "missing", f"entry {start + i} is missing (next stored: {seq})"
                )
                raws = raws[:i]
                break
    if start + len(raws) > size:
        beyond = max(start, size)
        problem = Failure(
            beyond, "beyond-head", f"entry {beyond} is stored beyond the log size {size}"
        )
        raws = raws[: beyond - start]
    lo = stored_hash_count(start)
    hi = stored_hash_count(start + len(raws))
    hashes = [r[0] for r in store.query_rows(_HASHES_SQL, (project, lo, hi))] if hi > lo else []
    if len(hashes) != hi - lo:
        indexes = [int(r[0]) for r in store.query_rows(_INDEXES_SQL, (project, lo, hi))]
        contiguous = next((i for i, idx in enumerate(indexes) if idx != lo + i), len(indexes))
        hashes = hashes[:contiguous]
    more = full and problem is None and (stop is None or end < stop)
    return _Page(start, [bytes(r) for r in raws], hashes, problem, more)


def _pages(
    store: Store, project: str, start: int, stop: int | None, size: int
) -> Generator[_Page, None, None]:
    pool = _reader()
    future = pool.submit(_read_page, store, project, start, stop, size)
    try:
        while True:
            page = future.result()
            if page.more:
                following = page.start + len(page.raws)
                future = pool.submit(_read_page, store, project, following, stop, size)
            yield page
            if not page.more:
                return
    finally:
        # A caller that stops early (a failure) may close the store next: the read
        # ahead must not be using its connection then (closing a SQLite connection
        # another thread is reading from crashes the interpreter).
        if not future.cancel():
            wait([future])


def _walk(
    store: Store,
    project: str,
    start: int,
    stop: int,
    size: int,
    checker: LogChecker,
    cps: Sequence[_StoredCheckpoint],
    keys: Sequence[Verifier],
    progress: Progress | None,
) -> int:
    """Check entries [start, stop) page by page (the last range reads on past the head
    to find entries stored beyond it); return the checkpoints verified."""
    cp_pos = 0
    previous_ok = 0  # size of the last checkpoint that verified, for messages

    def check_checkpoints_up_to(limit: int) -> None:
        nonlocal cp_pos, previous_ok
        roots = dict(checker.roots)
        while cp_pos < len(cps) and cps[cp_pos].size <= limit and cps[cp_pos].size in roots:
            cp = cps[cp_pos]
            failure = _check_stored_checkpoint(cp, roots[cp.size], keys, project)
            if failure is not None:
                if failure.kind == "checkpoint-root" and previous_ok:
                    failure = Failure(
                        failure.seq,
                        failure.kind,
                        failure.message + f" (the checkpoint at size {previous_ok} verifies)",
                        failure.subject,
                    )
                raise FailureFound(failure)
            previous_ok = cp.size
            cp_pos += 1

    pages = _pages(store, project, start, stop if stop < size else None, size)
    try:
        for page in pages:
            entry_failure = page.problem
            computed: list[bytes] = []
            try:
                checker.feed(page.raws, computed)
            except FailureFound as found:
                entry_failure = found.failure
            stored = page.hashes
            if stored[: len(computed)] != computed:
                hash_failure = _first_hash_mismatch(page.start, computed, stored)
                if entry_failure is None or hash_failure.seq <= entry_failure.seq:
                    # a checkpoint before the bad hash is still checked first
                    check_checkpoints_up_to(hash_failure.seq)
                    raise FailureFound(hash_failure)
            if entry_failure is not None:
                check_checkpoints_up_to(entry_failure.seq)
                raise FailureFound(entry_failure)
            check_checkpoints_up_to(checker.size)
            if progress is not None:
                progress(checker.size, size)
    finally:
        pages.close()
    if checker.size < stop:
        raise FailureFound(
            Failure(
                checker.size,
                "missing",
                f"the log head says {size} entries, entry {checker.size} is not stored",
            )
        )
    return cp_pos


def _check_end(
    store: Store, project: str, size: int, cps: list[_StoredCheckpoint], last: _RangeResult
) -> None:
    """What only the whole log can tell: tree hashes or checkpoints beyond it, the head."""
    extra = next(store.iter_tree_hashes(project, stored_hash_count(size), None, 1), None)
    if extra is not None:
        raise FailureFound(
            Failure(size, "tree", f"unexpected stored tree hash {extra[0]} beyond the log")
        )
    head = store.head(project)
    if head is not None and head.last_leaf != last.last_leaf:
        raise FailureFound(
            Failure(-1, "head", "the head's last leaf hash does not match the last entry", "head")
        )
    beyond = [c for c in cps if c.size > size]
    if beyond:
        cp = beyond[0]
        raise FailureFound(
            Failure(
                cp.size,
                "checkpoint-beyond-log",
                f"a checkpoint was signed at size {cp.size} but the log holds {size} entries: "
                "entries were removed after it was signed",
                "checkpoint",
            )
        )
