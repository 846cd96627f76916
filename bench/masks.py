"""Throughput of ledger.masks.validate_segmentation against the one-character-at-a-time
validation it replaced, with pycocotools' own decode + area on the same masks as a peer.

    python bench/masks.py [--quick]

Workloads on a 1024x768 image:

* compressed RLE of wobbly blobs, about 1 KB of counts each (a few hundred runs);
* the same masks as uncompressed RLE (a list of run lengths);
* polygons of 20 to 40 vertices and of 260 vertices, as annotation tools store them.

Three columns per workload, each in validations per second (best of several runs):

* ``reference``: the previous implementation, rebuilt here from its parts: the counts
  string decoded and checked one character at a time in Python
  (``ledger.masks._decode_counts_reference``), the canonical RLE re-encoded one run at a
  time, the box from pycocotools' ``toBbox``, polygon coordinates checked one at a time;
* ``ledger``: ``ledger.masks.validate_segmentation``;
* ``pycocotools``: what pycocotools does with the same input when nothing is checked:
  ``decode`` + ``area`` of the RLE (for polygons ``frPyObjects`` + ``merge`` + ``area``).

Before timing, every mask is validated both ways and the results compared.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pycocotools import mask as coco_mask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger import masks
from ledger.errors import InvalidInput

HEIGHT, WIDTH = 768, 1024


# --- the previous implementation, step for step --------------------------------------------


def _reference_encode(runs: Sequence[int]) -> str:
    out: list[str] = []
    for i, run in enumerate(runs):
        value = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = value != -1 if chunk & 0x10 else value != 0
            if more:
                chunk |= 0x20
            out.append(chr(chunk + 48))
    return "".join(out)


def _reference_canonical_runs(runs: Sequence[int]) -> list[int]:
    out = list(runs[:1])
    i = 1
    while i < len(runs):
        if runs[i] == 0:
            if i + 1 < len(runs):
                out[-1] += runs[i + 1]
            i += 2
        else:
            out.append(runs[i])
            i += 1
    return out


def _reference_polygon_runs(seg: list[Any], height: int, width: int, loc: str) -> list[int]:
    rings: list[list[float]] = []
    for i, ring in enumerate(seg):
        ring_loc = f"{loc}[{i}]"
        if not isinstance(ring, list) or len(ring) % 2 or len(ring) < 6:
            raise InvalidInput.field(ring_loc, "bad ring")
        for j, value in enumerate(ring):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput.field(f"{ring_loc}[{j}]", "expected a number")
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidInput.field(f"{ring_loc}[{j}]", "expected a finite number")
            axis, limit, name = ("y", height, "height") if j % 2 else ("x", width, "width")
            if not 0 <= value <= limit:
                raise InvalidInput.field(f"{ring_loc}[{j}]", f"{axis} outside the {name}")
        rings.append([float(v) for v in ring])
    merged = coco_mask.merge(coco_mask.frPyObjects(rings, height, width), intersect=False)
    return masks._decode_counts_reference(merged["counts"].decode("ascii"), "counts")


def reference_validate(seg: Any, height: int, width: int) -> masks.MaskInfo:
    """validate_segmentation as it was: every step in Python, the box from pycocotools."""
    loc = "segmentation"
    pixels = height * width
    kind: Any
    if isinstance(seg, dict):
        kind = "rle"
        if list(seg["size"]) != [height, width] or set(seg) - {"size", "counts"}:
            raise InvalidInput.field(loc, "bad size or field")
        counts = seg["counts"]
        if isinstance(counts, str):
            limit = (pixels + 1) * masks._chunks_per_value(pixels)
            if len(counts) > limit:
                raise InvalidInput.field(loc, "overlong")
            runs = masks._decode_counts_reference(counts, loc, pixels)
        else:
            for i, run in enumerate(counts):
                if not masks._is_int(run) or run < 0:
                    raise InvalidInput.field(f"{loc}[{i}]", "bad run")
            runs = counts
        if sum(runs) != pixels:
            raise InvalidInput.field(loc, "bad total")
    else:
        kind = "polygon"
        runs = _reference_polygon_runs(seg, height, width, loc)
    area = sum(runs[1::2])
    if area == 0:
        raise InvalidInput.field(loc, "mask is empty (area 0)")
    rle: masks.RLE = {
        "size": [height, width],
        "counts": _reference_encode(_reference_canonical_runs(runs)),
    }
    x, y, w, h = (float(v) for v in coco_mask.toBbox([rle])[0])
    return masks.MaskInfo(kind, area, (x, y, w, h), rle)


def pycocotools_only(seg: Any, height: int, width: int) -> int:
    """What pycocotools does with the same input when nothing is checked first."""
    if isinstance(seg, dict):
        rle = seg
        if isinstance(seg["counts"], list):
            rle = coco_mask.frPyObjects(seg, height, width)
        coco_mask.decode(rle)
        return int(coco_mask.area(rle))
    merged = coco_mask.merge(coco_mask.frPyObjects(seg, height, width), intersect=False)
    return int(coco_mask.area(merged))


# --- workloads ------------------------------------------------------------------------------


def blob(rng: random.Random) -> npt.NDArray[np.uint8]:
    """A wobbly filled blob 200 to 300 pixels across: ~1 KB of counts, some 500 runs."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    cy, cx = rng.uniform(0.35, 0.65) * HEIGHT, rng.uniform(0.3, 0.7) * WIDTH
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = sum(
        rng.uniform(0.02, 0.08) * np.sin(k * angle + rng.uniform(0, 6)) for k in (3, 7, 13, 29)
    )
    radius = rng.uniform(0.12, 0.18) * HEIGHT * (1 + wobble)
    return np.asfortranarray(np.hypot(yy - cy, xx - cx) < radius, dtype=np.uint8)


