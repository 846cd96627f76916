"""Time of the full QA report, and of each check, on 10,000 images x 20 instances.

    python bench/qa.py [--quick] [--json FILE] [--seed N]

The records are built in memory (``ledger.qa.records``), not appended through the
ledger: the benchmark measures the checks and the report, not the log. Reading the same
records from a store is ``ledger.qa.source.load_state``, a handful of queries.

The data: 1024x768 images, 20 instances each, 10 categories, masks rasterized from
wobbly polygons by pycocotools (compressed RLE, as a tool would post them):

* 70% of images labeled by one annotator, objects on a 5x4 grid; about 2% of the
  images get one instance pushed onto its neighbour (overlap flags);
* 10% labeled independently by two annotators (10 objects each, the second one's
  outlines jittered by about a pixel, an object missed or relabeled now and then);
* 20% are frames of 10-frame sequences with 20 tracks moving a few pixels per frame,
  with the odd category flip, dropped frame and sudden size change;
* about 0.5% of masks have a hole and 0.5% a sprinkle of tiny fragments;
* declared counts for every image and category, a few of them off by one;
* review decisions on most instances, some edits after an acceptance.

``--quick`` uses 1,000 images. Printed rows: name, value, unit, limit, ratio (value /
limit, below 1 is within the limit), target.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.masks import to_rle
from ledger.qa.checks import DeclaredCounts
from ledger.qa.records import ImageRecord, InstanceRecord, QAState, ReviewRecord
from ledger.qa.report import CHECKS, run_qa
from ledger.qa.rle import decode_runs

HEIGHT, WIDTH = 768, 1024
PER_IMAGE = 20
CATEGORIES = 10
GRID = (5, 4)  # columns, rows of object cells
LIMIT_FULL = 60.0  # seconds for 10,000 images


class Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.seq = 1000
        self.images: dict[str, ImageRecord] = {}
        self.instances: list[InstanceRecord] = []
        self.counter = 0

    # --- shapes ---------------------------------------------------------------------
    def outline(self, cx: float, cy: float, radius: float, phase: float) -> list[float]:
        angles = np.linspace(0.0, 2 * math.pi, 28, endpoint=False)
        wobble = 1 + 0.18 * np.sin(3 * angles + phase) + 0.08 * np.sin(7 * angles + 2 * phase)
        r = radius * wobble * (0.8 + 0.4 * abs(math.sin(phase)))
        xs = np.clip(cx + r * np.cos(angles), 0, WIDTH - 1)
        ys = np.clip(cy + r * 0.8 * np.sin(angles), 0, HEIGHT - 1)
        return np.stack([xs, ys], axis=1).ravel().round(2).tolist()

    def rasterize(self, polygons: list[list[float]]) -> list[dict[str, Any]]:
        rles = coco_mask.frPyObjects(polygons, HEIGHT, WIDTH)
        return [{"size": [HEIGHT, WIDTH], "counts": r["counts"].decode("ascii")} for r in rles]

    def with_hole(self, rle: dict[str, Any], cx: float, cy: float) -> dict[str, Any]:
        inner = self.rasterize([self.outline(cx, cy, 6.0, 0.3)])[0]
        runs = decode_runs([inner["counts"]], [HEIGHT], [WIDTH]).of(0).tolist()
        flipped = runs[1:] if runs[0] == 0 else [0, *runs]
        outside = to_rle({"size": [HEIGHT, WIDTH], "counts": flipped}, HEIGHT, WIDTH)
        merged = coco_mask.merge([rle, dict(outside)], intersect=True)
        return {"size": [HEIGHT, WIDTH], "counts": merged["counts"].decode("ascii")}

    def with_specks(self, rle: dict[str, Any], cx: float, cy: float) -> dict[str, Any]:
        specks = []
        for k in range(4):
            x, y = cx + 60 + 6 * k, cy - 40 + 5 * k
            specks.append([x, y, x + 2, y, x + 2, y + 2, x, y + 2.5])
        parts = [rle, *self.rasterize([[min(max(v, 0), 700) for v in s] for s in specks])]
        merged = coco_mask.merge(parts, intersect=False)
        return {"size": [HEIGHT, WIDTH], "counts": merged["counts"].decode("ascii")}

    # --- records ----------------------------------------------------------------------
    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def add(
        self,
        image_id: str,
        annotator: str,
        category: int,
        rle: dict[str, Any],
        track: str | None = None,
    ) -> None:
        self.counter += 1
        created = self.next_seq()
        roll = self.rng.random()
        revision, op, seq, actor = 1, "created", created, annotator
        review: ReviewRecord | None = None
        previous: ReviewRecord | None = None
        if roll < 0.03:  # accepted, then edited without a new review
            previous = ReviewRecord(self.next_seq(), "rev-1", "accept", 1)
            revision, op, seq, actor = 2, "edited", self.next_seq(), "fixer"
        elif roll < 0.08:  # rejected, reworked, accepted
            previous = ReviewRecord(self.next_seq(), "rev-2", "reject", 1)
            revision, op, seq = 2, "edited", self.next_seq()
            review = ReviewRecord(self.next_seq(), "rev-2", "accept", 2)
        elif roll < 0.85:
            review = ReviewRecord(self.next_seq(), "rev-1", "accept", 1)
        self.instances.append(
            InstanceRecord(
                instance_id=f"i{self.counter:07d}",
                image_id=image_id,
                category_id=category,
                iscrowd=False,
                rle=rle,  # type: ignore[arg-type]
                annotator=annotator,
                actor=actor,
                revision=revision,
                seq=seq,
                op=op,
                track_id=track,
                review=review,
                previous_review=previous,
            )
        )

    def cells(self) -> list[tuple[float, float, float]]:
        cols, rows = GRID
        cw, ch = WIDTH / cols, HEIGHT / rows
        out = []
        for r in range(rows):
            for c in range(cols):
                cx = (c + 0.5) * cw + self.rng.uniform(-15, 15)
                cy = (r + 0.5) * ch + self.rng.uniform(-15, 15)
                out.append((cx, cy, self.rng.uniform(0.12, 0.33) * min(cw, ch)))
        return out

    def decorate(self, rles: list[dict[str, Any]], cells: list[tuple[float, float, float]]) -> None:
        for k, (cx, cy, _) in enumerate(cells):
            roll = self.rng.random()
            if roll < 0.005:
                rles[k] = self.with_hole(rles[k], cx, cy)
            elif roll < 0.01:
                rles[k] = self.with_specks(rles[k], cx, cy)

    def single(self, image_id: str) -> None:
        self.images[image_id] = ImageRecord(image_id, WIDTH, HEIGHT, f"{image_id}.jpg")
        cells = self.cells()
        if self.rng.random() < 0.02:  # push one object onto its neighbour
            cx, cy, r = cells[1]
            cells[0] = (cx - r * 0.5, cy, r)
        phases = self.rng.uniform(0, 6, len(cells))
        rles = self.rasterize(
            [self.outline(*cell, p) for cell, p in zip(cells, phases, strict=True)]
        )
        self.decorate(rles, cells)
        annotator = f"ann-{int(self.rng.integers(0, 40)):02d}"
        for rle in rles:
            self.add(image_id, annotator, int(self.rng.integers(1, CATEGORIES + 1)), rle)

    def double(self, image_id: str) -> None:
        self.images[image_id] = ImageRecord(image_id, WIDTH, HEIGHT, f"{image_id}.jpg")
        cells = self.cells()[: PER_IMAGE // 2]
        phases = self.rng.uniform(0, 6, len(cells))
        categories = self.rng.integers(1, CATEGORIES + 1, len(cells))
        first = [self.outline(*cell, p) for cell, p in zip(cells, phases, strict=True)]
        second = [
            (np.asarray(poly) + self.rng.normal(0, 0.8, len(poly))).clip(0, WIDTH - 1).tolist()
            for poly in first
        ]
        a, b = self.rng.choice(40, size=2, replace=False)
        for polys, who in ((first, f"ann-{a:02d}"), (second, f"ann-{b:02d}")):
            rles = self.rasterize(polys)
            for k, rle in enumerate(rles):
                if who.endswith(f"{b:02d}") and self.rng.random() < 0.03:
                    continue  # the second annotator missed it
                category = int(categories[k])
                if who.endswith(f"{b:02d}") and self.rng.random() < 0.02:
                    category = category % CATEGORIES + 1
                self.add(image_id, who, category, rle)

    def sequence(self, name: str, frames: int) -> None:
        cells = self.cells()
        velocity = self.rng.normal(0, 2.5, (len(cells), 2))
        phases = self.rng.uniform(0, 6, len(cells))
        categories = self.rng.integers(1, CATEGORIES + 1, len(cells))
        annotator = f"ann-{int(self.rng.integers(0, 40)):02d}"
        for f in range(frames):
            image_id = f"{name}-f{f:02d}"
            self.images[image_id] = ImageRecord(image_id, WIDTH, HEIGHT, f"{image_id}.jpg", name, f)
            moved = [
                (cx + vx * f, cy + vy * f, r * (2.2 if (f == 5 and k == 3) else 1.0))
                for k, ((cx, cy, r), (vx, vy)) in enumerate(zip(cells, velocity, strict=True))
            ]
            rles = self.rasterize([self.outline(*c, p) for c, p in zip(moved, phases, strict=True)])
            self.decorate(rles, moved)
            for k, rle in enumerate(rles):
                if f == 4 and k == 7 and self.rng.random() < 0.5:
                    continue  # dropped frame: a gap in the track
                category = int(categories[k])
                if f >= 6 and k == 11 and self.rng.random() < 0.3:
                    category = category % CATEGORIES + 1
                self.add(image_id, annotator, category, rle, track=f"t{k:02d}")

    def declared(self) -> DeclaredCounts:
        """What a project manager would declare: the objects of each image and category
        (for doubly labeled images, once, not once per annotator), a few off by one."""
        per: dict[tuple[str, int, str], int] = {}
        for r in self.instances:
            key = (r.image_id, r.category_id, r.annotator)
            per[key] = per.get(key, 0) + 1
        counts: dict[tuple[str, int], int] = {}
        for (image_id, category, _), n in per.items():
            counts[(image_id, category)] = max(counts.get((image_id, category), 0), n)
        for pair in list(counts)[:: max(1, len(counts) // 200)]:
            counts[pair] += 1
        return DeclaredCounts(counts, "0" * 64, "bench")


def build(images: int, seed: int) -> tuple[QAState, DeclaredCounts]:
    b = Builder(seed)
    n_seq_images = images // 5 // 10 * 10
    n_double = images // 10
    for s in range(n_seq_images // 10):
        b.sequence(f"seq{s:04d}", 10)
    for k in range(n_double):
        b.double(f"dbl{k:06d}")
    for k in range(images - n_seq_images - n_double):
        b.single(f"img{k:06d}")
    categories = {c: f"class-{c}" for c in range(1, CATEGORIES + 1)}
    state = QAState("bench", b.seq + 1, b.images, categories, tuple(b.instances))
    return state, b.declared()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 images instead of 10,000")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    images = 1_000 if args.quick else 10_000
    limit = LIMIT_FULL * images / 10_000

    start = time.perf_counter()
    state, declared = build(images, args.seed)
    built = time.perf_counter() - start
    print(
        f"built {len(state.images):,} images, {len(state.instances):,} instances "
        f"in {built:.1f} s (not timed below)",
        file=sys.stderr,
    )

    start = time.perf_counter()
    report = run_qa(state, declared=declared)
    total = time.perf_counter() - start
    again = run_qa(state, declared=declared)
    assert again.canonical == report.canonical, "the report is not reproducible"

    rows: list[dict[str, Any]] = [
        {
            "name": "qa.report",
            "value": round(total, 3),
            "unit": "s",
            "limit": limit,
            "ratio": round(total / limit, 3),
            "target": f"full QA report of {images:,} images x {PER_IMAGE} instances "
            f"under {limit:g} s",
        }
    ]
    for step in ("prepare", *CHECKS, "serialize"):
        if step in report.timings:
            rows.append(
                {
                    "name": f"qa.{step}",
                    "value": round(report.timings[step], 3),
                    "unit": "s",
                    "limit": None,
                    "ratio": None,
                    "target": "time of this step within qa.report",
                }
            )
    rows.append(
        {
            "name": "qa.masks_per_second",
            "value": round(len(state.instances) / total),
            "unit": "masks/s",
            "limit": None,
            "ratio": None,
            "target": "throughput of the whole report",
        }
    )
    summary = report.document["summary"]
    for code, count in summary["by_code"].items():
        rows.append(
            {
                "name": f"flags.{code}",
                "value": count,
                "unit": "flags",
                "limit": None,
                "ratio": None,
                "target": "found in the generated data",
            }
        )
    print(f"{'name':<32} {'value':>12} {'unit':<8} {'limit':>7} {'ratio':>6}  target")
    for row in rows:
        limit_text = "-" if row["limit"] is None else f"{row['limit']:g}"
        ratio_text = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        print(
            f"{row['name']:<32} {row['value']:>12,} {row['unit']:<8} {limit_text:>7} "
            f"{ratio_text:>6}  {row['target']}"
        )
    print(f"report sha256 {report.sha256} ({len(report.canonical):,} bytes)", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
