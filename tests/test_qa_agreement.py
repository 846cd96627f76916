"""Inter-annotator agreement: optimal matching on mask IoU, per image and per annotator."""

from __future__ import annotations

import pytest

from ledger.qa.agreement import check_agreement
from ledger.qa.records import InstanceRecord
from ledger.qa.thresholds import Thresholds
from tests.test_qa_records import box, image, inst, table

T = Thresholds()
# three objects, 20x20 px each
OBJECTS = [(5, 5), (30, 5), (5, 35)]


def _alice() -> list[InstanceRecord]:
    return [inst(f"a{k}", box(x, y, x + 20, y + 20)) for k, (x, y) in enumerate(OBJECTS)]


def test_agreement_up_to_a_one_pixel_border_passes() -> None:
    # bob draws every object one pixel larger all round: IoU 400 / 484 = 0.826
    bob = [
        inst(f"b{k}", box(x - 1, y - 1, x + 21, y + 21), annotator="bob")
        for k, (x, y) in enumerate(OBJECTS)
    ]
    result = check_agreement(table(_alice() + bob), T)
    assert result.flags == []
    (row,) = result.images
    assert row.annotators == ("alice", "bob") and row.matched == 3 and row.unmatched == ()
    assert row.f1_50 == 1.0 and row.f1_75 == 1.0
    assert row.mean_iou == pytest.approx(400 / 484)
    assert [a.annotator for a in result.annotators] == ["alice", "bob"]
    assert all(a.f1_50 == 1.0 and a.unmatched == 0 for a in result.annotators)


def test_optimal_assignment_beats_greedy() -> None:
    # the best single pair is a0-b0 (IoU 0.81); taking it first would leave a1 with b1
    # (IoU 0.38, no match). The assignment maximising the summed IoU pairs a0-b1 (0.58)
    # and a1-b0 (0.61): both objects matched.
    alice = [inst("a0", box(28, 10, 48, 30)), inst("a1", box(29, 10, 40, 30))]
    bob = [
        inst("b0", box(27, 10, 45, 30), annotator="bob"),
        inst("b1", box(17, 10, 46, 30), annotator="bob"),
    ]
    result = check_agreement(table(alice + bob), T)
    assert result.images[0].matched == 2 and result.images[0].unmatched == ()
    assert result.images[0].mean_iou == pytest.approx((18 / 31 + 11 / 18) / 2)
    assert not [f for f in result.flags if f.code == "agreement.unmatched"]


def test_missed_object_and_relabeled_object_are_flagged() -> None:
    bob = [
        inst("b0", box(5, 5, 25, 25), annotator="bob"),
        inst("b1", box(30, 5, 50, 25), annotator="bob", category=2),
    ]  # bob missed the third object and called the second a person
    result = check_agreement(table(_alice() + bob), T)
    codes = sorted(f.code for f in result.flags)
    assert codes == ["agreement.category", "agreement.low_f1", "agreement.unmatched"]
    by_code = {f.code: f for f in result.flags}
    assert by_code["agreement.unmatched"].instance_ids == ("a2",)
    assert by_code["agreement.unmatched"].reason == (
        "a2 by alice has no counterpart by bob at IoU >= 0.50 (no instance by bob overlaps it)"
    )
    assert by_code["agreement.category"].reason == (
        "alice labeled a1 car (1), bob labeled the matching b1 person (2) (IoU 1.000)"
    )
    # TP at 0.5 needs the same category: only object 0 counts, F1 = 2 * 1 / (3 + 2)
    assert by_code["agreement.low_f1"].value == pytest.approx(0.4)
    row = result.images[0]
    assert row.matched == 2 and row.unmatched == ("a2",) and row.tp50 == 1
    alice_row = next(a for a in result.annotators if a.annotator == "alice")
    assert alice_row.unmatched == 1 and alice_row.instances == 3


def test_poor_outlines_lower_the_mean_iou() -> None:
    # bob's outlines are shifted by 6 px: IoU 14 * 20 / (2 * 400 - 280) = 0.538
    bob = [
        inst(f"b{k}", box(x + 6, y, x + 26, y + 20), annotator="bob")
        for k, (x, y) in enumerate(OBJECTS)
    ]
    result = check_agreement(table(_alice() + bob), T)
    assert [f.code for f in result.flags] == ["agreement.low_iou"]
    assert result.flags[0].value == pytest.approx(280 / 520)
    assert result.images[0].f1_75 == 0.0 and result.images[0].f1_50 == 1.0


def test_single_annotator_images_and_crowd_are_not_compared() -> None:
    crowd = inst("c", box(0, 0, 60, 60), annotator="bob", iscrowd=True)
    other = inst("o", box(0, 0, 20, 20), annotator="bob", image_id="other")
    result = check_agreement(table([*_alice(), crowd, other], [image(), image("other")]), T)
    assert result.images == [] and result.flags == []


def test_three_annotators_give_three_pairs() -> None:
    people = ["alice", "bob", "carol"]
    instances = [
        inst(f"{p}{k}", box(x, y, x + 20, y + 20), annotator=p)
        for p in people
        for k, (x, y) in enumerate(OBJECTS)
    ]
    result = check_agreement(table(instances), T)
    assert [r.annotators for r in result.images] == [
        ("alice", "bob"),
        ("alice", "carol"),
        ("bob", "carol"),
    ]
    assert all(a.images == 1 and a.matched == 6 for a in result.annotators)
