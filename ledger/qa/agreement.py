"""Inter-annotator agreement: where two or more annotators labeled the same image.

For every pair of annotators of an image (the actors who created its non-crowd
instances), their instances are matched by an optimal assignment on mask IoU
(``scipy.optimize.linear_sum_assignment`` maximising the summed IoU; IoU from
pycocotools on the RLEs with iscrowd=0, so it is symmetric). From the assignment:

* matched pairs: assigned pairs with IoU >= ``agreement.match_iou``; the others of
  both sides are *unmatched*;
* mean matched IoU: the mean IoU of the matched pairs;
* F1 at t (t = 0.5, 0.75): ``2 TP / (n_a + n_b)`` where TP counts assigned pairs with
  IoU >= t and the same category.

Per annotator, the pairs an annotator took part in are pooled: F1 = 2 ΣTP / Σ(n_a +
n_b), mean IoU over all their matched pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped]

from ledger.qa.checks import annotator_groups
from ledger.qa.records import Flag
from ledger.qa.table import MaskTable, coco_iou
from ledger.qa.thresholds import Thresholds

__all__ = ["AgreementResult", "AnnotatorAgreement", "ImageAgreement", "check_agreement"]


@dataclass(frozen=True)
class ImageAgreement:
    """Agreement of two annotators on one image."""

    image_id: str
    annotators: tuple[str, str]
    instances: tuple[int, int]
    matched: int
    mean_iou: float | None
    tp50: int
    tp75: int
    unmatched: tuple[str, ...]

    @property
    def f1_50(self) -> float:
        return _f1(self.tp50, sum(self.instances))

    @property
    def f1_75(self) -> float:
        return _f1(self.tp75, sum(self.instances))

    def as_json(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "annotators": list(self.annotators),
            "instances": list(self.instances),
            "matched": self.matched,
            "mean_iou": _round(self.mean_iou),
            "f1_50": _round(self.f1_50),
            "f1_75": _round(self.f1_75),
            "unmatched": list(self.unmatched),
        }


@dataclass(frozen=True)
class AnnotatorAgreement:
    """One annotator's agreement with everyone they were compared with."""

    annotator: str
    images: int
    instances: int
    matched: int
    unmatched: int
    mean_iou: float | None
    f1_50: float
    f1_75: float

    def as_json(self) -> dict[str, Any]:
        return {
            "annotator": self.annotator,
            "images": self.images,
            "instances": self.instances,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "mean_iou": _round(self.mean_iou),
            "f1_50": _round(self.f1_50),
            "f1_75": _round(self.f1_75),
        }


@dataclass(frozen=True)
class AgreementResult:
    flags: list[Flag]
    images: list[ImageAgreement]
    annotators: list[AnnotatorAgreement]

    def as_json(self) -> dict[str, Any]:
        return {
            "images": [i.as_json() for i in self.images],
            "annotators": [a.as_json() for a in self.annotators],
        }


def _f1(tp: int, total: int) -> float:
    return 2.0 * tp / total if total else 1.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def check_agreement(table: MaskTable, thresholds: Thresholds) -> AgreementResult:
    """Match the instances of every pair of annotators of every image; flag images
    whose F1 at IoU 0.5 or mean matched IoU is low, unmatched instances, and matched
    instances labeled with different categories."""
    match_iou = thresholds.agreement_match_iou
    flags: list[Flag] = []
    images: list[ImageAgreement] = []
    for image_id, indexes in table.by_image.items():
        groups = annotator_groups(table, indexes)
        if len(groups) < 2:
            continue
        for (name_a, group_a), (name_b, group_b) in combinations(groups.items(), 2):
            result, pair_flags = _compare(
                table, image_id, (name_a, group_a), (name_b, group_b), match_iou
            )
            images.append(result)
            flags.extend(pair_flags)
            pair = f"{name_a} and {name_b}"
            if result.f1_50 < thresholds.agreement_min_f1:
                flags.append(
                    Flag(
                        "agreement",
                        "agreement.low_f1",
                        image_id,
                        (),
                        f"{pair} agree on {result.tp50} of {result.instances[0]} and "
                        f"{result.instances[1]} instances at IoU 0.5 (F1 {result.f1_50:.2f}, "
                        f"below {thresholds.agreement_min_f1:.2f})",
                        result.f1_50,
                        thresholds.agreement_min_f1,
                        (name_a, name_b),
                    )
                )
            if result.mean_iou is not None and result.mean_iou < thresholds.agreement_min_mean_iou:
                flags.append(
                    Flag(
                        "agreement",
                        "agreement.low_iou",
                        image_id,
                        (),
                        f"{pair}: mean IoU of their {result.matched} matched instances is "
                        f"{result.mean_iou:.3f}, below {thresholds.agreement_min_mean_iou:.3f}",
                        result.mean_iou,
                        thresholds.agreement_min_mean_iou,
                        (name_a, name_b),
                    )
                )
    return AgreementResult(flags, images, _per_annotator(images))


