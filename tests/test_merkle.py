"""Tests for ledger.merkle: published RFC 6962 vectors, a naive RFC 9162 reference, the
tlog stored-hash layout, reader calls, and malformed proofs."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import ProofError
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaves,
    split_stored_hash_index,
    stored_hash_count,
    stored_hash_index,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

# --- published vectors ---------------------------------------------------------------
# From github.com/transparency-dev/merkle, testonly/constants.go (LeafInputs, NodeHashes,
# RootHashes), the RFC 6962 test tree also used by certificate-transparency.

LEAF_INPUTS = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]

# RootHashes: index = tree size.
ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# NodeHashes: [level][k] is the complete subtree (level, k).
NODE_HASHES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

# From transparency-dev/merkle, proof/verify_test.go (inclusionProofs, consistencyProofs).
# That file numbers leaves from 1 ({1, 8, ...} is leaf index 0); indexes here are 0-based.
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


# --- helpers -------------------------------------------------------------------------


class Store:
    """A tree built with CompactRange.append, its stored hashes in a list, and a reader
    that records every call."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self.hashes: list[bytes] = []
        self.calls: list[list[int]] = []
        cr = CompactRange()
        for e in entries:
            self.hashes.extend(cr.append(leaf_hash(e)))

    def read(self, indexes: Sequence[int]) -> list[bytes]:
        self.calls.append(list(indexes))
        return [self.hashes[i] for i in indexes]


