"""Masks whose shape is far from the rest of their category, or broken in itself.

Per category (non-crowd instances; a crowd region is irregular by nature), three
numbers of every mask are scored with the robust z-score of Iglewicz and Hoaglin::

    z = 0.6745 (x - median) / MAD

with ``MAD`` the median absolute deviation; where the MAD is 0 (more than half the
values are equal) the mean absolute deviation stands in, ``z = (x - median) / (1.2533
MeanAD)``; where that is 0 too, every value is the same and nothing is flagged. The
numbers are the log of the area, the log of the box's aspect ratio (width / height, so
that tall and wide count alike) and the number of fragments (8-connected components).
A mask is flagged when ``|z| > outliers.z``, only in categories with at least
``outliers.min_samples`` masks.

Independently of its category, a mask is flagged when it has holes of at least
``outliers.min_hole_area`` pixels, or more than ``outliers.max_tiny`` fragments of at
most ``outliers.tiny_area`` pixels. Fragments and holes come from the runs of the RLE
(``ledger.qa.rle``), not from decoded bitmaps.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ledger.qa.records import Flag
from ledger.qa.table import MaskTable
from ledger.qa.thresholds import Thresholds

__all__ = ["check_outliers", "robust_z"]

_MAD_SCALE = 0.6745
_MEAN_AD_SCALE = 1.253314


def robust_z(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
    """Robust z-scores of ``values``; None when they are all equal."""
    median = float(np.median(values))
    deviation = np.abs(values - median)
    mad = float(np.median(deviation))
    if mad > 0:
        return np.asarray(_MAD_SCALE * (values - median) / mad, dtype=np.float64)
    mean_ad = float(np.mean(deviation))
    if mean_ad > 0:
        return np.asarray((values - median) / (_MEAN_AD_SCALE * mean_ad), dtype=np.float64)
    return None


def check_outliers(table: MaskTable, thresholds: Thresholds) -> list[Flag]:
    f = table.features
    limit = thresholds.outliers_z
    by_category: dict[int, list[int]] = {}
    for i, record in enumerate(table.instances):
        if not record.iscrowd:
            by_category.setdefault(record.category_id, []).append(i)
    flags: list[Flag] = []
    for category_id, members in sorted(by_category.items()):
        if len(members) < thresholds.outliers_min_samples:
            continue
        idx = np.asarray(members)
        area = f.area[idx].astype(np.float64)
        width, height = f.w[idx].astype(np.float64), f.h[idx].astype(np.float64)
        aspect = np.maximum(width, 1.0) / np.maximum(height, 1.0)
        features = {
            "area": (np.log(np.maximum(area, 1.0)), area, "area", "px"),
            "aspect": (np.log(aspect), aspect, "aspect ratio (w/h)", ""),
            "fragments": (
                f.fragments[idx].astype(np.float64),
                f.fragments[idx].astype(np.float64),
                "fragments",
                "",
            ),
        }
        category = table.category_name(category_id)
        for code, (scored, shown, label, unit) in features.items():
            z = robust_z(scored)
            if z is None:
                continue
            median = float(np.median(shown))
            for k in np.flatnonzero(np.abs(z) > limit).tolist():
                record = table.instances[members[k]]
                flags.append(
                    Flag(
                        "outliers",
                        f"outliers.{code}",
                        record.image_id,
                        (record.instance_id,),
                        f"{label} {_number(float(shown[k]), unit)} is far from the median "
                        f"{_number(median, unit)} of {len(members)} {category} masks "
                        f"(robust z {float(z[k]):+.2f}, limit ±{limit:g})",
                        float(z[k]),
                        limit,
                    )
                )
    for i, record in enumerate(table.instances):
        if record.iscrowd:
            continue
        holes = int(f.holes[i])
        if holes:
            flags.append(
                Flag(
                    "outliers",
                    "outliers.holes",
                    record.image_id,
                    (record.instance_id,),
                    f"mask has {holes} hole{'s' * (holes != 1)} of at least "
                    f"{thresholds.outliers_min_hole_area:g} px, the largest "
                    f"{int(f.largest_hole[i])} px",
                    float(f.largest_hole[i]),
                    thresholds.outliers_min_hole_area,
                )
            )
        tiny = int(f.tiny_fragments[i])
        if tiny > thresholds.outliers_max_tiny:
            flags.append(
                Flag(
                    "outliers",
                    "outliers.tiny_fragments",
                    record.image_id,
                    (record.instance_id,),
                    f"mask has {tiny} fragments of at most {thresholds.outliers_tiny_area:g} px "
                    f"(of {int(f.fragments[i])} fragments; more than "
                    f"{thresholds.outliers_max_tiny:g} allowed)",
                    float(tiny),
                    thresholds.outliers_max_tiny,
                )
            )
    return flags


def _number(value: float, unit: str) -> str:
    if unit == "px":
        return f"{value:.0f} px"
    if math.isclose(value, round(value)):
        return f"{value:.0f}"
    return f"{value:.2f}"
