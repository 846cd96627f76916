"""Verification of a stored log: every leaf, every chain link, every tree hash.

The log and the stored tree hashes are streamed side by side in sequence order (keyset
pages), never loaded whole. A ``CompactRange`` (O(log n) hashes) recomputes, for each
entry, exactly the hashes the writer stored for it, in stored-hash index order, so the
two streams can be compared in lock step. The first discrepancy is reported with its
sequence number and kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NoReturn

from ledger.entry import MalformedEntry, parse_entry
from ledger.merkle import CompactRange, leaf_hash, stored_hash_index
from ledger.store.base import Store

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Failure:
    """The first thing found wrong. ``seq`` is the entry (or -1 for the head itself)."""

    seq: int
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"entry {self.seq}" if self.seq >= 0 else "log head"
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class Report:
    project: str
    size: int
    checked: int = 0
    root: bytes | None = None
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> Failure | None:
        return self.failures[0] if self.failures else None


class _Stop(Exception):
    pass


def verify_log(store: Store, project: str, progress: Progress | None = None) -> Report:
    """Recompute and compare every leaf, chain link and stored tree hash of a project."""
    head = store.head(project)
    size = head.size if head is not None else 0
    report = Report(project=project, size=size)

    def fail(seq: int, kind: str, message: str) -> NoReturn:
        report.failures.append(Failure(seq, kind, message))
        raise _Stop

    try:
        _walk(store, project, size, report, fail, progress)
    except _Stop:
        return report
    return report


def _walk(
    store: Store,
    project: str,
    size: int,
    report: Report,
    fail: Callable[[int, str, str], NoReturn],
    progress: Progress | None,
) -> None:
    tree = CompactRange()
    hashes: Iterator[tuple[int, bytes]] = store.iter_tree_hashes(project)
    prev: bytes | None = None
    last_time = ""
    expected = 0
    for seq, raw in store.iter_entries(project):
        if seq != expected:
            if seq > expected:
                fail(expected, "missing", f"entry {expected} is missing (next stored: {seq})")
            fail(seq, "order", f"entry {seq} stored out of order")
        if seq >= size:
            fail(seq, "beyond-head", f"entry {seq} is stored beyond the log size {size}")
        try:
            entry = parse_entry(raw)
        except MalformedEntry as e:
            fail(seq, "malformed", str(e))
        if entry.seq != seq:
            fail(seq, "sequence", f"entry bytes say seq {entry.seq}, stored at {seq}")
        if entry.project != project:
            fail(seq, "project", f"entry belongs to project {entry.project!r}")
        if entry.prev != prev:
            fail(
                seq,
                "chain",
                f"prev is {_hex(entry.prev)}, the leaf hash of entry {seq - 1} is {_hex(prev)}",
            )
        if entry.recorded_at < last_time:
            fail(seq, "time", f"recorded_at {entry.recorded_at} is before {last_time}")
        last_time = entry.recorded_at
        leaf = leaf_hash(raw)
        for level, computed in enumerate(tree.append(leaf)):
            want_idx = stored_hash_index(0, seq) + level
            item = next(hashes, None)
            if item is None:
                fail(seq, "tree", f"stored tree hash {want_idx} is missing")
            idx, stored = item
            if idx != want_idx:
                fail(seq, "tree", f"expected stored tree hash {want_idx}, found {idx}")
            if stored != computed:
                kind = "leaf" if level == 0 else "tree"
                what = "leaf hash" if level == 0 else f"tree hash (level {level})"
                fail(seq, kind, f"stored {what} does not match the entry bytes")
        prev = leaf
        expected = seq + 1
        report.checked = expected
        if progress is not None and expected % 10000 == 0:
            progress(expected, size)
    if expected < size:
        fail(expected, "missing", f"the log head says {size} entries, {expected} are stored")
    extra = next(hashes, None)
    if extra is not None:
        fail(size, "tree", f"unexpected stored tree hash {extra[0]} beyond the log")
    head = store.head(project)
    if head is not None and head.last_leaf != prev:
        fail(-1, "head", "the head's last leaf hash does not match the last entry")
    report.root = tree.root()
    if progress is not None:
        progress(expected, size)


def _hex(value: bytes | None) -> str:
    return "null" if value is None else value.hex()[:16] + "…"
