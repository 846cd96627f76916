"""Merkle tree math for the log, per RFC 9162 section 2.1 (the RFC 6962 tree). Pure, no I/O.

Hashing (RFC 9162 §2.1.1): a leaf is SHA-256(0x00 ‖ entry bytes), an interior node is
SHA-256(0x01 ‖ left ‖ right), and the tree over n leaves splits at the largest power of
two smaller than n. The empty tree's root is SHA-256 of the empty string. Inclusion
proofs (§2.1.3) and consistency proofs (§2.1.4) are exactly the RFC's, so any conformant
verifier (Go's sumdb/tlog, transparency-dev/merkle) accepts the proofs made here, and
the verifiers here accept theirs.

Storage follows the stored-hash layout of Go's golang.org/x/mod/sumdb/tlog (after
Crosby and Wallach, "Efficient Data Structures for Tamper-Evident Logging", §3.3):

* A complete subtree is named (level, k): the 2**level leaves starting at leaf
  k * 2**level. Its hash is stored exactly once, when its last leaf is appended, and is
  never rewritten.
* Appending record n stores its leaf hash (0, n), then the parent of every subtree that
  record completes: (1, n >> 1), (2, n >> 2), ... one per trailing 1 bit of n. All of
  them go to consecutive indexes, so the stored hashes form a dense, append-only array:

      index   0      1      2      3      4      5      6      7      8      9
      hash    (0,0)  (0,1)  (1,0)  (0,2)  (0,3)  (1,1)  (2,0)  (0,4)  (0,5)  (1,2)
      record  0      1      1      2      3      3      3      4      5      5

* Any root, inclusion proof or consistency proof then needs O(log n) stored hashes,
  plus hashing of the partial subtrees on the tree's right edge.

Reads go through a :data:`HashReader`. Each function here first works out every stored
index it needs and then calls the reader once (or not at all when nothing is needed), so
that a database backend answers with a single query.

Errors: every failure of a proof, of a proof request or of the hashes a reader returns
raises :class:`ledger.errors.ProofError` with a message meant for people. Calling the
layout functions with negative numbers, or appending a leaf hash that is not 32 bytes,
is a programming error and raises :class:`ValueError`.

Edge cases outside RFC 9162 (which defines consistency proofs only for 0 < m < n): the
proof from size m to the same size is empty and verifies only if both roots are equal;
the proof from size 0 is empty and verifies only if the old root is :data:`EMPTY_ROOT`
(any tree extends the empty tree, but the empty tree has exactly one root).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

from ledger.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "HashReader",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_leaves",
    "split_stored_hash_index",
    "stored_hash_count",
    "stored_hash_index",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32

#: Root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: Given stored-hash indexes, returns the hashes stored there, in the same order.
HashReader: TypeAlias = Callable[[Sequence[int]], Sequence[bytes]]


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 ‖ entry): the hash of one log entry."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right): the hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


# --- stored-hash layout ------------------------------------------------------------


def _index(level: int, k: int) -> int:
    # (level, k) is stored with its last leaf, record r = (k + 1) * 2**level - 1, `level`
    # places after that record's leaf hash. Record r's leaf goes after every complete
    # subtree among the first r leaves: r + r//2 + r//4 + ... of them, which equals
    # 2r - popcount(r). (tlog computes the same sum with a loop.)
    r = ((k + 1) << level) - 1
    return 2 * r - r.bit_count() + level


def stored_hash_index(level: int, n: int) -> int:
    """Index at which the hash of complete subtree (level, n) is stored."""
    if level < 0 or n < 0:
        raise ValueError(f"stored hash (level {level}, n {n}) does not exist")
    return _index(level, n)


def _trailing_ones(n: int) -> int:
    return ((n + 1) & -(n + 1)).bit_length() - 1


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """Inverse of :func:`stored_hash_index`: the (level, n) stored at ``index``."""
    if index < 0:
        raise ValueError(f"stored hash index {index} is negative")
    # Find the record n whose hashes include `index`. Record n's leaf is stored at
    # 2n - popcount(n) <= index, so n >= index // 2; walk forward from there (at most
    # log2(index) steps), record n storing 1 + trailing_ones(n) hashes.
    n = index // 2
    start = _index(0, n)
    while (following := start + 1 + _trailing_ones(n)) <= index:
        n += 1
        start = following
    # Record n stored (0, n), (1, n >> 1), (2, n >> 2), ... from `start` on.
    level = index - start
    return level, n >> level


def stored_hash_count(n: int) -> int:
    """Number of hashes stored for a tree of ``n`` records.

    This is also where record n's leaf hash will go: the stored array has no gaps.
    """
    if n < 0:
        raise ValueError(f"tree size {n} is negative")
    return _index(0, n)


# --- reading complete subtrees -------------------------------------------------------


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (size >= 2): where MTH splits."""
    return 1 << ((size - 1).bit_length() - 1)


