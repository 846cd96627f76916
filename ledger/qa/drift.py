"""Drift across the frames of a sequence, along tracks.

Images with a ``sequence_id`` and a ``frame_index`` are frames; instances on them with
the same ``track_id`` in one sequence form a track. Walking each track in frame order,
consecutive appearances are compared:

* gap: registered frames of the sequence lie between the two appearances (more than
  ``drift.max_gap`` of them); frames that were never registered are not a gap;
* low IoU: on neighbouring registered frames, the two masks' IoU (pycocotools on the
  RLEs) is below ``drift.min_iou``;
* sudden area change: on neighbouring registered frames, the larger area is more than
  ``drift.max_area_ratio`` times the smaller;
* category flip: the category differs (neighbouring or not).

A track that has two instances on one frame is flagged as such; the first (by
instance id) continues the track.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right

from ledger.qa.records import Flag, InstanceRecord
from ledger.qa.table import MaskTable, coco_iou
from ledger.qa.thresholds import Thresholds

__all__ = ["check_drift"]


def check_drift(table: MaskTable, thresholds: Thresholds) -> list[Flag]:
    frames: dict[str, list[int]] = {}
    for image in table.images.values():
        if image.sequence_id is not None and image.frame_index is not None:
            frames.setdefault(image.sequence_id, []).append(image.frame_index)
    for indexes in frames.values():
        indexes.sort()
    tracks: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for i, record in enumerate(table.instances):
        image = table.images[record.image_id]
        if record.track_id is None or image.sequence_id is None or image.frame_index is None:
            continue
        tracks.setdefault((image.sequence_id, record.track_id), []).append((image.frame_index, i))

    flags: list[Flag] = []
    pairs: list[tuple[str, str, int, int]] = []  # (sequence, track, i, j) on neighbours
    for (sequence, track), appearances in sorted(tracks.items()):
        appearances.sort(key=lambda a: (a[0], table.instances[a[1]].instance_id))
        walk: list[tuple[int, int]] = []
        for frame, i in appearances:
            if walk and walk[-1][0] == frame:
                first = table.instances[walk[-1][1]]
                dup = table.instances[i]
                flags.append(
                    Flag(
                        "drift",
                        "drift.duplicate_track",
                        dup.image_id,
                        (first.instance_id, dup.instance_id),
                        f"track {track} of sequence {sequence} has two instances on frame "
                        f"{frame}: {first.instance_id} and {dup.instance_id}",
                    )
                )
                continue
            walk.append((frame, i))
        registered = frames[sequence]
        for (f0, i), (f1, j) in itertools.pairwise(walk):
            a, b = table.instances[i], table.instances[j]
            missing = bisect_left(registered, f1) - bisect_right(registered, f0)
            if missing > thresholds.drift_max_gap:
                flags.append(
                    Flag(
                        "drift",
                        "drift.gap",
                        b.image_id,
                        (a.instance_id, b.instance_id),
                        f"track {track} of sequence {sequence} is missing from {missing} "
                        f"registered frame{'s' * (missing != 1)} between frame {f0} "
                        f"({a.instance_id}) and frame {f1} ({b.instance_id}); "
                        f"at most {thresholds.drift_max_gap:g} allowed",
                        float(missing),
                        thresholds.drift_max_gap,
                    )
                )
            if a.category_id != b.category_id:
                flags.append(
                    Flag(
                        "drift",
                        "drift.category_flip",
                        b.image_id,
                        (a.instance_id, b.instance_id),
                        f"track {track} of sequence {sequence} changes category from "
                        f"{table.category_name(a.category_id)} on frame {f0} to "
                        f"{table.category_name(b.category_id)} on frame {f1}",
                    )
                )
            if missing == 0:
                flags.extend(_area_change(table, sequence, track, (f0, i), (f1, j), thresholds))
                if a.rle["size"] == b.rle["size"]:
                    pairs.append((sequence, track, i, j))
    flags.extend(_low_iou(table, pairs, thresholds))
    return flags


def _area_change(
    table: MaskTable,
    sequence: str,
    track: str,
    first: tuple[int, int],
    second: tuple[int, int],
    thresholds: Thresholds,
) -> list[Flag]:
    """``first`` and ``second`` are (frame index, instance index) of neighbouring frames."""
    (f0, i), (f1, j) = first, second
    b: InstanceRecord = table.instances[j]
    area_a = int(table.features.area[i])
    area_b = int(table.features.area[j])
    ratio = max(area_a, area_b) / max(1, min(area_a, area_b))
    if ratio <= thresholds.drift_max_area_ratio:
        return []
    return [
        Flag(
            "drift",
            "drift.area_change",
            b.image_id,
            (table.instances[i].instance_id, b.instance_id),
            f"track {track} of sequence {sequence} changes area from {area_a} px on frame "
            f"{f0} to {area_b} px on frame {f1} (x{ratio:.2f}, limit "
            f"x{thresholds.drift_max_area_ratio:g})",
            ratio,
            thresholds.drift_max_area_ratio,
        )
    ]


def _low_iou(
    table: MaskTable, pairs: list[tuple[str, str, int, int]], thresholds: Thresholds
) -> list[Flag]:
    """IoU of each neighbouring pair, one pycocotools call per pair of frames."""
    by_frames: dict[tuple[str, str], list[tuple[str, str, int, int]]] = {}
    for pair in pairs:
        key = (table.instances[pair[2]].image_id, table.instances[pair[3]].image_id)
        by_frames.setdefault(key, []).append(pair)
    flags: list[Flag] = []
    limit = thresholds.drift_min_iou
    for group in by_frames.values():
        left = sorted({p[2] for p in group})
        right = sorted({p[3] for p in group})
        iou = coco_iou(
            [table.instances[i].rle for i in left], [table.instances[j].rle for j in right]
        )
        row = {i: k for k, i in enumerate(left)}
        col = {j: k for k, j in enumerate(right)}
        for sequence, track, i, j in group:
            value = float(iou[row[i], col[j]])
            if value >= limit:
                continue
            a, b = table.instances[i], table.instances[j]
            fa = table.images[a.image_id].frame_index
            fb = table.images[b.image_id].frame_index
            flags.append(
                Flag(
                    "drift",
                    "drift.low_iou",
                    b.image_id,
                    (a.instance_id, b.instance_id),
                    f"track {track} of sequence {sequence}: IoU {value:.3f} between frame "
                    f"{fa} ({a.instance_id}) and frame {fb} ({b.instance_id}), "
                    f"below {limit:.3f}",
                    value,
                    limit,
                )
            )
    return flags
