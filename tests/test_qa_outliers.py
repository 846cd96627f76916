"""Outliers within a category (robust z-score) and broken masks (holes, tiny fragments)."""

from __future__ import annotations

import numpy as np
import pytest

from ledger.masks import RLE, encode
from ledger.qa.outliers import check_outliers, robust_z
from ledger.qa.records import InstanceRecord
from ledger.qa.thresholds import Thresholds
from tests.test_qa_records import bitmap, box, inst, table

T = Thresholds()


def _squares(n: int = 12) -> list[InstanceRecord]:
    """n squares of 9 to 11 px a side (aspect 1, one fragment each)."""
    return [inst(f"s{k:02d}", box(2, 2, 11 + k % 3, 11 + k % 3)) for k in range(n)]


def _codes(instances: list[InstanceRecord], thresholds: Thresholds = T) -> list[tuple[str, str]]:
    return sorted((f.code, f.instance_ids[0]) for f in check_outliers(table(instances), thresholds))


def test_robust_z() -> None:
    z = robust_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert z is not None and z[2] == 0.0 and z[4] == pytest.approx(0.6745 * 97)
    fallback = robust_z(np.array([1.0, 1.0, 1.0, 3.0]))  # MAD 0: the mean deviation stands in
    assert fallback is not None and fallback[3] == pytest.approx(2 / (1.253314 * 0.5))
    assert robust_z(np.array([5.0, 5.0, 5.0])) is None


def test_area_outlier_is_flagged_and_typical_masks_pass() -> None:
    assert _codes(_squares()) == []
    big = inst("big", box(5, 5, 50, 50))  # 2025 px against about 100
    assert _codes([*_squares(), big]) == [("outliers.area", "big")]
    (flag,) = check_outliers(table([*_squares(), big]), T)
    assert flag.reason.startswith("area 2025 px is far from the median 100 px of 13 car (1) masks")
    assert flag.value is not None and flag.value > 3.5


def test_aspect_outlier() -> None:
    bar = inst("bar", box(5, 5, 41, 8))  # 36 x 3: about the same area, aspect 12
    assert _codes([*_squares(), bar]) == [("outliers.aspect", "bar")]


def test_fragment_outlier() -> None:
    m = bitmap()
    m[2:7, 2:7] = m[2:7, 20:25] = m[20:25, 2:7] = 1  # three 25 px pieces
    assert _codes([*_squares(), inst("split", encode(m))]) == [("outliers.fragments", "split")]


def test_small_categories_are_not_scored() -> None:
    big = inst("big", box(5, 5, 50, 50))
    assert _codes([*_squares(5), big]) == []
    assert _codes([*_squares(5), big], T.with_overrides({"outliers.min_samples": 5})) == [
        ("outliers.area", "big")
    ]


def _ring() -> RLE:
    m = bitmap()
    m[10:30, 10:30] = 1
    m[15:20, 15:20] = 0  # a 25 px hole
    return encode(m)


def test_hole_is_flagged_and_a_notch_is_not() -> None:
    flags = check_outliers(table([inst("ring", _ring())]), T)
    assert [f.code for f in flags] == ["outliers.holes"]
    assert flags[0].reason == "mask has 1 hole of at least 1 px, the largest 25 px"
    notch = bitmap()
    notch[10:30, 10:30] = 1
    notch[10:20, 15:20] = 0  # a cut open to the top edge: background, but not a hole
    assert check_outliers(table([inst("u", encode(notch))]), T) == []
    big_holes_only = T.with_overrides({"outliers.min_hole_area": 26})
    assert (
        check_outliers(table([inst("ring", _ring())], thresholds=big_holes_only), big_holes_only)
        == []
    )


def test_diagonal_background_does_not_leak_out_of_a_hole() -> None:
    # the hole pixel touches the outside only corner to corner: still a hole (the
    # background is 4-connected when the mask is 8-connected)
    m = bitmap()
    m[10:14, 10:13] = 1
    m[11, 11] = 0  # enclosed left, right, above and below
    m[10, 12] = 0  # its diagonal neighbour, open to the outside
    assert [f.code for f in check_outliers(table([inst("o", encode(m))]), T)] == ["outliers.holes"]


def _specks(count: int) -> RLE:
    m = bitmap()
    m[20:40, 20:40] = 1
    for k in range(count):
        m[5, 5 + 4 * k : 7 + 4 * k] = 1  # 2 px specks, apart from each other
    return encode(m)


def test_many_tiny_fragments_are_flagged_and_a_couple_are_not() -> None:
    flags = check_outliers(table([inst("dust", _specks(3))]), T)
    assert [f.code for f in flags] == ["outliers.tiny_fragments"]
    assert flags[0].reason == (
        "mask has 3 fragments of at most 16 px (of 4 fragments; more than 2 allowed)"
    )
    assert check_outliers(table([inst("dust", _specks(2))]), T) == []


def test_crowd_regions_are_not_judged() -> None:
    crowd = inst("crowd", _specks(5), iscrowd=True)
    assert check_outliers(table([*_squares(), crowd]), T) == []
