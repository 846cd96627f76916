"""Inclusion and consistency proofs (RFC 9162 §2.1.3, §2.1.4) from the stored tree.

Each proof, together with the roots it leads to, needs O(log n) stored tree hashes
(see :mod:`ledger.merkle` for the stored-hash layout). They are read in ONE query
(plus a read of the log head when no tree size is given): the
Merkle functions are first run against a planning reader that only records which
stored indexes they ask for, then those indexes are read with a single
``store.read_hashes`` call, and the functions run again on the hashes read.

The results are plain frozen dataclasses; :meth:`InclusionProof.verify` and
:meth:`ConsistencyProof.verify` check them (raising :class:`~ledger.errors.ProofError`),
and :meth:`~InclusionProof.to_json` gives the hex form the HTTP API and the CLI print.

Request problems (no such project, an index or tree size outside the log) raise
:class:`~ledger.errors.NotFound` or :class:`~ledger.errors.InvalidInput` naming the
parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ledger import merkle
from ledger.errors import InvalidInput, NotFound, ProofError, VerificationFailed
from ledger.merkle import HASH_SIZE, HashReader
from ledger.store.base import Store

__all__ = [
    "ConsistencyProof",
    "InclusionProof",
    "TreeHead",
    "consistency_proof",
    "inclusion_proof",
    "read_batched",
    "tree_head",
]

T = TypeVar("T")

_PLACEHOLDER = bytes(HASH_SIZE)


def read_batched(store: Store, project: str, *steps: Callable[[HashReader], T]) -> list[T]:
    """Run Merkle computations that read stored hashes with one query for all of them.

    Each step is called twice: once with a reader that records the indexes asked for
    and answers with placeholder hashes (so steps must not verify anything), then
    with the hashes read. Returns each step's second result.
    """
    wanted: list[int] = []

    def plan(indexes: Sequence[int]) -> list[bytes]:
        wanted.extend(indexes)
        return [_PLACEHOLDER] * len(indexes)

    for step in steps:
        step(plan)
    unique = sorted(set(wanted))
    found = dict(zip(unique, store.read_hashes(project, unique), strict=True)) if unique else {}

    def read(indexes: Sequence[int]) -> list[bytes]:
        return [found[i] for i in indexes]

    return [step(read) for step in steps]


def _log_size(store: Store, project: str) -> int:
    head = store.head(project)
    if head is None or head.size == 0:
        raise NotFound(f"project {project} does not exist")
    return head.size


def _tree_size(store: Store, project: str, tree_size: int | None, name: str) -> int:
    size = _log_size(store, project)
    if tree_size is None:
        return size
    if tree_size < 1:
        raise InvalidInput.field(name, f"tree size must be at least 1, got {tree_size}")
    if tree_size > size:
        raise InvalidInput.field(name, f"tree size {tree_size} is beyond the log size {size}")
    return tree_size


def _at_size(
    store: Store, project: str, tree_size: int | None, name: str, run: Callable[[int], T]
) -> T:
    """``run(size)`` at the requested size, or the log size. A size the caller names is
    trusted first (one query instead of two): if stored hashes are missing, the head
    tells whether the size was beyond the log (InvalidInput) or the log is damaged."""
    if tree_size is None:
        return run(_log_size(store, project))
    if tree_size < 1:
        raise InvalidInput.field(name, f"tree size must be at least 1, got {tree_size}")
    try:
        return run(tree_size)
    except VerificationFailed:
        _tree_size(store, project, tree_size, name)
        raise


@dataclass(frozen=True)
class TreeHead:
    """The root hash of a project's tree at one size."""

    project: str
    size: int
    root: bytes

    def to_json(self) -> dict[str, Any]:
        return {"project": self.project, "tree_size": self.size, "root_hash": self.root.hex()}