def _compare(
    table: MaskTable,
    image_id: str,
    side_a: tuple[str, list[int]],
    side_b: tuple[str, list[int]],
    match_iou: float,
) -> tuple[ImageAgreement, list[Flag]]:
    (name_a, group_a), (name_b, group_b) = side_a, side_b
    inst = table.instances
    iou = coco_iou([inst[i].rle for i in group_a], [inst[j].rle for j in group_b])
    rows, cols = linear_sum_assignment(iou, maximize=True)
    flags: list[Flag] = []
    matched_a: set[int] = set()
    matched_b: set[int] = set()
    ious: list[float] = []
    tp50 = tp75 = 0
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        value = float(iou[r, c])
        a, b = inst[group_a[r]], inst[group_b[c]]
        same = a.category_id == b.category_id
        tp50 += int(same and value >= 0.5)
        tp75 += int(same and value >= 0.75)
        if value < match_iou:
            continue
        matched_a.add(r)
        matched_b.add(c)
        ious.append(value)
        if not same:
            flags.append(
                Flag(
                    "agreement",
                    "agreement.category",
                    image_id,
                    (a.instance_id, b.instance_id),
                    f"{name_a} labeled {a.instance_id} {table.category_name(a.category_id)}, "
                    f"{name_b} labeled the matching {b.instance_id} "
                    f"{table.category_name(b.category_id)} (IoU {value:.3f})",
                    value,
                    match_iou,
                    (name_a, name_b),
                )
            )
    unmatched: list[str] = []
    for side, group, other_name, other_group, matched, matrix in (
        (name_a, group_a, name_b, group_b, matched_a, iou),
        (name_b, group_b, name_a, group_a, matched_b, iou.T),
    ):
        for k, i in enumerate(group):
            if k in matched:
                continue
            record = inst[i]
            unmatched.append(record.instance_id)
            if matrix.shape[1] and float(matrix[k].max()) > 0:
                best = int(np.argmax(matrix[k]))
                detail = (
                    f"best IoU {float(matrix[k, best]):.3f} with "
                    f"{inst[other_group[best]].instance_id}"
                )
            else:
                detail = f"no instance by {other_name} overlaps it"
            flags.append(
                Flag(
                    "agreement",
                    "agreement.unmatched",
                    image_id,
                    (record.instance_id,),
                    f"{record.instance_id} by {side} has no counterpart by {other_name} "
                    f"at IoU >= {match_iou:.2f} ({detail})",
                    float(matrix[k].max()) if matrix.shape[1] else 0.0,
                    match_iou,
                    (side, other_name),
                )
            )
    result = ImageAgreement(
        image_id,
        (name_a, name_b),
        (len(group_a), len(group_b)),
        len(ious),
        float(np.mean(ious)) if ious else None,
        tp50,
        tp75,
        tuple(sorted(unmatched)),
    )
    return result, flags


def _per_annotator(images: list[ImageAgreement]) -> list[AnnotatorAgreement]:
    pooled: dict[str, dict[str, Any]] = {}
    for result in images:
        for side, name in enumerate(result.annotators):
            p = pooled.setdefault(
                name,
                {"images": set(), "instances": 0, "total": 0, "tp50": 0, "tp75": 0,
                 "matched": 0, "iou_sum": 0.0, "unmatched": 0},
            )  # fmt: skip
            p["images"].add(result.image_id)
            p["instances"] += result.instances[side]
            p["total"] += sum(result.instances)
            p["tp50"] += result.tp50
            p["tp75"] += result.tp75
            p["matched"] += result.matched
            if result.mean_iou is not None:
                p["iou_sum"] += result.mean_iou * result.matched
            p["unmatched"] += result.instances[side] - result.matched
    out = []
    for name in sorted(pooled):
        p = pooled[name]
        out.append(
            AnnotatorAgreement(
                name,
                len(p["images"]),
                p["instances"],
                p["matched"],
                p["unmatched"],
                p["iou_sum"] / p["matched"] if p["matched"] else None,
                _f1(p["tp50"], p["total"]),
                _f1(p["tp75"], p["total"]),
            )
        )
    return out