class Reference:
    """MTH, PATH and PROOF written straight from RFC 9162 §2.1.1-2.1.4, over D[lo:hi]
    of one list of entries. MTH is memoized by (lo, hi) so that thousands of proofs over
    one tree stay fast; nothing else is shared with the module under test."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self.d = list(entries)
        self._mth: dict[tuple[int, int], bytes] = {}

    @staticmethod
    def _k(n: int) -> int:
        # "the largest power of two smaller than n"
        k = 1
        while k * 2 < n:
            k *= 2
        return k

    def mth(self, lo: int, hi: int) -> bytes:
        if (lo, hi) not in self._mth:
            n = hi - lo
            if n == 0:
                r = hashlib.sha256(b"").digest()
            elif n == 1:
                r = hashlib.sha256(b"\x00" + self.d[lo]).digest()
            else:
                k = self._k(n)
                r = hashlib.sha256(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi)).digest()
            self._mth[lo, hi] = r
        return self._mth[lo, hi]

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """PATH(m, D[lo:hi]), m relative to lo."""
        n = hi - lo
        if n == 1:
            return []
        k = self._k(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        """PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true), for 0 < m <= n."""
        return self.subproof(m, 0, n, True)

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = self._k(n)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]


def random_entries(rng: random.Random, n: int) -> list[bytes]:
    return [rng.randbytes(rng.randrange(0, 40)) for _ in range(n)]


def check_against_reference(
    store: Store, ref: Reference, sizes: Sequence[int], pairs: Sequence[tuple[int, int]]
) -> None:
    """Roots for `sizes`; for each (a, b) in `pairs`: inclusion of leaf a and consistency
    from size a, both in the tree of size b. Every proof must also verify."""
    for n in sizes:
        assert tree_hash(n, store.read) == ref.mth(0, n)
    for a, b in pairs:
        root = ref.mth(0, b)
        if a < b:
            proof = inclusion_proof(a, b, store.read)
            assert proof == ref.path(a, 0, b), (a, b)
            verify_inclusion(a, b, leaf_hash(ref.d[a]), proof, root)
        proof = consistency_proof(a, b, store.read)
        assert proof == (ref.proof(a, b) if a > 0 else []), (a, b)
        verify_consistency(a, b, ref.mth(0, a), root, proof)


# --- hashing and published vectors ---------------------------------------------------


def test_hash_primitives() -> None:
    assert ROOTS[0] == EMPTY_ROOT
    assert leaf_hash(b"") == NODE_HASHES[0][0]
    assert leaf_hash(b"\x00") == NODE_HASHES[0][1]
    assert node_hash(NODE_HASHES[0][0], NODE_HASHES[0][1]) == NODE_HASHES[1][0]
    assert node_hash(NODE_HASHES[0][1], NODE_HASHES[0][0]) != NODE_HASHES[1][0]


@pytest.fixture(scope="module")
def published() -> Store:
    return Store(LEAF_INPUTS)


@pytest.mark.parametrize("n", range(9))
def test_published_roots(published: Store, n: int) -> None:
    leaves = [leaf_hash(e) for e in LEAF_INPUTS[:n]]
    assert root_from_leaves(leaves) == ROOTS[n]
    assert tree_hash(n, published.read) == ROOTS[n]
    assert CompactRange.from_reader(n, published.read).root() == ROOTS[n]
    assert Reference(LEAF_INPUTS).mth(0, n) == ROOTS[n]


def test_published_node_hashes_are_stored_at_their_layout_index(published: Store) -> None:
    for level, row in enumerate(NODE_HASHES):
        for k, want in enumerate(row):
            assert published.hashes[stored_hash_index(level, k)] == want, (level, k)
    assert len(published.hashes) == stored_hash_count(8) == sum(map(len, NODE_HASHES))


@pytest.mark.parametrize(("index", "size", "want"), INCLUSION_VECTORS)
def test_published_inclusion_proofs(
    published: Store, index: int, size: int, want: list[bytes]
) -> None:
    assert inclusion_proof(index, size, published.read) == want
    verify_inclusion(index, size, leaf_hash(LEAF_INPUTS[index]), want, ROOTS[size])


@pytest.mark.parametrize(("m", "n", "want"), CONSISTENCY_VECTORS)
def test_published_consistency_proofs(published: Store, m: int, n: int, want: list[bytes]) -> None:
    assert consistency_proof(m, n, published.read) == want
    verify_consistency(m, n, ROOTS[m], ROOTS[n], want)


def _flip(proof: list[bytes], i: int) -> list[bytes]:
    out = list(proof)
    out[i] = bytes([out[i][0] ^ 8]) + out[i][1:]
    return out


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS[1:])
def test_published_inclusion_proofs_reject_corruption(
    index: int, size: int, proof: list[bytes]
) -> None:
    # The probes of corruptInclusionProof in transparency-dev/merkle proof/verify_test.go.
    root, leaf = ROOTS[size], leaf_hash(LEAF_INPUTS[index])
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (index - 1, size, root, leaf, proof),
        (index + 1, size, root, leaf, proof),
        (index ^ 2, size, root, leaf, proof),
        (index, size * 2, root, leaf, proof),
        (index, size // 2, root, leaf, proof),
        (index, size, root, b"WrongLeaf", proof),
        (index, size, root, SOME_HASH, proof),
        (index, size, EMPTY_ROOT, leaf, proof),
        (index, size, SOME_HASH, leaf, proof),
        (index, size, root, leaf, [*proof, b""]),
        (index, size, root, leaf, [*proof, root]),
        (index, size, root, leaf, [b"", *proof]),
        (index, size, root, leaf, [root, *proof]),
        (index, size, root, leaf, proof[:-1]),
        *((index, size, root, leaf, _flip(proof, i)) for i in range(len(proof))),
    ]
    if len(proof) > 1:
        probes.append((index, size, root, leaf, [proof[0], SOME_HASH, *proof[1:]]))
    for i, (pi, ps, pr, pl, pp) in enumerate(probes):
        with pytest.raises(ProofError):
            verify_inclusion(pi, ps, pl, pp, pr)
            pytest.fail(f"probe {i} verified")


@pytest.mark.parametrize(("m", "n", "proof"), CONSISTENCY_VECTORS[1:])
def test_published_consistency_proofs_reject_corruption(m: int, n: int, proof: list[bytes]) -> None:
    # The probes of corruptConsistencyProof in transparency-dev/merkle proof/verify_test.go.
    r1, r2 = ROOTS[m], ROOTS[n]
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (m - 1, n, r1, r2, proof),
        (m + 1, n, r1, r2, proof),
        (m ^ 2, n, r1, r2, proof),
        (m, n * 2, r1, r2, proof),
        (m, n // 2, r1, r2, proof),
        (m, n, b"WrongRoot", r2, proof),
        (m, n, SOME_HASH, r2, proof),
        (m, n, r1, SOME_HASH, proof),
        (m, n, r2, r1, proof),
        (m, n, r1, r2, []),
        (m, n, r1, r2, [*proof, b""]),
        (m, n, r1, r2, [*proof, r1]),
        (m, n, r1, r2, [*proof, r2]),
        (m, n, r1, r2, [b"", *proof]),
        (m, n, r1, r2, [r1, *proof]),
        (m, n, r1, r2, [r2, *proof]),
        (m, n, r1, r2, [proof[0], *proof]),
        (m, n, r1, r2, proof[:-1]),
        *((m, n, r1, r2, _flip(proof, i)) for i in range(len(proof))),
    ]
    for i, (pm, pn, p1, p2, pp) in enumerate(probes):
        with pytest.raises(ProofError):
            verify_consistency(pm, pn, p1, p2, pp)
            pytest.fail(f"probe {i} verified")


# --- stored-hash layout --------------------------------------------------------------


def tlog_stored_hash_index(level: int, n: int) -> int:
    """StoredHashIndex from golang.org/x/mod/sumdb/tlog, loop for loop."""
    for _ in range(level):
        n = 2 * n + 1
    i = 0
    while n > 0:
        i += n
        n >>= 1
    return i + level


def tlog_stored_hash_count(n: int) -> int:
    """StoredHashCount from golang.org/x/mod/sumdb/tlog, loop for loop."""
    if n == 0:
        return 0
    num = tlog_stored_hash_index(0, n - 1) + 1
    i = n - 1
    while i & 1:
        num += 1
        i >>= 1
    return num


def test_layout_first_indexes() -> None:
    order = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0), (0, 4), (0, 5), (1, 2)]
    assert [stored_hash_index(level, k) for level, k in order] == list(range(len(order)))
    assert [split_stored_hash_index(i) for i in range(len(order))] == order
    assert [stored_hash_count(n) for n in range(7)] == [0, 1, 3, 4, 7, 8, 10]


def test_layout_matches_tlog() -> None:
    for level in range(14):
        for n in range(300):
            assert stored_hash_index(level, n) == tlog_stored_hash_index(level, n)
    for level, n in [(0, 10**12), (5, 123_456_789), (40, 3)]:
        assert stored_hash_index(level, n) == tlog_stored_hash_index(level, n)
    for index in [*range(5000), 10**12, 2**40 - 1]:
        level, n = split_stored_hash_index(index)
        assert stored_hash_index(level, n) == index
    for n in [*range(3000), 10**9, 2**40 - 1]:
        assert stored_hash_count(n) == tlog_stored_hash_count(n)


def test_layout_rejects_negative_arguments() -> None:
    with pytest.raises(ValueError, match="does not exist"):
        stored_hash_index(-1, 0)
    with pytest.raises(ValueError, match="does not exist"):
        stored_hash_index(0, -1)
    with pytest.raises(ValueError, match="negative"):
        split_stored_hash_index(-1)
    with pytest.raises(ValueError, match="negative"):
        stored_hash_count(-1)


N_LAYOUT = 1100


@pytest.fixture(scope="module")
def layout_tree() -> tuple[list[bytes], Reference]:
    entries = random_entries(random.Random(6962), N_LAYOUT)
    return entries, Reference(entries)


def test_append_returns_hashes_in_stored_order(layout_tree: tuple[list[bytes], Reference]) -> None:
    entries, ref = layout_tree
    cr = CompactRange()
    stored: list[bytes] = []
    for n, entry in enumerate(entries):
        start = stored_hash_index(0, n)
        assert start == len(stored) == stored_hash_count(n)
        new = cr.append(leaf_hash(entry))
        assert len(new) == stored_hash_count(n + 1) - stored_hash_count(n)
        for j, value in enumerate(new):
            level, k = split_stored_hash_index(start + j)
            assert (level, k) == (j, n >> j)
            assert value == ref.mth(k << level, (k + 1) << level)
        stored.extend(new)
        assert cr.size == n + 1
        assert cr.root() == ref.mth(0, n + 1)


def test_from_reader_equals_incremental_state(layout_tree: tuple[list[bytes], Reference]) -> None:
    entries, _ = layout_tree
    store = Store(entries)
    cr = CompactRange()
    for n in range(len(entries) + 1):
        store.calls.clear()
        rebuilt = CompactRange.from_reader(n, store.read)
        assert len(store.calls) == (1 if n else 0)
        assert (rebuilt.size, rebuilt.hashes, rebuilt.root()) == (n, cr.hashes, cr.root())
        assert len(rebuilt.hashes) == n.bit_count()
        if n < len(entries):
            cr.append(leaf_hash(entries[n]))


def test_copy_is_independent() -> None:
    cr = CompactRange()
    for e in LEAF_INPUTS[:5]:
        cr.append(leaf_hash(e))
    snapshot = cr.copy()
    for e in LEAF_INPUTS[5:]:
        cr.append(leaf_hash(e))
    assert (snapshot.size, snapshot.root()) == (5, ROOTS[5])
    assert (cr.size, cr.root()) == (8, ROOTS[8])
    assert snapshot.copy().append(leaf_hash(LEAF_INPUTS[5]))[-1] == NODE_HASHES[1][2]
    assert snapshot.root() == ROOTS[5]


def test_empty_compact_range() -> None:
    cr = CompactRange()
    assert (cr.size, cr.hashes, cr.root()) == (0, (), EMPTY_ROOT)
    assert root_from_leaves([]) == EMPTY_ROOT
    assert tree_hash(0, Store([]).read) == EMPTY_ROOT


def test_append_rejects_a_leaf_that_is_not_a_hash() -> None:
    with pytest.raises(ValueError, match="leaf hash is 3 bytes, expected 32"):
        CompactRange().append(b"abc")


# --- against the reference -----------------------------------------------------------


def test_exhaustive_small_trees_match_reference() -> None:
    entries = random_entries(random.Random(9162), 70)
    store, ref = Store(entries), Reference(entries)
    pairs = [(a, b) for b in range(71) for a in range(b + 1)]
    check_against_reference(store, ref, range(71), pairs)


def test_random_large_tree_matches_reference() -> None:
    rng = random.Random(20240611)
    n = rng.randrange(3000, 4100)
    entries = random_entries(rng, n)
    store, ref = Store(entries), Reference(entries)
    # Sizes around powers of two are where the right edge changes shape.
    edges = [s for p in range(13) for s in (2**p - 1, 2**p, 2**p + 1) if 0 < s <= n]
    sizes = [*edges, n, *rng.sample(range(1, n + 1), 150)]
    pairs = [(a, b) for b in sizes for a in (0, 1, b // 2, b - 1, b, rng.randrange(b + 1))]
    pairs += [(a, n) for a in rng.sample(range(n + 1), 300)]
    check_against_reference(store, ref, sizes, pairs)


@settings(max_examples=60, deadline=None)
@given(
    entries=st.lists(st.binary(max_size=8), min_size=1, max_size=300),
    data=st.data(),
)
def test_property_matches_reference(entries: list[bytes], data: st.DataObject) -> None:
    n = len(entries)
    b = data.draw(st.integers(1, n), label="size")
    a = data.draw(st.integers(0, b), label="index or old size")
    check_against_reference(Store(entries), Reference(entries), [b], [(a, b)])


# --- reader calls --------------------------------------------------------------------


def test_each_function_calls_the_reader_once() -> None:
    store = Store(random_entries(random.Random(1), 1000))
    calls: list[tuple[str, Callable[[], object]]] = [
        ("tree_hash", lambda: tree_hash(999, store.read)),
        ("from_reader", lambda: CompactRange.from_reader(1000, store.read)),
        ("inclusion", lambda: inclusion_proof(517, 999, store.read)),
        ("consistency", lambda: consistency_proof(300, 999, store.read)),
    ]
    for name, call in calls:
        store.calls.clear()
        call()
        assert len(store.calls) == 1, name
    # Nothing to read, no call.
    store.calls.clear()
    assert inclusion_proof(0, 1, store.read) == []
    assert consistency_proof(500, 500, store.read) == []
    assert consistency_proof(0, 500, store.read) == []
    assert tree_hash(0, store.read) == EMPTY_ROOT
    assert store.calls == []


@pytest.mark.parametrize("n", [1_000_000, 2**20 - 1, 2**20])
def test_reads_are_logarithmic(n: int) -> None:
    calls: list[list[int]] = []

    def synthetic(indexes: Sequence[int]) -> list[bytes]:
        calls.append(list(indexes))
        return [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in indexes]

    bound = 2 * math.ceil(math.log2(n)) + 2
    rng = random.Random(n)
    points = [0, 1, 2**19 - 1, 2**19, n // 2, n - 2, n - 1, *rng.sample(range(n), 20)]
    runs: list[Callable[[], object]] = [
        lambda: tree_hash(n, synthetic),
        lambda: CompactRange.from_reader(n, synthetic),
        *(lambda i=i: inclusion_proof(i, n, synthetic) for i in points),
        *(lambda m=m: consistency_proof(m, n, synthetic) for m in points if m > 0),
    ]
    for run in runs:
        calls.clear()
        run()
        assert len(calls) == 1
        indexes = calls[0]
        assert len(indexes) <= bound
        assert len(set(indexes)) == len(indexes)
        assert max(indexes) < stored_hash_count(n)


def test_reader_misbehaviour_is_reported() -> None:
    store = Store(LEAF_INPUTS)
    with pytest.raises(ProofError, match=r"hash reader returned 1 hashes for 3 stored indexes"):
        inclusion_proof(0, 8, lambda idx: store.read(idx)[:1])
    with pytest.raises(ProofError, match=r"stored tree hash \d+ is 31 bytes, expected 32"):
        tree_hash(7, lambda idx: [x[:31] for x in store.read(idx)])


# --- malformed proofs and arguments --------------------------------------------------

IDX, SIZE, PROOF = INCLUSION_VECTORS[2]  # leaf 5 of 8
LEAF = leaf_hash(LEAF_INPUTS[IDX])


def _replace(proof: list[bytes], i: int, value: bytes) -> list[bytes]:
    out = list(proof)
    out[i] = value
    return out


INCLUSION_REJECTS = [
    (IDX, SIZE, LEAF, PROOF, ROOTS[7], "inclusion proof does not lead to the expected root"),
    (IDX, SIZE, leaf_hash(b"x"), PROOF, ROOTS[8], "does not lead to the expected root"),
    (4, SIZE, LEAF, PROOF, ROOTS[8], "does not lead to the expected root"),
    (IDX, SIZE, LEAF, PROOF[:2], ROOTS[8], "wrong size: expected 3 hashes, got 2"),
    (IDX, SIZE, LEAF, [*PROOF, SOME_HASH], ROOTS[8], "wrong size: expected 3 hashes, got 4"),
    (IDX, SIZE, LEAF, [], ROOTS[8], "wrong size: expected 3 hashes, got 0"),
    (IDX, 6, LEAF, PROOF, ROOTS[6], "wrong size: expected 2 hashes, got 3"),
    (IDX, SIZE, LEAF, _replace(PROOF, 2, PROOF[2][:31]), ROOTS[8], "proof hash 2 is 31 bytes"),
    (IDX, SIZE, LEAF, _replace(PROOF, 0, SOME_HASH), ROOTS[8], "expected root"),
    (IDX, SIZE, b"leaf", PROOF, ROOTS[8], "leaf hash is 4 bytes, expected 32"),
    (IDX, SIZE, LEAF, PROOF, b"", "root hash is 0 bytes, expected 32"),
    (7, 5, LEAF, PROOF, ROOTS[5], "index 7 is out of range for tree size 5"),
    (8, 8, LEAF, PROOF, ROOTS[8], "index 8 is out of range for tree size 8"),
    (-1, 8, LEAF, PROOF, ROOTS[8], "index -1 is out of range for tree size 8"),
    (0, 0, LEAF, [], EMPTY_ROOT, "index 0 is out of range for tree size 0"),
    (0, -1, LEAF, [], EMPTY_ROOT, "tree size -1 is negative"),
]


@pytest.mark.parametrize(
    ("index", "size", "leaf", "proof", "root", "message"),
    INCLUSION_REJECTS,
    ids=[f"{i}:{case[-1]}" for i, case in enumerate(INCLUSION_REJECTS)],
)
def test_verify_inclusion_rejects(
    index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes, message: str
) -> None:
    verify_inclusion(IDX, SIZE, LEAF, PROOF, ROOTS[SIZE])  # the unmodified proof is good
    with pytest.raises(ProofError, match=message):
        verify_inclusion(index, size, leaf, proof, root)


CM, CN, CPROOF = CONSISTENCY_VECTORS[2]  # 6 -> 8


CONSISTENCY_REJECTS = [
    (CM, CN, ROOTS[5], ROOTS[8], CPROOF, r"does not lead to the expected old root \(size 6\)"),
    (CM, CN, ROOTS[6], ROOTS[7], CPROOF, r"does not lead to the expected new root \(size 8\)"),
    (4, CN, SOME_HASH, ROOTS[8], [NODE_HASHES[2][1]], "expected new root"),
    (CM, CN, ROOTS[6], ROOTS[8], CPROOF[:2], "wrong size: expected 3 hashes, got 2"),
    (CM, CN, ROOTS[6], ROOTS[8], [*CPROOF, SOME_HASH], "expected 3 hashes, got 4"),
    (CM, CN, ROOTS[6], ROOTS[8], [], "consistency proof has wrong size: expected 3 hashes"),
    (CM, CN, ROOTS[6], ROOTS[8], _replace(CPROOF, 1, b"x" * 33), "proof hash 1 is 33 bytes"),
    (CM, CN, ROOTS[6], ROOTS[8], _replace(CPROOF, 1, SOME_HASH), "expected new root"),
    (CM, CN, ROOTS[6], ROOTS[8], _replace(CPROOF, 2, SOME_HASH), "expected old root"),
    (CM, CN, ROOTS[6][:16], ROOTS[8], CPROOF, "old root hash is 16 bytes, expected 32"),
    (CM, CN, ROOTS[6], b"", CPROOF, "new root hash is 0 bytes, expected 32"),
    (9, 8, ROOTS[8], ROOTS[8], [], "old tree size 9 is larger than new tree size 8"),
    (-1, 8, ROOTS[0], ROOTS[8], [], "old tree size -1 is negative"),
    (0, -2, ROOTS[0], ROOTS[0], [], "new tree size -2 is negative"),
    (8, 8, ROOTS[8], ROOTS[8], [SOME_HASH], "between equal tree sizes must be empty, got 1"),
    (8, 8, ROOTS[8], ROOTS[7], [], "the two roots for tree size 8 differ"),
    (0, 8, ROOTS[0], ROOTS[8], [SOME_HASH], "from the empty tree must be empty, got 1"),
    (0, 8, ROOTS[1], ROOTS[8], [], "old root hash is not the root of the empty tree"),
]


@pytest.mark.parametrize(
    ("m", "n", "root_m", "root_n", "proof", "message"),
    CONSISTENCY_REJECTS,
    ids=[f"{i}:{case[-1]}" for i, case in enumerate(CONSISTENCY_REJECTS)],
)
def test_verify_consistency_rejects(
    m: int, n: int, root_m: bytes, root_n: bytes, proof: list[bytes], message: str
) -> None:
    verify_consistency(CM, CN, ROOTS[CM], ROOTS[CN], CPROOF)  # the unmodified proof is good
    with pytest.raises(ProofError, match=message):
        verify_consistency(m, n, root_m, root_n, proof)


def test_trivial_consistency_proofs_verify() -> None:
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 8, EMPTY_ROOT, ROOTS[8], [])
    verify_consistency(8, 8, ROOTS[8], ROOTS[8], [])
    verify_inclusion(0, 1, ROOTS[1], [], ROOTS[1])
    with pytest.raises(ProofError, match="does not lead to the expected root"):
        verify_inclusion(0, 1, ROOTS[1], [], ROOTS[2])


def test_proof_requests_out_of_range() -> None:
    read = Store(LEAF_INPUTS).read
    with pytest.raises(ProofError, match="index 5 is out of range for tree size 5"):
        inclusion_proof(5, 5, read)
    with pytest.raises(ProofError, match="index -1 is out of range for tree size 5"):
        inclusion_proof(-1, 5, read)
    with pytest.raises(ProofError, match="index 0 is out of range for tree size 0"):
        inclusion_proof(0, 0, read)
    with pytest.raises(ProofError, match="old tree size 9 is larger than new tree size 8"):
        consistency_proof(9, 8, read)
    with pytest.raises(ProofError, match="old tree size -1 is negative"):
        consistency_proof(-1, 8, read)
    with pytest.raises(ProofError, match="tree size -1 is negative"):
        tree_hash(-1, read)
    with pytest.raises(ProofError, match="tree size -3 is negative"):
        CompactRange.from_reader(-3, read)
