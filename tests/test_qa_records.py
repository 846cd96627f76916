"""Builders of QA records (imported by the other QA tests, so that each states only
what it is about), and tests of the records, the thresholds and the mask table."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ledger.errors import InvalidInput
from ledger.masks import RLE, encode
from ledger.qa.records import Flag, ImageRecord, InstanceRecord, QAState, ReviewRecord
from ledger.qa.table import MaskTable, build_table
from ledger.qa.thresholds import THRESHOLD_HELP, Thresholds, parse_threshold_options

H, W = 60, 80


def bitmap(height: int = H, width: int = W) -> npt.NDArray[np.uint8]:
    return np.zeros((height, width), dtype=np.uint8)


def box(x0: int, y0: int, x1: int, y1: int, height: int = H, width: int = W) -> RLE:
    """A filled rectangle covering columns x0..x1-1 and rows y0..y1-1."""
    m = bitmap(height, width)
    m[y0:y1, x0:x1] = 1
    return encode(m)


def image(
    image_id: str = "img", sequence: str | None = None, frame: int | None = None
) -> ImageRecord:
    return ImageRecord(image_id, W, H, f"{image_id}.png", sequence, frame)


def inst(
    instance_id: str,
    rle: RLE,
    *,
    image_id: str = "img",
    category: int = 1,
    annotator: str = "alice",
    seq: int = 10,
    **extra: Any,
) -> InstanceRecord:
    fields: dict[str, Any] = {
        "instance_id": instance_id,
        "image_id": image_id,
        "category_id": category,
        "iscrowd": False,
        "rle": rle,
        "annotator": annotator,
        "actor": annotator,
        "revision": 1,
        "seq": seq,
    }
    fields.update(extra)
    return InstanceRecord(**fields)


def accepted(seq: int, revision: int = 1, reviewer: str = "rita") -> ReviewRecord:
    return ReviewRecord(seq, reviewer, "accept", revision)


def state(instances: list[InstanceRecord], images: list[ImageRecord] | None = None) -> QAState:
    images = images or [image()]
    return QAState(
        "demo",
        1000,
        {i.image_id: i for i in images},
        {1: "car", 2: "person"},
        tuple(instances),
    )


def table(
    instances: list[InstanceRecord],
    images: list[ImageRecord] | None = None,
    thresholds: Thresholds | None = None,
) -> MaskTable:
    return build_table(state(instances, images), thresholds)


# --- the records and thresholds themselves ------------------------------------------------


def test_thresholds_defaults_overrides_and_names() -> None:
    defaults = Thresholds()
    changed = defaults.with_overrides({"overlap.min_ios": 0.25, "outliers.z": 5})
    assert changed.overlap_min_ios == 0.25 and changed.outliers_z == 5.0
    assert defaults.overlap_min_ios == 0.1  # the original is untouched
    names = list(changed.as_json())
    assert names == sorted(names) and set(names) == set(THRESHOLD_HELP)
    assert parse_threshold_options(["drift.min_iou=0.3", " counts.tolerance = 1"]) == {
        "drift.min_iou": 0.3,
        "counts.tolerance": 1.0,
    }


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (["overlap.min_ios"], "expected name=value"),
        (["overlap.min_ios=high"], "expected a number, got 'high'"),
        (["overlap.maximum=1"], "unknown threshold; known: agreement.match_iou"),
        (["drift.min_iou=-1"], "expected a finite number >= 0"),
        (["drift.min_iou=nan"], "expected a finite number >= 0"),
    ],
)
def test_threshold_options_refused(options: list[str], match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        Thresholds().with_overrides(parse_threshold_options(options))


def test_flag_json_rounds_and_omits_what_is_absent() -> None:
    flag = Flag("overlap", "overlap", "img", ("a", "b"), "why", 1 / 3, 0.1, ("alice",))
    assert flag.as_json() == {
        "check": "overlap",
        "code": "overlap",
        "image_id": "img",
        "instance_ids": ["a", "b"],
        "reason": "why",
        "value": 0.333333,
        "threshold": 0.1,
        "actors": ["alice"],
    }
    bare = Flag("counts", "counts.unknown_image", "x", (), "why").as_json()
    assert "value" not in bare and "threshold" not in bare and "actors" not in bare


def test_table_refuses_masks_that_do_not_fit_their_image() -> None:
    small = box(0, 0, 5, 5, height=30, width=40)
    with pytest.raises(
        InvalidInput, match=r"instances\[a\]\.rle\.size: size \[30, 40\] does not match image img"
    ):
        table([inst("a", small)])
    with pytest.raises(InvalidInput, match=r"instances\[a\]\.image_id: image 'nowhere' is unknown"):
        table([inst("a", box(0, 0, 5, 5), image_id="nowhere")])
    with pytest.raises(InvalidInput, match=r"instances\[a\]: instance appears twice"):
        table([inst("a", box(0, 0, 5, 5)), inst("a", box(9, 9, 15, 15))])
    with pytest.raises(InvalidInput, match=r"instances\[a\]\.rle\.counts: invalid character '~'"):
        table([inst("a", {"size": [H, W], "counts": "0~"})])
