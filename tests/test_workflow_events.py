"""Assignment, count-declaration, materialization and job-status events."""

from __future__ import annotations

import hashlib

import pytest

from ledger.errors import Conflict, InvalidInput
from ledger.service import Ledger
from ledger.store import Store
from tests import factory as f

P = "proj"


def assign(instance_id: str, revision: int, assignee: str, **extra: object) -> dict[str, object]:
    payload = {"instance_id": instance_id, "revision": revision, "assignee": assignee, **extra}
    return f.event("review.assigned", payload, actor="router")


@pytest.fixture
def seeded(ledger: Ledger) -> Ledger:
    ledger.append(P, [*f.setup_events(), f.actor("rob", "reviewer"), f.mask_created("a")], "t")
    return ledger


def test_assignment_is_recorded(seeded: Ledger, store: Store) -> None:
    result = seeded.append(P, [assign("a", 1, "rita", rule="cars")], "t")
    rows = store.query("SELECT * FROM assignments WHERE project = ?", (P,))
    assert [
        (r["seq"], r["instance_id"], r["assignee"], r["rule"], r["assigned_by"]) for r in rows
    ] == [(result.results[0].seq, "a", "rita", "cars", "router")]


def test_assignment_rules(seeded: Ledger, store: Store) -> None:
    # alice drew the mask: even with the review role she may not be asked to judge it
    seeded.append(P, [f.actor("alice", "annotator", roles=["annotate", "review"])], "t")
    with pytest.raises(InvalidInput, match=r"payload\.assignee: actor 'alice' drew revision 1"):
        seeded.append(P, [assign("a", 1, "alice")], "t")
    seeded.append(P, [f.actor("carl")], "t")
    with pytest.raises(InvalidInput, match=r"actor 'carl' \(annotator\) may not review"):
        seeded.append(P, [assign("a", 1, "carl")], "t")
    with pytest.raises(InvalidInput, match="actor 'nobody' is not registered"):
        seeded.append(P, [assign("a", 1, "nobody")], "t")
    with pytest.raises(Conflict, match="stale revision"):
        seeded.append(P, [assign("a", 2, "rita")], "t")
    assert store.query("SELECT COUNT(*) AS n FROM assignments WHERE project = ?", (P,))[0]["n"] == 0


def test_counts_declared(seeded: Ledger, store: Store) -> None:
    ev = f.event(
        "counts.declared", {"image_id": "img-1", "counts": [{"category_id": 1, "count": 3}]}
    )
    seeded.append(P, [ev], "t")
    row = store.query("SELECT image_id, counts FROM count_declarations WHERE project = ?", (P,))[0]
    assert (row["image_id"], row["counts"]) == ("img-1", '{"1":3}')
    bad = f.event(
        "counts.declared", {"image_id": "img-1", "counts": [{"category_id": 9, "count": 1}]}
    )
    with pytest.raises(
        InvalidInput, match=r"payload\.counts\[0\]\.category_id: category 9 is not defined"
    ):
        seeded.append(P, [bad], "t")
    twice = f.event(
        "counts.declared",
        {
            "image_id": "img-1",
            "counts": [{"category_id": 1, "count": 1}, {"category_id": 1, "count": 2}],
        },
    )
    with pytest.raises(InvalidInput, match="each category may be declared once per image"):
        seeded.append(P, [twice], "t")


def test_materialization_needs_a_release(seeded: Ledger) -> None:
    ev = f.event(
        "release.materialized",
        {"name": "v1", "manifest_sha256": hashlib.sha256(b"m").hexdigest(), "files": 3},
    )
    with pytest.raises(InvalidInput, match=r"payload\.name: release 'v1' does not exist"):
        seeded.append(P, [ev], "t")


def test_job_status_is_logged(seeded: Ledger, store: Store) -> None:
    ev = f.event("job.status_changed", {"source": "cvat", "job_id": "17", "status": "completed"})
    result = seeded.append(P, [ev], "t")
    seq = result.results[0].seq
    assert store.query("SELECT type FROM entries WHERE project = ? AND seq = ?", (P, seq))[0][
        "type"
    ] == ("job.status_changed")
