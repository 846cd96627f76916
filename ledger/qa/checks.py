"""The checks that compare masks within one image, counts, and review decisions.

Each check is a pure function of a :class:`~ledger.qa.table.MaskTable` (and, for
counts, the declared counts; for review consistency, the other checks' flags) that
returns flags in a fixed order. The other checks live in ``agreement``, ``drift`` and
``outliers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ledger.qa.records import Flag, InstanceRecord
from ledger.qa.table import MaskTable, coco_iou
from ledger.qa.thresholds import Thresholds

__all__ = [
    "DeclaredCounts",
    "annotator_groups",
    "check_counts",
    "check_overlaps",
    "check_review_consistency",
]


def annotator_groups(table: MaskTable, indexes: Sequence[int]) -> dict[str, list[int]]:
    """The non-crowd instances among ``indexes`` by the annotator who created them."""
    groups: dict[str, list[int]] = {}
    for i in indexes:
        record = table.instances[i]
        if not record.iscrowd:
            groups.setdefault(record.annotator, []).append(i)
    return dict(sorted(groups.items()))


# --- overlap --------------------------------------------------------------------------


def check_overlaps(table: MaskTable, thresholds: Thresholds) -> list[Flag]:
    """Pairs of non-crowd instances of one image and one annotator whose intersection
    exceeds ``overlap.min_ios`` of the smaller mask.

    Where several annotators labeled an image independently their instances overlap by
    design; that is what the agreement check measures, so pairs are formed within each
    annotator's instances. The intersection comes from pycocotools' IoU on the RLEs and
    the areas (I = IoU (|A| + |B|) / (1 + IoU)); only pairs whose boxes meet are sent to
    it."""
    limit = thresholds.overlap_min_ios
    f = table.features
    flags: list[Flag] = []
    for image_id, indexes in table.by_image.items():
        for annotator, group in annotator_groups(table, indexes).items():
            if len(group) < 2:
                continue
            idx = np.asarray(group)
            x0, y0 = f.x[idx], f.y[idx]
            x1, y1 = x0 + f.w[idx], y0 + f.h[idx]
            meet = (
                (x0[:, None] < x1[None, :])
                & (x0[None, :] < x1[:, None])
                & (y0[:, None] < y1[None, :])
                & (y0[None, :] < y1[:, None])
            )
            np.fill_diagonal(meet, False)
            candidates = np.flatnonzero(meet.any(axis=1))
            if len(candidates) < 2:
                continue
            sub = idx[candidates]
            rles = [table.instances[i].rle for i in sub.tolist()]
            iou = coco_iou(rles, rles)
            area = f.area[sub].astype(np.float64)
            total = area[:, None] + area[None, :]
            inter = np.rint(iou * total / (1.0 + iou))
            smaller = np.minimum(area[:, None], area[None, :])
            ios = np.divide(inter, smaller, out=np.zeros_like(iou), where=smaller > 0)
            rows, cols = np.nonzero(np.triu(ios > limit, k=1))
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                a, b = table.instances[int(sub[r])], table.instances[int(sub[c])]
                small = a if area[r] <= area[c] else b
                reason = (
                    f"{a.instance_id} and {b.instance_id} (both by {annotator}) overlap by "
                    f"{int(inter[r, c])} px, {ios[r, c]:.1%} of the smaller mask "
                    f"{small.instance_id} ({int(min(area[r], area[c]))} px); "
                    f"the limit is {limit:.1%}"
                )
                flags.append(
                    Flag(
                        "overlap",
                        "overlap",
                        image_id,
                        (a.instance_id, b.instance_id),
                        reason,
                        float(ios[r, c]),
                        limit,
                        (annotator,),
                    )
                )
    return flags


# --- declared counts --------------------------------------------------------------------


@dataclass(frozen=True)
class DeclaredCounts:
    """Expected instance counts per (image, category), and where they came from.

    ``sha256`` identifies the declaration (the SHA-256 of the file it was read from);
    a report records it so that the same declaration gives the same report."""

    counts: Mapping[tuple[str, int], int]
    sha256: str
    source: str = ""


def check_counts(table: MaskTable, declared: DeclaredCounts, thresholds: Thresholds) -> list[Flag]:
    """Declared counts against the non-crowd instances of each image and category.

    A crowd region stands for an unknown number of objects, so it is not counted.
    Where several annotators labeled an image, each annotator's count is compared.
    A declaration about an image that is not registered is flagged too."""
    tolerance = thresholds.counts_tolerance
    actual: dict[tuple[str, int], dict[str, int]] = {}
    annotators: dict[str, list[str]] = {}
    for image_id, indexes in table.by_image.items():
        groups = annotator_groups(table, indexes)
        annotators[image_id] = list(groups)
        for annotator, group in groups.items():
            for i in group:
                key = (image_id, table.instances[i].category_id)
                per = actual.setdefault(key, {})
                per[annotator] = per.get(annotator, 0) + 1
    flags: list[Flag] = []
    for (image_id, category_id), expected in sorted(declared.counts.items()):
        category = table.category_name(category_id)
        if image_id not in table.images:
            flags.append(
                Flag(
                    "counts",
                    "counts.unknown_image",
                    image_id,
                    (),
                    f"counts are declared for image {image_id}, which is not registered",
                )
            )
            continue
        people = annotators.get(image_id) or [""]
        found = actual.get((image_id, category_id), {})
        for annotator in people:
            count = found.get(annotator, 0)
            if abs(count - expected) <= tolerance:
                continue
            by = f" by {annotator}" if annotator else ""
            flags.append(
                Flag(
                    "counts",
                    "counts.mismatch",
                    image_id,
                    (),
                    f"{category}: {expected} instance{'s' * (expected != 1)} declared, "
                    f"{count} found{by} (difference {count - expected:+d}, "
                    f"tolerance {tolerance:g})",
                    float(count - expected),
                    tolerance,
                    (annotator,) if annotator else (),
                )
            )
    return flags


# --- review consistency ---------------------------------------------------------------

#: flags about an image as a whole: they do not point at instances a reviewer accepted
IMAGE_LEVEL_CODES = frozenset(
    {"agreement.low_f1", "agreement.low_iou", "counts.mismatch", "counts.unknown_image"}
)


def check_review_consistency(table: MaskTable, flags: Iterable[Flag]) -> list[Flag]:
    """Instances accepted while a QA flag on them was open, and masks edited after an
    acceptance without a new review.

    A flag was open at an acceptance when every instance the flag names was already at
    the revision the flag is about (its revision's entry comes before the acceptance):
    the reviewer accepted a mask whose problem could have been seen then. Flags about
    an image as a whole (agreement scores, counts) are not counted."""
    by_id = {r.instance_id: r for r in table.instances}
    open_flags: dict[str, list[Flag]] = {}
    for flag in flags:
        if flag.code in IMAGE_LEVEL_CODES or not flag.instance_ids:
            continue
        members = [by_id[i] for i in flag.instance_ids if i in by_id]
        newest = max(m.seq for m in members)
        for member in members:
            review = member.review
            if review is not None and review.decision == "accept" and newest < review.seq:
                open_flags.setdefault(member.instance_id, []).append(flag)
    out: list[Flag] = []
    for record in table.instances:
        found = open_flags.get(record.instance_id)
        if found:
            assert record.review is not None
            codes = sorted({f.code for f in found})
            out.append(
                Flag(
                    "review",
                    "review.accepted_with_flag",
                    record.image_id,
                    (record.instance_id,),
                    f"revision {record.revision} was accepted by {record.review.reviewer} "
                    f"(entry {record.review.seq}) although {len(found)} QA "
                    f"flag{'s' * (len(found) != 1)} ({', '.join(codes)}) already applied "
                    f"to it; first: {_first_reason(found)}",
                    float(len(found)),
                    None,
                    (record.review.reviewer,),
                )
            )
        out.extend(_edited_after_accept(record))
    return out


def _first_reason(flags: list[Flag]) -> str:
    return sorted(flags, key=Flag.sort_key)[0].reason


def _edited_after_accept(record: InstanceRecord) -> list[Flag]:
    before = record.previous_review
    if record.op != "edited" or record.review is not None or before is None:
        return []
    if before.decision != "accept":
        return []  # an edit after a rejection is rework, waiting for its review
    return [
        Flag(
            "review",
            "review.edited_after_accept",
            record.image_id,
            (record.instance_id,),
            f"revision {record.revision} (edited by {record.actor}, entry {record.seq}) "
            f"follows the acceptance of revision {before.revision} by {before.reviewer} "
            f"(entry {before.seq}) and has not been reviewed",
            None,
            None,
            (record.actor,),
        )
    ]