def _subtree_indexes(lo: int, hi: int) -> list[int]:
    """Stored indexes of the complete subtrees that make up tree node [lo, hi), left to
    right (tlog's subTreeIndex). The node hash is their fold from the right, see _fold.

    Every node of an RFC 9162 tree starts at a multiple of the largest power of two not
    above its size, so greedily taking the biggest aligned subtree always works."""
    out = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        out.append(_index(level, lo >> level))
        lo += 1 << level
    return out


def _fold(pieces: Sequence[bytes]) -> bytes:
    """Hash of a node from its complete subtrees, largest (leftmost) first."""
    h = pieces[-1]
    for piece in reversed(pieces[:-1]):
        h = node_hash(piece, h)
    return h


def _read(reader: HashReader, indexes: list[int]) -> list[bytes]:
    if not indexes:
        return []
    hashes = list(reader(indexes))
    if len(hashes) != len(indexes):
        raise ProofError(
            f"hash reader returned {len(hashes)} hashes for {len(indexes)} stored indexes"
        )
    for index, h in zip(indexes, hashes, strict=True):
        if len(h) != HASH_SIZE:
            raise ProofError(f"stored tree hash {index} is {len(h)} bytes, expected {HASH_SIZE}")
    return hashes


def _node_hashes(nodes: Sequence[tuple[int, int]], reader: HashReader) -> list[bytes]:
    """Hashes of tree nodes [lo, hi), with one reader call for all of them."""
    plan = [_subtree_indexes(lo, hi) for lo, hi in nodes]
    hashes = _read(reader, [i for indexes in plan for i in indexes])
    out = []
    pos = 0
    for indexes in plan:
        out.append(_fold(hashes[pos : pos + len(indexes)]))
        pos += len(indexes)
    return out


# --- compact range -------------------------------------------------------------------


class CompactRange:
    """The right edge of a tree: the hashes of its maximal complete subtrees.

    For a tree of n leaves these are one subtree per 1 bit of n, largest (leftmost)
    first, so at most log2(n) + 1 hashes. Enough to append more leaves and to compute
    the root, which is what streaming verification and the writer need.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The complete-subtree hashes of the right edge, largest subtree first."""
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> list[bytes]:
        """Append one leaf hash; return the hashes this record stores, in stored order.

        The result is the leaf hash followed by each subtree it completes, bottom up,
        to be written at ``stored_hash_index(0, n)`` and the indexes right after it,
        where n is the size before the append.
        """
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf hash is {len(leaf)} bytes, expected {HASH_SIZE}")
        stored = [leaf]
        h = leaf
        n = self._size
        # Each trailing 1 bit of n is a complete subtree of the same size just to the
        # left: merge it with the new one, completing the next level up.
        while n & 1:
            h = node_hash(self._hashes.pop(), h)
            stored.append(h)
            n >>= 1
        self._hashes.append(h)
        self._size += 1
        return stored

    def root(self) -> bytes:
        """Root hash of the tree: MTH of all leaves appended so far."""
        return _fold(self._hashes) if self._hashes else EMPTY_ROOT

    @classmethod
    def from_reader(cls, n: int, reader: HashReader) -> CompactRange:
        """The right edge of the tree of the first ``n`` records, from stored hashes."""
        _check_size("tree size", n)
        cr = cls()
        cr._hashes = _read(reader, _subtree_indexes(0, n))
        cr._size = n
        return cr

    def copy(self) -> CompactRange:
        cr = CompactRange()
        cr._hashes = list(self._hashes)
        cr._size = self._size
        return cr

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


def root_from_leaves(leaves: Iterable[bytes]) -> bytes:
    """Root hash over a stream of leaf hashes, in O(log n) memory."""
    cr = CompactRange()
    for leaf in leaves:
        cr.append(leaf)
    return cr.root()


def tree_hash(n: int, reader: HashReader) -> bytes:
    """Root hash of the tree of the first ``n`` records."""
    return CompactRange.from_reader(n, reader).root()


# --- proofs --------------------------------------------------------------------------


def _check_size(what: str, n: int) -> None:
    if n < 0:
        raise ProofError(f"{what} {n} is negative")


def _check_index(index: int, size: int) -> None:
    _check_size("tree size", size)
    if not 0 <= index < size:
        raise ProofError(f"index {index} is out of range for tree size {size}")


def _check_sizes(m: int, n: int) -> None:
    _check_size("old tree size", m)
    _check_size("new tree size", n)
    if m > n:
        raise ProofError(f"old tree size {m} is larger than new tree size {n}")


def _inclusion_nodes(index: int, n: int) -> list[tuple[int, int]]:
    """PATH(index, D[0:n]) of RFC 9162 §2.1.3.1 as nodes [lo, hi): the sibling of each
    node on the way from the leaf up to the root, leaf end first."""
    nodes = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            nodes.append((lo + k, hi))
            hi = lo + k
        else:
            nodes.append((lo, lo + k))
            lo += k
    nodes.reverse()
    return nodes


