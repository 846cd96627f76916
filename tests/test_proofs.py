"""Inclusion and consistency proofs served from the stored tree, on both backends:
published RFC 6962/9162 vectors, every pair on a real log, one read per proof, and the
malformed cases."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ledger import merkle
from ledger.errors import InvalidInput, NotFound, ProofError, VerificationFailed
from ledger.merkle import CompactRange, leaf_hash, stored_hash_index
from ledger.proofs import (
    ConsistencyProof,
    InclusionProof,
    consistency_proof,
    inclusion_proof,
    read_batched,
    tree_head,
)
from ledger.service import Ledger
from ledger.store import Store
from tests import factory as f
from tests.test_checkpoints import superuser_sql
from tests.test_merkle import CONSISTENCY_VECTORS, INCLUSION_VECTORS, LEAF_INPUTS, ROOTS, SOME_HASH

P = "proj"


def load_published_tree(store: Store) -> None:
    """Store the RFC 6962 test tree's hashes as if its 8 leaves were entries (only tree
    hashes and the head: proofs read nothing else)."""
    cr = CompactRange()
    for n, data in enumerate(LEAF_INPUTS):
        for j, h in enumerate(cr.append(leaf_hash(data))):
            store.execute(
                "INSERT INTO tree_hashes (project, idx, hash) VALUES (?, ?, ?)",
                (P, stored_hash_index(0, n) + j, h),
            )
    store.execute(
        "INSERT INTO heads (project, size, last_leaf) VALUES (?, ?, ?)",
        (P, len(LEAF_INPUTS), leaf_hash(LEAF_INPUTS[-1])),
    )


class CountingReads:
    """Counts ``read_hashes`` calls on a real store (the database still answers)."""

    def __init__(self, store: Store) -> None:
        self.calls: list[int] = []
        self._read = store.read_hashes

        def read(project: str, indexes: Sequence[int]) -> list[bytes]:
            self.calls.append(len(indexes))
            return self._read(project, indexes)

        store.read_hashes = read  # type: ignore[method-assign]


def test_published_vectors(store: Store) -> None:
    load_published_tree(store)
    for index, size, want in INCLUSION_VECTORS:
        proof = inclusion_proof(store, P, index, size)
        assert list(proof.hashes) == want, (index, size)
        assert proof.root == ROOTS[size]
        assert proof.leaf_hash == leaf_hash(LEAF_INPUTS[index])
        proof.verify(entry=LEAF_INPUTS[index])
    for m, n, want in CONSISTENCY_VECTORS:
        c = consistency_proof(store, P, m, n)
        assert list(c.hashes) == want, (m, n)
        assert (c.old_root, c.new_root) == (ROOTS[m], ROOTS[n])
        c.verify()


def test_published_roots(store: Store) -> None:
    load_published_tree(store)
    for size in range(1, 9):
        assert tree_head(store, P, size).root == ROOTS[size]
    assert tree_head(store, P).to_json() == {
        "project": P,
        "tree_size": 8,
        "root_hash": ROOTS[8].hex(),
    }


def test_every_proof_on_a_real_log(ledger: Ledger, store: Store) -> None:
    ledger.append(P, f.setup_events() + [f.mask_created(f"i{k}") for k in range(7)], "t")
    entries = [raw for _, raw in store.iter_entries(P)]
    n_all = len(entries)
    reads = CountingReads(store)
    for size in range(1, n_all + 1):
        root = merkle.root_from_leaves(leaf_hash(e) for e in entries[:size])
        for index in range(size):
            proof = inclusion_proof(store, P, index, size)
            assert proof.root == root
            proof.verify(entry=entries[index], root=root)
        for old in range(1, size + 1):
            c = consistency_proof(store, P, old, size)
            c.verify(new_root=root)
    # one read of stored hashes per proof, however many hashes it needs
    proofs = sum(size + size for size in range(1, n_all + 1))
    assert len(reads.calls) == proofs
    assert max(reads.calls) <= 3 * n_all.bit_length()


def test_reads_stay_logarithmic(ledger: Ledger, store: Store) -> None:
    ledger.append(P, f.setup_events() + [f.mask_created(f"i{k}") for k in range(194)], "t")
    reads = CountingReads(store)
    inclusion_proof(store, P, 77)
    consistency_proof(store, P, 99)
    assert len(reads.calls) == 2
    assert all(count <= 2 * (200).bit_length() + 2 for count in reads.calls), reads.calls


def test_defaults_are_the_whole_log(ledger: Ledger, store: Store) -> None:
    result = ledger.append(P, f.setup_events(), "t")
    p = inclusion_proof(store, P, 2)
    c = consistency_proof(store, P, 3)
    assert (p.tree_size, p.root) == (6, result.root)
    assert (c.new_size, c.new_root) == (6, result.root)
    assert p.to_json()["inclusion_path"] == [h.hex() for h in p.hashes]
    assert c.to_json()["consistency_path"] == [h.hex() for h in c.hashes]
    assert c.to_json()["first"] == 3 and c.to_json()["second"] == 6


def test_proof_requests_out_of_range(ledger: Ledger, store: Store) -> None:
    with pytest.raises(NotFound, match="project proj does not exist"):
        inclusion_proof(store, P, 0)
    ledger.append(P, f.setup_events(), "t")
    with pytest.raises(
        InvalidInput, match=r"index: entry 6 is out of range for tree size 6 \(0 to 5\)"
    ):
        inclusion_proof(store, P, 6)
    with pytest.raises(InvalidInput, match="index: entry -1 is out of range"):
        inclusion_proof(store, P, -1)
    with pytest.raises(InvalidInput, match="entry 4 is out of range for tree size 4"):
        inclusion_proof(store, P, 4, 4)
    with pytest.raises(InvalidInput, match="tree_size: tree size 7 is beyond the log size 6"):
        inclusion_proof(store, P, 0, 7)
    with pytest.raises(InvalidInput, match="tree_size: tree size must be at least 1, got 0"):
        tree_head(store, P, 0)
    with pytest.raises(
        InvalidInput, match="first: old tree size 5 is larger than the new tree size 4"
    ):
        consistency_proof(store, P, 5, 4)
    with pytest.raises(InvalidInput, match="first: tree size must be at least 1, got 0"):
        consistency_proof(store, P, 0)
    with pytest.raises(InvalidInput, match="second: tree size 9 is beyond the log size 6"):
        consistency_proof(store, P, 1, 9)


# --- malformed proofs ---------------------------------------------------------------


@pytest.fixture
def proofs(store: Store) -> tuple[InclusionProof, ConsistencyProof]:
    load_published_tree(store)
    return inclusion_proof(store, P, 5, 8), consistency_proof(store, P, 6, 8)


def test_malformed_inclusion_proofs(proofs: tuple[InclusionProof, ConsistencyProof]) -> None:
    p, _ = proofs
    p.verify()
    h = p.hashes
    cases: list[tuple[InclusionProof, str]] = [
        (InclusionProof(P, 5, 8, p.leaf_hash, ROOTS[7], h), "does not lead to the expected root"),
        (
            InclusionProof(P, 5, 8, p.leaf_hash, p.root, h[:2]),
            "wrong size: expected 3 hashes, got 2",
        ),
        (InclusionProof(P, 5, 8, p.leaf_hash, p.root, (*h, SOME_HASH)), "expected 3 hashes, got 4"),
        (InclusionProof(P, 5, 8, p.leaf_hash, p.root, (SOME_HASH, *h[1:])), "expected root"),
        (InclusionProof(P, 4, 8, p.leaf_hash, p.root, h), "does not lead to the expected root"),
        (
            InclusionProof(P, 8, 8, p.leaf_hash, p.root, h),
            "index 8 is out of range for tree size 8",
        ),
        (InclusionProof(P, -1, 8, p.leaf_hash, p.root, h), "index -1 is out of range"),
        (InclusionProof(P, 5, 8, p.leaf_hash[:31], p.root, h), "leaf hash is 31 bytes"),
    ]
    for bad, message in cases:
        with pytest.raises(ProofError, match=message):
            bad.verify()
    with pytest.raises(ProofError, match="does not lead to the expected root"):
        p.verify(root=ROOTS[8][::-1])
    with pytest.raises(ProofError, match="the entry bytes are not the leaf at index 5"):
        p.verify(entry=LEAF_INPUTS[4])


def test_malformed_consistency_proofs(proofs: tuple[InclusionProof, ConsistencyProof]) -> None:
    _, c = proofs
    c.verify()
    h = c.hashes
    cases: list[tuple[ConsistencyProof, str]] = [
        (ConsistencyProof(P, 6, 8, ROOTS[5], c.new_root, h), r"expected old root \(size 6\)"),
        (ConsistencyProof(P, 6, 8, c.old_root, ROOTS[7], h), r"expected new root \(size 8\)"),
        (
            ConsistencyProof(P, 6, 8, c.old_root, c.new_root, h[:2]),
            "wrong size: expected 3 hashes, got 2",
        ),
        (
            ConsistencyProof(P, 6, 8, c.old_root, c.new_root, (*h, SOME_HASH)),
            "expected 3 hashes, got 4",
        ),
        (
            ConsistencyProof(P, 9, 8, c.old_root, c.new_root, h),
            "old tree size 9 is larger than new tree size 8",
        ),
        (
            ConsistencyProof(P, 6, 8, c.old_root, c.new_root, (h[0], SOME_HASH, h[2])),
            "expected new root",
        ),
    ]
    for bad, message in cases:
        with pytest.raises(ProofError, match=message):
            bad.verify()
    with pytest.raises(ProofError, match="expected old root"):
        c.verify(old_root=ROOTS[6][::-1])


def test_read_batched_reads_once(store: Store) -> None:
    load_published_tree(store)
    reads = CountingReads(store)
    a, b, c = read_batched(
        store,
        P,
        lambda r: [merkle.tree_hash(3, r)],
        lambda r: [merkle.tree_hash(8, r)],
        lambda r: merkle.inclusion_proof(0, 8, r),
    )
    assert (a[0], b[0], c) == (ROOTS[3], ROOTS[8], INCLUSION_VECTORS[1][2])
    assert len(reads.calls) == 1


def test_a_named_size_is_read_in_one_query(ledger: Ledger, store: Store, db_url: str) -> None:
    ledger.append(P, f.setup_events(), "t")
    reads = CountingReads(store)
    assert inclusion_proof(store, P, 1, 5).tree_size == 5
    assert reads.calls and len(reads.calls) == 1
    with pytest.raises(NotFound, match="project nope does not exist"):
        inclusion_proof(store, "nope", 0, 3)
    # a stored hash inside the log is gone: that is damage, not a bad request
    superuser_sql(db_url, "DELETE FROM tree_hashes WHERE project = ? AND idx = 0", (P,))
    with pytest.raises(VerificationFailed, match="stored tree hash 0 is missing"):
        consistency_proof(store, P, 1, 4)
