"""Throughput of ledger.canonical.canonical_bytes against rfc8785.dumps and the stdlib.

    python bench/canonical.py [--quick]

Builds realistic ~4 KB mask events (one with a compressed COCO RLE, one with a polygon
of a few hundred float coordinates, both in the full event envelope) and prints
entries per second for each serializer on the same values. All three produce bytes;
the stdlib column is ``json.dumps(sort_keys=True, ensure_ascii=False,
separators=(",", ":")).encode()``, which is not JCS but bounds what is reachable.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import rfc8785
from pycocotools import mask as mask_utils

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.canonical import canonical_bytes


def envelope(rng: random.Random, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    moment = datetime(2025, 3, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(10**7))
    return {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "type": kind,
        "actor": f"annotator-{rng.randrange(500):03d}",
        "client_time": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "guideline": {"id": "coco-instances", "version": f"2.{rng.randrange(12)}.0"},
        "tool": {"name": "cvat", "version": "2.14.1"},
        "payload": payload,
    }


def blob(rng: random.Random, height: int, width: int) -> np.ndarray[Any, Any]:
    """A wobbly filled blob: a few hundred runs, like a real instance mask."""
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = sum(
        rng.uniform(0.02, 0.1) * np.sin(k * angle + rng.uniform(0, 6)) for k in (3, 7, 13, 31)
    )
    radius = 0.3 * min(height, width) * (1 + wobble)
    return np.asfortranarray(np.hypot(yy - cy, xx - cx) < radius, dtype=np.uint8)


HEIGHT, WIDTH = 1080, 1920


def rle_counts(rng: random.Random) -> str:
    counts: bytes = mask_utils.encode(blob(rng, HEIGHT, WIDTH))["counts"]
    return counts.decode("ascii")


def rle_event(rng: random.Random, counts: str) -> dict[str, Any]:
    payload = {
        "mask_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "image_id": rng.randrange(10**6),
        "category_id": rng.randrange(1, 91),
        "segmentation": {"size": [HEIGHT, WIDTH], "counts": counts},
        "score": round(rng.random(), 4),
        "iscrowd": False,
    }
    return envelope(rng, "mask.created", payload)


def polygon_event(rng: random.Random, points: int = 260) -> dict[str, Any]:
    cx, cy, r = rng.uniform(200, 800), rng.uniform(200, 600), rng.uniform(50, 180)
    coords: list[float] = []
    for i in range(points):
        a = 2 * math.pi * i / points
        rr = r * (1 + 0.15 * math.sin(5 * a + cx))
        # two decimals, as annotation tools store them; about one in a hundred is integral
        coords += [round(cx + rr * math.cos(a), 2), round(cy + rr * math.sin(a), 2)]
    payload = {
        "mask_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "image_id": rng.randrange(10**6),
        "category_id": rng.randrange(1, 91),
        "segmentation": [coords],
        "bbox": [min(coords[0::2]), min(coords[1::2]), 2 * r, 2 * r],
        "iscrowd": False,
    }
    return envelope(rng, "mask.created", payload)


def stdlib(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def rates(fns: list[Callable[[Any], bytes]], values: list[Any], rounds: int) -> list[float]:
    """Entries per second of each function over ``values``: the best of ``rounds``
    passes, taken in turn so that a busy moment on the machine hits all alike."""
    best = [math.inf] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for value in values:
                fn(value)
            best[i] = min(best[i], time.perf_counter() - start)
    return [len(values) / seconds for seconds in best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer values and repeats")
    args = parser.parse_args()
    count, rounds = (60, 3) if args.quick else (300, 9)

    rng = random.Random(8785)
    masks = [rle_counts(rng) for _ in range(20)]  # drawing masks is the slow part
    workloads = {
        "rle mask event": [rle_event(rng, rng.choice(masks)) for _ in range(count)],
        "polygon mask event": [polygon_event(rng) for _ in range(count)],
    }
    workloads["both, interleaved"] = [
        v for pair in zip(*workloads.values(), strict=True) for v in pair
    ]

    header = (
        f"{'workload':<20} {'size':>6} {'canonical':>10} {'rfc8785':>9} {'stdlib':>9}"
        f" {'vs rfc8785':>11} {'vs stdlib':>10}"
    )
    print(f"entries/s, best of {rounds} passes over {count} values (interleaved: {2 * count})")
    print(header)
    print("-" * len(header))
    for name, values in workloads.items():
        for value in values:
            assert canonical_bytes(value) == rfc8785.dumps(value), name
        size = sum(len(stdlib(v)) for v in values) / len(values)
        ours, ref, std = rates([canonical_bytes, rfc8785.dumps, stdlib], values, rounds)
        print(
            f"{name:<20} {size / 1024:>4.1f}KB {ours:>10,.0f} {ref:>9,.0f} {std:>9,.0f}"
            f" {ours / ref:>10.2f}x {ours / std:>9.2f}x"
        )


if __name__ == "__main__":
    main()
