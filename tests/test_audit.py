"""Audit queries: an actor's activity, instances under a guideline version, a
reviewer's decisions."""

from __future__ import annotations

import pytest

from ledger.audit import actor_activity, guideline_instances, reviewer_decisions
from ledger.errors import InvalidInput
from ledger.service import Ledger
from ledger.store import Store
from tests import factory as f
from tests.test_release import P, built


@pytest.fixture
def lg(store: Store) -> Ledger:
    return built(store)


def test_actor_activity_in_a_time_range(lg: Ledger) -> None:
    everything = list(actor_activity(lg.store, P, "alice"))
    assert [a.seq for a in everything] == [10, 11, 12, 13, 14, 16, 17, 23]
    assert everything[-1].type == "mask.deleted" and everything[-1].revision == 1
    assert everything[0].client_time == f.T0 and everything[0].principal == "t"
    # appends at 08:02 (seq 10-16), 08:03 (17) and 08:04 (18-23)
    window = list(
        actor_activity(lg.store, P, "alice", "2026-11-02T08:03:00Z", "2026-11-02T08:04:00Z")
    )
    assert [(a.seq, a.type, a.instance_id) for a in window] == [(17, "mask.edited", "i1")]
    paged = list(actor_activity(lg.store, P, "alice", page=3))
    assert paged == everything
    assert list(actor_activity(lg.store, P, "nobody")) == []


def test_reviewer_decisions(lg: Ledger) -> None:
    decisions = list(reviewer_decisions(lg.store, P, "rita"))
    assert [(d.instance_id, d.revision, d.decision) for d in decisions] == [
        ("i0", 1, "accept"), ("i1", 2, "accept"), ("i2", 1, "reject"),
        ("i4", 1, "accept"), ("i5", 1, "accept"),
    ]  # fmt: skip
    assert decisions[0].recorded_at.startswith("2026-11-02T08:04")
    assert list(reviewer_decisions(lg.store, P, "rita", until="2026-11-02T08:04:00Z")) == []
    assert list(reviewer_decisions(lg.store, P, "rita", page=2)) == decisions


def test_instances_under_a_guideline_version(lg: Ledger) -> None:
    lg.append(
        P,
        [
            {**f.mask_edited("i3", 1), "guideline": {"id": "seg-guide", "version": "2.0"}},
            {**f.mask_created("i9"), "guideline": {"id": "seg-guide", "version": "2.0"}},
        ],
        "t",
    )
    v2 = [s.instance_id for s in guideline_instances(lg.store, P, "seg-guide@2.0")]
    assert v2 == ["i3", "i9"]
    v1 = [s.instance_id for s in guideline_instances(lg.store, P, "seg-guide@1.0")]
    assert v1 == ["i0", "i1", "i2", "i4", "i5"]
    assert [s.instance_id for s in guideline_instances(lg.store, P, "seg-guide@2.0", at=24)] == []


def test_bad_arguments(lg: Ledger) -> None:
    with pytest.raises(InvalidInput, match=r"since: 'last week' is not an ISO 8601"):
        list(actor_activity(lg.store, P, "alice", since="last week"))
    with pytest.raises(InvalidInput, match=r"until: .* has no timezone"):
        list(reviewer_decisions(lg.store, P, "rita", until="2026-01-01T00:00:00"))
    with pytest.raises(InvalidInput, match=r"guideline: expected ID@VERSION"):
        list(guideline_instances(lg.store, P, "seg-guide"))
