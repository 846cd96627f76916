"""Lineage of one instance, with seq and leaf hash of each entry, and PROV-JSON."""

from __future__ import annotations

import json

import pytest

from ledger.errors import NotFound
from ledger.lineage import lineage, to_prov
from ledger.merkle import inclusion_proof, leaf_hash, verify_inclusion
from ledger.service import Ledger
from ledger.store import Store
from tests import factory as f
from tests.test_release import P, built, later_changes


@pytest.fixture
def lg(store: Store) -> Ledger:
    return built(store)


def test_every_step_with_its_leaf_hash(lg: Ledger) -> None:
    later_changes(lg)
    lin = lineage(lg.store, P, "i0")
    assert [(s.seq, s.type, s.revision) for s in lin.steps] == [
        (10, "mask.created", 1), (18, "review.decided", 1), (24, "mask.edited", 2),
    ]  # fmt: skip
    entries = dict(lg.store.iter_entries(P))
    root = bytes.fromhex(lin.root_hash)
    for step in lin.steps:
        assert step.leaf_hash == leaf_hash(entries[step.seq]).hex()
        proof = inclusion_proof(step.seq, lin.tree_size, lambda ix: lg.store.read_hashes(P, ix))
        verify_inclusion(step.seq, lin.tree_size, bytes.fromhex(step.leaf_hash), proof, root)
    created, review, edit = lin.steps
    assert (created.actor, created.principal, created.guideline) == ("alice", "t", "seg-guide@1.0")
    assert created.client_time == f.T0 and created.recorded_at.startswith("2026-11-02T08:02")
    assert created.tool == f.TOOL and created.model is None
    assert (created.area, created.bbox, created.segmentation) == (
        150,
        (5.0, 5.0, 15.0, 10.0),
        f.box_rle(),
    )
    assert (review.decision, review.actor, review.op) == ("accept", "rita", None)
    assert edit.op == "edited" and edit.area == 841 and edit.segmentation is not None
    assert lin.current_revision == 2 and not lin.deleted


def test_model_source_and_deletion(lg: Ledger) -> None:
    i5 = lineage(lg.store, P, "i5")
    assert i5.steps[0].model == {"name": "sam", "version": "vit-h"}
    assert i5.steps[0].actor == "model-x"
    i6 = lineage(lg.store, P, "i6")
    assert [s.op for s in i6.steps] == ["created", "deleted"] and i6.deleted


def test_parents_and_children(lg: Ledger) -> None:
    lg.append(
        P,
        [
            f.mask_created("half-a", parents=["i3"], relation="split"),
            f.mask_created("half-b", parents=["i3"], relation="split"),
            f.mask_created("joined", parents=["half-a", "half-b"], relation="merge"),
        ],
        "t",
    )
    parent = lineage(lg.store, P, "i3")
    assert [(c.child, c.relation, c.seq) for c in parent.children] == [
        ("half-a", "split", 24), ("half-b", "split", 25),
    ]  # fmt: skip
    joined = lineage(lg.store, P, "joined")
    assert [(p.parent, p.relation) for p in joined.parents] == [
        ("half-a", "merge"),
        ("half-b", "merge"),
    ]
    entries = dict(lg.store.iter_entries(P))
    assert joined.parents[0].leaf_hash == leaf_hash(entries[26]).hex()
    prov = to_prov(joined)
    derived = [r for r in prov["wasDerivedFrom"].values() if r.get("ledger:relation") == "merge"]
    assert {r["prov:usedEntity"] for r in derived} == {
        "ledger:proj/instance/half-a", "ledger:proj/instance/half-b",
    }  # fmt: skip


def test_prov_json_document(lg: Ledger) -> None:
    later_changes(lg)
    doc = to_prov(lineage(lg.store, P, "i0"))
    json.dumps(doc)  # plain JSON
    assert doc["prefix"]["ledger"] == "urn:annotation-ledger:"
    r1, r2 = "ledger:proj/instance/i0/revision/1", "ledger:proj/instance/i0/revision/2"
    assert doc["entity"][r1]["ledger:area"] == 150
    assert doc["entity"][r2]["prov:type"] == {
        "$": "ledger:MaskRevision",
        "type": "prov:QUALIFIED_NAME",
    }
    activity = doc["activity"]["ledger:proj/entry/10"]
    assert activity["prov:startTime"] == f.T0 and activity["ledger:seq"] == 10
    generated = {(g["prov:entity"], g["prov:activity"]) for g in doc["wasGeneratedBy"].values()}
    assert (r1, "ledger:proj/entry/10") in generated and (r2, "ledger:proj/entry/24") in generated
    revision_of = [d for d in doc["wasDerivedFrom"].values() if d["prov:generatedEntity"] == r2]
    assert revision_of[0]["prov:usedEntity"] == r1
    assert revision_of[0]["prov:type"]["$"] == "prov:Revision"
    plans = {a.get("prov:plan") for a in doc["wasAssociatedWith"].values()}
    assert "ledger:proj/guideline/seg-guide@1.0" in plans
    used = {(u["prov:activity"], u["prov:entity"]) for u in doc["used"].values()}
    assert ("ledger:proj/entry/18", r1) in used  # the review judged revision 1
    assert doc["agent"]["ledger:proj/actor/rita"]["ledger:id"] == "rita"
    assert any(
        a["prov:delegate"] == "ledger:proj/principal/t" for a in doc["actedOnBehalfOf"].values()
    )


def test_deleted_revision_is_invalidated(lg: Ledger) -> None:
    doc = to_prov(lineage(lg.store, P, "i6"))
    (inv,) = doc["wasInvalidatedBy"].values()
    assert inv["prov:entity"] == "ledger:proj/instance/i6/revision/1"
    assert inv["prov:activity"] == "ledger:proj/entry/23"


def test_unknown_instance(lg: Ledger) -> None:
    with pytest.raises(NotFound, match="instance 'nope' does not exist in proj"):
        lineage(lg.store, P, "nope")
    with pytest.raises(NotFound, match="project other does not exist"):
        lineage(lg.store, "other", "i0")
