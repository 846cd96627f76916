"""Overlap, declared counts and review consistency: each flags the case it must and
passes the close case it must not."""

from __future__ import annotations

from ledger.qa.checks import (
    DeclaredCounts,
    check_counts,
    check_overlaps,
    check_review_consistency,
)
from ledger.qa.records import Flag, ReviewRecord
from ledger.qa.thresholds import Thresholds
from tests.test_qa_records import accepted, box, image, inst, table

T = Thresholds()

# --- overlap ------------------------------------------------------------------------------


def test_overlapping_pair_is_flagged_with_its_numbers() -> None:
    # 10x10 and 20x10 boxes sharing a 5x10 strip: 50 px, 50% of the smaller one
    t = table([inst("a", box(10, 10, 20, 20)), inst("b", box(15, 10, 35, 20))])
    flags = check_overlaps(t, T)
    assert len(flags) == 1
    flag = flags[0]
    assert flag.instance_ids == ("a", "b") and flag.code == "overlap"
    assert flag.value == 0.5 and flag.threshold == 0.1
    assert flag.reason == (
        "a and b (both by alice) overlap by 50 px, 50.0% of the smaller mask a (100 px); "
        "the limit is 10.0%"
    )


def test_touching_masks_do_not_overlap() -> None:
    # side by side (columns 10-19 and 20-29) and corner to corner: they touch, no pixel shared
    t = table(
        [
            inst("a", box(10, 10, 20, 20)),
            inst("b", box(20, 10, 30, 20)),
            inst("c", box(30, 20, 40, 30)),
        ]
    )
    assert check_overlaps(t, T) == []


def test_overlap_threshold_is_strict_and_configurable() -> None:
    # one shared column of 10 px out of 100: exactly 10%
    t = table([inst("a", box(10, 10, 20, 20)), inst("b", box(19, 10, 29, 20))])
    assert check_overlaps(t, T) == []  # 10% is not above 10%
    assert len(check_overlaps(t, T.with_overrides({"overlap.min_ios": 0.05}))) == 1


def test_crowd_and_other_annotators_are_not_overlap_errors() -> None:
    t = table(
        [
            inst("a", box(10, 10, 30, 30)),
            inst("crowd", box(10, 10, 30, 30), iscrowd=True),
            inst("b", box(12, 12, 30, 30), annotator="bob"),  # bob's own labeling
        ]
    )
    assert check_overlaps(t, T) == []


def test_overlaps_are_per_image() -> None:
    t = table(
        [inst("a", box(10, 10, 30, 30)), inst("b", box(10, 10, 30, 30), image_id="other")],
        [image(), image("other")],
    )
    assert check_overlaps(t, T) == []


# --- declared counts ------------------------------------------------------------------------


def _declared(counts: dict[tuple[str, int], int]) -> DeclaredCounts:
    return DeclaredCounts(counts, "0" * 64, "test")


def test_count_mismatch_is_flagged_and_a_match_passes() -> None:
    t = table(
        [
            inst("a", box(0, 0, 5, 5)),
            inst("b", box(10, 0, 15, 5)),
            inst("p", box(30, 0, 35, 5), category=2),
        ]
    )
    flags = check_counts(t, _declared({("img", 1): 3, ("img", 2): 1}), T)
    assert [f.code for f in flags] == ["counts.mismatch"]
    assert flags[0].reason == (
        "car (1): 3 instances declared, 2 found by alice (difference -1, tolerance 0)"
    )
    assert flags[0].value == -1.0
    assert check_counts(t, _declared({("img", 1): 2, ("img", 2): 1}), T) == []


def test_count_tolerance_zero_counts_and_unknown_images() -> None:
    t = table([inst("a", box(0, 0, 5, 5))], [image(), image("empty")])
    loose = T.with_overrides({"counts.tolerance": 1})
    assert check_counts(t, _declared({("img", 1): 2}), loose) == []
    flags = check_counts(t, _declared({("empty", 1): 1, ("ghost", 1): 0}), T)
    assert [(f.code, f.image_id) for f in flags] == [
        ("counts.mismatch", "empty"),
        ("counts.unknown_image", "ghost"),
    ]
    assert flags[0].reason == "car (1): 1 instance declared, 0 found (difference -1, tolerance 0)"
    assert "not registered" in flags[1].reason


def test_counts_compare_each_annotator_and_skip_crowd() -> None:
    t = table(
        [
            inst("a1", box(0, 0, 5, 5)),
            inst("a2", box(10, 0, 15, 5)),
            inst("b1", box(0, 0, 5, 5), annotator="bob"),
            inst("crowd", box(40, 40, 60, 60), annotator="bob", iscrowd=True),
        ]
    )
    flags = check_counts(t, _declared({("img", 1): 2}), T)
    assert [(f.actors, f.value) for f in flags] == [(("bob",), -1.0)]


# --- review consistency ---------------------------------------------------------------------


def _overlap_flag() -> Flag:
    return Flag("overlap", "overlap", "img", ("a", "b"), "a and b overlap", 0.5, 0.1)


def test_accepted_while_a_flag_was_open() -> None:
    a = inst("a", box(10, 10, 20, 20), seq=10, review=accepted(30))
    b = inst("b", box(15, 10, 35, 20), seq=20)
    flags = check_review_consistency(table([a, b]), [_overlap_flag()])
    assert [(f.code, f.instance_ids) for f in flags] == [("review.accepted_with_flag", ("a",))]
    assert flags[0].reason == (
        "revision 1 was accepted by rita (entry 30) although 1 QA flag (overlap) already "
        "applied to it; first: a and b overlap"
    )


def test_accepted_before_the_flag_existed_passes() -> None:
    # b was drawn after a's acceptance: the overlap could not be seen when a was accepted
    a = inst("a", box(10, 10, 20, 20), seq=10, review=accepted(30))
    b = inst("b", box(15, 10, 35, 20), seq=40)
    assert check_review_consistency(table([a, b]), [_overlap_flag()]) == []


def test_image_level_flags_do_not_count_against_acceptance() -> None:
    a = inst("a", box(10, 10, 20, 20), seq=10, review=accepted(30))
    counts = Flag("counts", "counts.mismatch", "img", (), "wrong count")
    assert check_review_consistency(table([a]), [counts]) == []


def test_edited_after_acceptance_without_review() -> None:
    edited = inst(
        "a",
        box(10, 10, 20, 20),
        revision=2,
        seq=50,
        op="edited",
        actor="bob",
        previous_review=accepted(40),
    )
    flags = check_review_consistency(table([edited]), [])
    assert [f.code for f in flags] == ["review.edited_after_accept"]
    assert flags[0].reason == (
        "revision 2 (edited by bob, entry 50) follows the acceptance of revision 1 by rita "
        "(entry 40) and has not been reviewed"
    )


def test_edits_that_were_reviewed_again_or_answer_a_rejection_pass() -> None:
    reviewed = inst(
        "a",
        box(10, 10, 20, 20),
        revision=2,
        seq=50,
        op="edited",
        previous_review=accepted(40),
        review=ReviewRecord(60, "rita", "accept", 2),
    )
    rework = inst(
        "b",
        box(30, 10, 40, 20),
        revision=2,
        seq=50,
        op="edited",
        previous_review=ReviewRecord(40, "rita", "reject", 1),
    )
    assert check_review_consistency(table([reviewed, rework]), []) == []
