"""Drift along tracks across the frames of a sequence."""

from __future__ import annotations

from typing import Any

from ledger.masks import RLE
from ledger.qa.drift import check_drift
from ledger.qa.records import ImageRecord
from ledger.qa.thresholds import Thresholds
from tests.test_qa_records import box, image, inst, table

T = Thresholds()


def _frames(n: int, sequence: str = "seq") -> list[ImageRecord]:
    return [image(f"f{k}", sequence, k) for k in range(n)]


def _track(rles: dict[int, RLE], track: str = "t1", **extra: Any) -> list[Any]:
    return [
        inst(f"{track}-{k}", rle, image_id=f"f{k}", track_id=track, **extra)
        for k, rle in rles.items()
    ]


def _codes(flags: list[Any]) -> list[str]:
    return sorted(f.code for f in flags)


def test_smooth_track_passes() -> None:
    # a 20x20 box moving 2 px per frame: IoU 18/22 = 0.82 between neighbours
    rles = {k: box(10 + 2 * k, 10, 30 + 2 * k, 30) for k in range(5)}
    assert check_drift(table(_track(rles), _frames(5)), T) == []


def test_jump_between_consecutive_frames_is_flagged() -> None:
    rles = {0: box(10, 10, 30, 30), 1: box(12, 10, 32, 30), 2: box(25, 10, 45, 30)}
    flags = check_drift(table(_track(rles), _frames(3)), T)
    assert _codes(flags) == ["drift.low_iou"]
    (flag,) = flags
    assert flag.instance_ids == ("t1-1", "t1-2") and flag.image_id == "f2"
    assert flag.reason == (
        "track t1 of sequence seq: IoU 0.212 between frame 1 (t1-1) and frame 2 (t1-2), below 0.500"
    )


def test_sudden_area_change_is_flagged_and_a_gradual_one_is_not() -> None:
    grow = {0: box(10, 10, 30, 30), 1: box(10, 10, 30, 36), 2: box(10, 10, 30, 44)}
    assert check_drift(table(_track(grow), _frames(3)), T) == []  # x1.3 per frame
    jump = {0: box(10, 10, 30, 30), 1: box(10, 10, 50, 31)}  # 400 -> 840 px
    flags = check_drift(table(_track(jump), _frames(2)), T)
    assert "drift.area_change" in _codes(flags)
    change = next(f for f in flags if f.code == "drift.area_change")
    assert change.value == 2.1 and change.reason == (
        "track t1 of sequence seq changes area from 400 px on frame 0 to 840 px on frame 1 "
        "(x2.10, limit x2)"
    )


def test_category_flip_is_flagged() -> None:
    instances = _track({0: box(10, 10, 30, 30), 1: box(11, 10, 31, 30)})
    instances[1] = inst("t1-1", box(11, 10, 31, 30), image_id="f1", track_id="t1", category=2)
    flags = check_drift(table(instances, _frames(2)), T)
    assert _codes(flags) == ["drift.category_flip"]
    assert flags[0].reason == (
        "track t1 of sequence seq changes category from car (1) on frame 0 to person (2) on frame 1"
    )


def test_gap_over_a_registered_frame_is_flagged_and_an_unregistered_one_is_not() -> None:
    rles = {0: box(10, 10, 30, 30), 2: box(12, 10, 32, 30)}
    with_middle = _frames(3)
    flags = check_drift(table(_track(rles), with_middle), T)
    assert _codes(flags) == ["drift.gap"]
    assert flags[0].reason == (
        "track t1 of sequence seq is missing from 1 registered frame between frame 0 (t1-0) "
        "and frame 2 (t1-2); at most 0 allowed"
    )
    without_middle = [with_middle[0], with_middle[2]]  # frame 1 was never registered
    assert check_drift(table(_track(rles), without_middle), T) == []
    assert (
        check_drift(table(_track(rles), with_middle), T.with_overrides({"drift.max_gap": 1})) == []
    )


def test_two_instances_of_one_track_on_a_frame() -> None:
    instances = [
        *_track({0: box(10, 10, 30, 30), 1: box(11, 10, 31, 30)}),
        inst("t1-dup", box(50, 10, 70, 30), image_id="f1", track_id="t1"),
    ]
    flags = check_drift(table(instances, _frames(2)), T)
    assert _codes(flags) == ["drift.duplicate_track"]
    assert flags[0].instance_ids == ("t1-1", "t1-dup")


def test_tracks_are_per_sequence_and_untracked_masks_are_ignored() -> None:
    frames = [image("f0", "s1", 0), image("f1", "s2", 0)]
    instances = [
        inst("x", box(10, 10, 30, 30), image_id="f0", track_id="t1"),
        inst("y", box(50, 10, 70, 30), image_id="f1", track_id="t1"),  # other sequence
        inst("z", box(50, 10, 70, 30), image_id="f0"),  # no track
    ]
    assert check_drift(table(instances, frames), T) == []
