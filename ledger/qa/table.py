"""The masks of a QA state, checked once and measured once for every check.

:func:`build_table` orders the instances (by image, then instance id, so that every
result is in a fixed order), checks that each mask fits its registered image, decodes
every compressed string in one vectorized pass (``ledger.qa.rle``) and keeps the shape
features the checks share. pycocotools only ever sees strings that passed that pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from pycocotools import mask as coco_mask

from ledger.errors import InvalidInput
from ledger.masks import RLE, to_rle
from ledger.qa.records import ImageRecord, InstanceRecord, QAState
from ledger.qa.rle import MaskFeatures, decode_runs, mask_features
from ledger.qa.thresholds import Thresholds

__all__ = ["CHUNK", "MaskTable", "build_table", "coco_iou"]

#: pycocotools 2.0.11 fails on lists of more than 255 RLEs: call it in chunks
CHUNK = 255


@dataclass(frozen=True)
class MaskTable:
    """Instances in (image, instance id) order, with their shape features."""

    instances: tuple[InstanceRecord, ...]
    features: MaskFeatures
    images: dict[str, ImageRecord]
    categories: dict[int, str]
    #: image id -> indexes into ``instances``, images in id order
    by_image: dict[str, list[int]]

    def category_name(self, category_id: int) -> str:
        name = self.categories.get(category_id)
        return f"{name} ({category_id})" if name else f"category {category_id}"


def build_table(state: QAState, thresholds: Thresholds | None = None) -> MaskTable:
    """Check and measure every mask of ``state``.

    Raises :class:`InvalidInput` when an instance names an unknown image, when a mask's
    size differs from its image, or when a compressed string is malformed."""
    thresholds = thresholds or Thresholds()
    instances = sorted(state.instances, key=lambda r: (r.image_id, r.instance_id))
    seen: set[str] = set()
    for record in instances:
        loc = f"instances[{record.instance_id}]"
        if record.instance_id in seen:
            raise InvalidInput.field(loc, "instance appears twice in the state")
        seen.add(record.instance_id)
        image = state.images.get(record.image_id)
        if image is None:
            raise InvalidInput.field(f"{loc}.image_id", f"image {record.image_id!r} is unknown")
        size = list(record.rle.get("size", []))
        if size != [image.height, image.width]:
            raise InvalidInput.field(
                f"{loc}.rle.size",
                f"size {size} does not match image {image.image_id} "
                f"({image.height}x{image.width}, height x width)",
            )
    runs = decode_runs(
        [r.rle["counts"] for r in instances],
        [r.rle["size"][0] for r in instances],
        [r.rle["size"][1] for r in instances],
        [f"instances[{r.instance_id}].rle" for r in instances],
    )
    for i in np.flatnonzero(runs.non_canonical).tolist():
        # zero-length runs: rewrite as pycocotools would have written the same pixels
        record = instances[i]
        height, width = record.rle["size"]
        canonical = to_rle({"size": [height, width], "counts": runs.of(i).tolist()}, height, width)
        instances[i] = replace(record, rle=canonical)
    features = mask_features(
        runs,
        tiny_area=int(thresholds.outliers_tiny_area),
        min_hole_area=max(1, int(thresholds.outliers_min_hole_area)),
    )
    by_image: dict[str, list[int]] = {}
    for i, record in enumerate(instances):
        by_image.setdefault(record.image_id, []).append(i)
    return MaskTable(
        tuple(instances), features, dict(sorted(state.images.items())), state.categories, by_image
    )


def coco_iou(a: Sequence[RLE], b: Sequence[RLE]) -> npt.NDArray[np.float64]:
    """IoU of every mask in ``a`` with every mask in ``b`` (iscrowd=0: symmetric), on
    the RLEs, in chunks of pycocotools' limit. The masks must have been checked."""
    out = np.zeros((len(a), len(b)), dtype=np.float64)
    if not len(a) or not len(b):
        return out
    for i in range(0, len(a), CHUNK):
        chunk_a = list(a[i : i + CHUNK])
        for j in range(0, len(b), CHUNK):
            chunk_b = list(b[j : j + CHUNK])
            iou = coco_mask.iou(chunk_a, chunk_b, [0] * len(chunk_b))
            out[i : i + len(chunk_a), j : j + len(chunk_b)] = np.asarray(iou).reshape(
                len(chunk_a), len(chunk_b)
            )
    return out