def _consistency_nodes(m: int, n: int) -> list[tuple[int, int]]:
    """SUBPROOF(m, D[0:n], true) of RFC 9162 §2.1.4.1 as nodes [lo, hi), for 0 < m < n."""
    nodes = []
    lo, hi = 0, n
    # `on_left_edge` is the RFC's flag b: the node [lo, hi) is still the tree's leftmost
    # node, so if it turns out to be the old tree itself the verifier already has its
    # hash (the old root) and it is left out of the proof.
    on_left_edge = True
    while m != hi:
        k = _split(hi - lo)
        if m <= lo + k:
            nodes.append((lo + k, hi))
            hi = lo + k
        else:
            nodes.append((lo, lo + k))
            lo += k
            on_left_edge = False
    if not on_left_edge:
        nodes.append((lo, hi))
    nodes.reverse()
    return nodes


def inclusion_proof(index: int, n: int, reader: HashReader) -> list[bytes]:
    """Inclusion proof of leaf ``index`` in the tree of size ``n`` (RFC 9162 §2.1.3.1)."""
    _check_index(index, n)
    return _node_hashes(_inclusion_nodes(index, n), reader)


def consistency_proof(m: int, n: int, reader: HashReader) -> list[bytes]:
    """Consistency proof from tree size ``m`` to tree size ``n`` (RFC 9162 §2.1.4.1).

    Empty when m == 0 or m == n (see the module docstring).
    """
    _check_sizes(m, n)
    if m in (0, n):
        return []
    return _node_hashes(_consistency_nodes(m, n), reader)


def _check_hash(what: str, h: bytes) -> None:
    if len(h) != HASH_SIZE:
        raise ProofError(f"{what} is {len(h)} bytes, expected {HASH_SIZE}")


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for i, h in enumerate(proof):
        _check_hash(f"proof hash {i}", h)


def _inclusion_proof_size(index: int, size: int) -> int:
    # Below the level where the paths to `index` and to the last leaf part, every level
    # contributes one hash ("inner"); above it, only the levels where `index` is in a
    # right child do ("border"), the others being merged into the right edge.
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` (a leaf hash) is at ``index`` in the tree of ``size`` leaves
    with root hash ``root`` (RFC 9162 §2.1.3.2). Raises ProofError if not."""
    _check_index(index, size)
    _check_hash("leaf hash", leaf)
    _check_hash("root hash", root)
    expected = _inclusion_proof_size(index, size)
    if len(proof) != expected:
        raise ProofError(
            f"inclusion proof has wrong size: expected {expected} hashes, got {len(proof)}"
        )
    _check_proof_hashes(proof)

    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # fn is the last node of its level: skip the levels where it has no sibling.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    if r != root:
        raise ProofError("inclusion proof does not lead to the expected root")


def _consistency_proof_size(m: int, n: int) -> int:
    # The proof is the inclusion proof of leaf m - 1 in the tree of size n, minus the
    # levels inside the largest complete subtree that ends at m (its hash is sent once
    # instead, unless that subtree is the whole old tree, whose root the verifier has).
    shift = (m & -m).bit_length() - 1
    inner = (((m - 1) ^ (n - 1)).bit_length()) - shift
    border = ((m - 1) >> (inner + shift)).bit_count()
    start = 0 if m == 1 << shift else 1
    return start + inner + border


def verify_consistency(
    m: int, n: int, root_m: bytes, root_n: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of size ``n`` with root ``root_n`` extends the tree of size
    ``m`` with root ``root_m`` (RFC 9162 §2.1.4.2). Raises ProofError if not."""
    _check_sizes(m, n)
    _check_hash("old root hash", root_m)
    _check_hash("new root hash", root_n)
    _check_proof_hashes(proof)
    if m == n:
        if proof:
            raise ProofError(
                f"consistency proof between equal tree sizes must be empty, got {len(proof)} hashes"
            )
        if root_m != root_n:
            raise ProofError(f"the two roots for tree size {n} differ")
        return
    if m == 0:
        if proof:
            raise ProofError(
                f"consistency proof from the empty tree must be empty, got {len(proof)} hashes"
            )
        if root_m != EMPTY_ROOT:
            raise ProofError("old root hash is not the root of the empty tree")
        return
    expected = _consistency_proof_size(m, n)
    if len(proof) != expected:
        raise ProofError(
            f"consistency proof has wrong size: expected {expected} hashes, got {len(proof)}"
        )

    path = list(proof)
    if m & (m - 1) == 0:
        # The old tree is a complete subtree of the new one: its root starts the path.
        path.insert(0, root_m)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != root_m:
        raise ProofError(f"consistency proof does not lead to the expected old root (size {m})")
    if sr != root_n:
        raise ProofError(f"consistency proof does not lead to the expected new root (size {n})")