@dataclass(frozen=True)
class InclusionProof:
    """Proof that the leaf at ``index`` is in the tree of ``tree_size`` leaves."""

    project: str
    index: int
    tree_size: int
    leaf_hash: bytes
    root: bytes
    hashes: tuple[bytes, ...]

    def verify(self, *, entry: bytes | None = None, root: bytes | None = None) -> None:
        """Check the proof (RFC 9162 §2.1.3.2); raise ProofError if it fails.

        ``entry``: the entry bytes the proof must be about (their leaf hash is
        compared). ``root``: the root to prove against, e.g. from a signed checkpoint;
        by default the root carried in the proof.
        """
        leaf = self.leaf_hash
        if entry is not None and merkle.leaf_hash(entry) != leaf:
            raise ProofError(f"the entry bytes are not the leaf at index {self.index}")
        merkle.verify_inclusion(
            self.index, self.tree_size, leaf, self.hashes, self.root if root is None else root
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "leaf_index": self.index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "root_hash": self.root.hex(),
            "inclusion_path": [h.hex() for h in self.hashes],
        }


@dataclass(frozen=True)
class ConsistencyProof:
    """Proof that the tree of ``new_size`` leaves extends the tree of ``old_size``."""

    project: str
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    hashes: tuple[bytes, ...]

    def verify(self, *, old_root: bytes | None = None, new_root: bytes | None = None) -> None:
        """Check the proof (RFC 9162 §2.1.4.2) between the given roots, by default the
        roots carried in the proof; raise ProofError if it fails."""
        merkle.verify_consistency(
            self.old_size,
            self.new_size,
            self.old_root if old_root is None else old_root,
            self.new_root if new_root is None else new_root,
            self.hashes,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "first": self.old_size,
            "second": self.new_size,
            "first_root_hash": self.old_root.hex(),
            "second_root_hash": self.new_root.hex(),
            "consistency_path": [h.hex() for h in self.hashes],
        }


def tree_head(store: Store, project: str, tree_size: int | None = None) -> TreeHead:
    """The root hash at ``tree_size`` (default: the whole log), from stored hashes."""

    def run(size: int) -> TreeHead:
        (root,) = read_batched(store, project, lambda r: merkle.tree_hash(size, r))
        return TreeHead(project, size, root)

    return _at_size(store, project, tree_size, "tree_size", run)


def inclusion_proof(
    store: Store, project: str, index: int, tree_size: int | None = None
) -> InclusionProof:
    """Inclusion proof of entry ``index`` in the tree of ``tree_size`` entries (default:
    the whole log), with that tree's root and the entry's leaf hash."""

    def run(size: int) -> InclusionProof:
        if not 0 <= index < size:
            raise InvalidInput.field(
                "index", f"entry {index} is out of range for tree size {size} (0 to {size - 1})"
            )
        leaf_index = merkle.stored_hash_index(0, index)
        path, root, leaf = read_batched(
            store,
            project,
            lambda r: merkle.inclusion_proof(index, size, r),
            lambda r: [merkle.tree_hash(size, r)],
            lambda r: list(r([leaf_index])),
        )
        return InclusionProof(project, index, size, leaf[0], root[0], tuple(path))

    return _at_size(store, project, tree_size, "tree_size", run)


def consistency_proof(
    store: Store, project: str, old_size: int, new_size: int | None = None
) -> ConsistencyProof:
    """Consistency proof from tree size ``old_size`` to ``new_size`` (default: the whole
    log), with both roots."""
    if old_size < 1:
        raise InvalidInput.field("first", f"tree size must be at least 1, got {old_size}")

    def run(size: int) -> ConsistencyProof:
        if old_size > size:
            raise InvalidInput.field(
                "first", f"old tree size {old_size} is larger than the new tree size {size}"
            )
        path, old_root, new_root = read_batched(
            store,
            project,
            lambda r: merkle.consistency_proof(old_size, size, r),
            lambda r: [merkle.tree_hash(old_size, r)],
            lambda r: [merkle.tree_hash(size, r)],
        )
        return ConsistencyProof(project, old_size, size, old_root[0], new_root[0], tuple(path))

    return _at_size(store, project, new_size, "second", run)