def compressed(rng: random.Random) -> dict[str, Any]:
    counts: bytes = coco_mask.encode(blob(rng))["counts"]
    return {"size": [HEIGHT, WIDTH], "counts": counts.decode("ascii")}


def uncompressed(seg: dict[str, Any]) -> dict[str, Any]:
    runs = masks._decode_counts_reference(seg["counts"], "counts")
    return {"size": [HEIGHT, WIDTH], "counts": runs}


def polygon(rng: random.Random, points: int) -> list[list[float]]:
    cx, cy = rng.uniform(250, WIDTH - 250), rng.uniform(220, HEIGHT - 220)
    radius = rng.uniform(80, 200)
    coords: list[float] = []
    for i in range(points):
        a = 2 * math.pi * i / points
        r = radius * (1 + 0.15 * math.sin(5 * a + cx)) * rng.uniform(0.93, 1.0)
        # two decimals, as annotation tools store them
        coords += [round(cx + r * math.cos(a), 2), round(cy + r * math.sin(a), 2)]
    return [coords]


def median_size(values: list[Any]) -> str:
    """Median counts length, run count or vertex count."""
    seg = values[0]
    if isinstance(seg, dict) and isinstance(seg["counts"], str):
        return f"{statistics.median(len(v['counts']) for v in values) / 1024:.2f} KB"
    if isinstance(seg, dict):
        return f"{statistics.median(len(v['counts']) for v in values):.0f} runs"
    return f"{statistics.median(sum(len(r) for r in v) // 2 for v in values):.0f} pts"


# --- timing ---------------------------------------------------------------------------------


def rate(fn: Callable[[Any, int, int], object], values: list[Any], repeats: int) -> float:
    """Best-of-``repeats`` calls per second over ``values``."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for value in values:
            fn(value, HEIGHT, WIDTH)
        best = min(best, time.perf_counter() - start)
    return len(values) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer masks and repeats")
    args = parser.parse_args()
    count, repeats = (60, 3) if args.quick else (300, 9)

    rng = random.Random(2024)
    rles = [compressed(rng) for _ in range(count)]
    workloads: dict[str, list[Any]] = {
        "compressed RLE": rles,
        "uncompressed RLE": [uncompressed(seg) for seg in rles],
        "polygon, 20-40 pts": [polygon(rng, rng.randrange(20, 41)) for _ in range(count)],
        "polygon, 260 pts": [polygon(rng, 260) for _ in range(count)],
    }
    for name, values in workloads.items():
        for seg in values:
            new, old = (
                masks.validate_segmentation(seg, HEIGHT, WIDTH),
                reference_validate(seg, HEIGHT, WIDTH),
            )
            assert (new.kind, new.area, new.bbox, new.rle) == (
                old.kind,
                old.area,
                old.bbox,
                old.rle,
            ), name
            assert new.area == pycocotools_only(seg, HEIGHT, WIDTH), name

    header = (
        f"{'workload':<20} {'size':>9} {'reference':>10} {'ledger':>9} {'pycocotools':>12}"
        f" {'vs ref':>7} {'vs coco':>8} {'µs/mask':>8}"
    )
    print(f"validations/s on {HEIGHT}x{WIDTH}, best of {repeats} runs over {count} masks each")
    print(header)
    print("-" * len(header))
    for name, values in workloads.items():
        size = median_size(values)
        ref = rate(reference_validate, values, repeats)
        ours = rate(masks.validate_segmentation, values, repeats)
        peer = rate(pycocotools_only, values, repeats)
        print(
            f"{name:<20} {size:>9} {ref:>10,.0f} {ours:>9,.0f} {peer:>12,.0f}"
            f" {ours / ref:>6.1f}x {ours / peer:>7.2f}x {1e6 / ours:>8.1f}"
        )
    print("size: median counts length, run count or vertex count; µs/mask: ledger")


if __name__ == "__main__":
    main()
