"""Releases, COCO export and import, as-of reads: time and memory at scale.

    python bench/releases.py [--quick] [--million] [--json FILE] [--url DATABASE_URL]
    python bench/releases.py --memory-only 1000000     # only the export's peak memory

Builds a project of 100,000 instances over 5,000 images (``--quick``: 10,000 over 500)
by importing a generated COCO file (compressed RLE and polygon masks), then appends
edits of one instance in ten and reviews (most accepted), and measures:

* COCO import rate (instances/s, through ``Ledger.append`` with full validation);
* release create, release export and release verify (rebuilt from the log alone);
* the as-of state of one image (median of 200 random images);
* peak memory of the export, in a fresh process, at this size and at ten times
  fewer instances (at least two pages of rows); with ``--million`` also at 1,000,000
  instances (a long build). The target is on the growth of the peak between the
  sizes: under 1 MiB, where keeping each annotation would add ~1 KB per instance.

Each row prints the figure beside its limit and the ratio (limit / value for times and
memory, value / limit for rates); a ratio of 1 or more meets the target. The database
is a SQLite file in a temporary folder unless ``--url`` names another (an empty,
migrated database).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ledger.asof import PAGE, image_instances  # noqa: E402
from ledger.coco import write_to  # noqa: E402
from ledger.coco_import import import_coco  # noqa: E402
from ledger.masks import encode  # noqa: E402
from ledger.releases import create_release, export_release, verify_release  # noqa: E402
from ledger.service import Ledger  # noqa: E402
from ledger.store import open_store  # noqa: E402

HEIGHT, WIDTH = 480, 640
PROJECT = "bench"
GUIDE = {"id": "coco", "version": "2017"}


def masks(rng: random.Random, count: int) -> list[Any]:
    """A pool of distinct masks: half compressed RLE ellipses, half polygons."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    pool: list[Any] = []
    for i in range(count):
        cy, cx = rng.uniform(60, HEIGHT - 60), rng.uniform(60, WIDTH - 60)
        ry, rx = rng.uniform(10, 50), rng.uniform(10, 50)
        if i % 2:
            pool.append(dict(encode((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) < 1)))
        else:
            ring = []
            for k in range(24):
                a = 2 * np.pi * k / 24
                ring += [round(cx + rx * np.cos(a), 2), round(cy + ry * np.sin(a), 2)]
            pool.append([ring])
    return pool


def coco_file(path: Path, instances: int, per_image: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    pool = masks(rng, 400)
    images = instances // per_image
    data = {
        "images": [
            {"id": i, "width": WIDTH, "height": HEIGHT, "file_name": f"{i:07d}.jpg"}
            for i in range(1, images + 1)
        ],
        "categories": [{"id": c, "name": f"class-{c}"} for c in range(1, 11)],
        "annotations": [
            {
                "id": k + 1,
                "image_id": k // per_image + 1,
                "category_id": rng.randrange(1, 11),
                "iscrowd": 0,
                "segmentation": pool[rng.randrange(len(pool))],
            }
            for k in range(instances)
        ],
    }
    path.write_text(json.dumps(data), encoding="utf-8")


def edits_and_reviews(ledger: Ledger, instances: int, seed: int = 11) -> None:
    """Edit one instance in ten, then review nine in ten (accept 8, reject 1)."""
    rng = random.Random(seed)
    pool = masks(rng, 50)
    revision = {}
    batch: list[dict[str, Any]] = []

    def event(kind: str, actor: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"{rng.getrandbits(128):032x}",
            "type": kind,
            "actor": actor,
            "client_time": "2026-11-01T09:00:00Z",
            "guideline": GUIDE,
            "payload": payload,
        }

    def flush() -> None:
        if batch:
            ledger.append(PROJECT, batch, "bench")
            batch.clear()

    ledger.append(
        PROJECT,
        [
            {
                "id": f"{rng.getrandbits(128):032x}",
                "type": "actor.registered",
                "actor": "admin",
                "client_time": "2026-11-01T09:00:00Z",
                "payload": {"actor_id": "qa", "kind": "reviewer"},
            }
        ],
        "bench",
    )
    for k in range(1, instances + 1, 10):
        iid = f"coco-{k}"
        seg = pool[rng.randrange(len(pool))]
        batch.append(event("mask.edited", "importer", {"instance_id": iid, "revision": 1,
                                                       "segmentation": seg}))  # fmt: skip
        revision[iid] = 2
        if len(batch) >= 1000:
            flush()
    for k in range(1, instances + 1):
        if k % 10 == 0:
            continue
        iid = f"coco-{k}"
        decision = "reject" if k % 10 == 9 else "accept"
        batch.append(event("review.decided", "qa", {"instance_id": iid,
                                                    "revision": revision.get(iid, 1),
                                                    "decision": decision}))  # fmt: skip
        if len(batch) >= 1000:
            flush()
    flush()


def build(url: str, instances: int, per_image: int, folder: Path) -> tuple[float, int]:
    """Import the generated COCO file, then edits and reviews; return the import rate."""
    path = folder / f"coco-{instances}.json"
    coco_file(path, instances, per_image)
    store = open_store(url, upgrade=url.startswith("sqlite"))
    ledger = Ledger(store)
    start = time.perf_counter()
    result = import_coco(
        ledger, PROJECT, path, actor="importer", guideline="coco@2017", principal="bench"
    )
    rate = instances / (time.perf_counter() - start)
    assert result.annotations == instances
    edits_and_reviews(ledger, instances)
    size = ledger.head(PROJECT).size
    store.close()
    return rate, size


def peak_export_mb(url: str, size: int) -> float:
    """Growth of the peak RSS of a fresh process over its baseline while it exports."""
    code = "\n".join(
        [
            f"import sys; sys.path.insert(0, {str(REPO)!r})",
            "from ledger.store import open_store",
            "from ledger.coco import export_state, write_to",
            "from ledger.events import ReleasePolicy",
            "def rss(key):",
            "    for line in open('/proc/self/status'):",
            "        if line.startswith(key): return int(line.split()[1])",
            f"store = open_store({url!r})",
            "store.head('bench')",
            "base = rss('VmRSS:')",
            f"write_to(export_state(store, 'bench', {size}, ReleasePolicy(selection='all')))",
            "print(rss('VmHWM:') - base)",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=3600
    )
    return int(out.stdout.strip()) / 1024


def row(
    name: str, value: float, unit: str, limit_name: str, limit: float, lower_is_better: bool
) -> dict[str, Any]:
    ratio = (limit / value if value else float("inf")) if lower_is_better else value / limit
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "peer": limit_name,
        "peer_value": limit,
        "ratio": round(ratio, 3),
        "target": 1.0,
    }


def measure(url: str, instances: int, per_image: int, folder: Path) -> list[dict[str, Any]]:
    rows = []
    rate, size = build(url, instances, per_image, folder)
    rows.append(row(f"COCO import, {instances} instances", rate, "instances/s",
                    "limit", 10_000, False))  # fmt: skip
    store = open_store(url)
    ledger = Ledger(store)
    start = time.perf_counter()
    made = create_release(ledger, PROJECT, "v1", actor="bench", principal="bench")
    rows.append(row("release create (export + hash + append)", time.perf_counter() - start, "s",
                    "limit", 10, True))  # fmt: skip
    start = time.perf_counter()
    written = write_to(export_release(store, PROJECT, "v1"))
    rows.append(row(f"release export, {instances} instances", time.perf_counter() - start, "s",
                    "limit", 10, True))  # fmt: skip
    assert written.sha256 == made.sha256
    start = time.perf_counter()
    check = verify_release(store, PROJECT, "v1")
    rows.append(row(f"release verify (log replay of {size} entries)", time.perf_counter() - start,
                    "s", "limit", 15, True))  # fmt: skip
    assert check.ok, check.problems
    rng = random.Random(3)
    images = instances // per_image
    timings = []
    for _ in range(200):
        image_id = f"coco-{rng.randrange(1, images + 1)}"
        start = time.perf_counter()
        found = image_instances(store, PROJECT, image_id, made.tree_size)
        timings.append(time.perf_counter() - start)
        assert found
    rows.append(row("as-of state of one image (median)", statistics.median(timings) * 1000, "ms",
                    "limit", 20, True))  # fmt: skip
    store.close()
    return rows


def memory_rows(urls: dict[int, str]) -> list[dict[str, Any]]:
    rows = []
    measured = {}
    for instances, url in sorted(urls.items()):
        store = open_store(url)
        size = store.head(PROJECT).size  # type: ignore[union-attr]
        store.close()
        measured[instances] = peak_export_mb(url, size)
    smallest = min(measured)
    for instances, mb in sorted(measured.items()):
        rows.append(context(f"export peak memory, {instances} instances", mb, "MiB"))
        if instances == smallest:
            continue
        # A streamed export holds a page of rows whatever the release's size: its peak
        # moves by allocator noise only. One that kept each annotation it wrote would
        # grow by its ~1 KB per added instance (6 MiB from 4,000 to 10,000 instances,
        # 88 MiB from 10,000 to 100,000). The limit on the growth is 1 MiB.
        rows.append(row(f"export peak memory growth, {smallest} to {instances} instances",
                        max(mb - measured[smallest], 0.01), "MiB", "limit", 1.0, True))  # fmt: skip
    return rows


def context(name: str, value: float, unit: str) -> dict[str, Any]:
    """A row without a peer or target: context for the rows that have one."""
    return {"name": name, "value": round(value, 3), "unit": unit, "peer": "",
            "peer_value": None, "ratio": None, "target": None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 instances")
    parser.add_argument("--million", action="store_true", help="also 1,000,000 (long)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--url", default=None, help="an empty, migrated database to use")
    parser.add_argument(
        "--memory-only", type=int, default=None, metavar="N",
        help="only build N instances and print the export's peak memory",
    )  # fmt: skip
    args = parser.parse_args()
    if args.memory_only:
        with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'memory.db'}"
            build(url, args.memory_only, 20, Path(tmp))
            rows = memory_rows({args.memory_only: url})
        print(json.dumps(rows[0]))
        if args.json is not None:
            args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        return
    instances = 10_000 if args.quick else 100_000
    per_image = 20
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        folder = Path(tmp)
        url = args.url or f"sqlite:///{folder / 'main.db'}"
        rows = measure(url, instances, per_image, folder)
        small = f"sqlite:///{folder / 'small.db'}"
        # at least two of the export's pages of rows, so that both sizes hold a full one
        fewer = max(instances // 10, 2 * PAGE)
        build(small, fewer, per_image, folder)
        urls = {fewer: small, instances: url}
        if args.million:
            big = f"sqlite:///{folder / 'million.db'}"
            build(big, 1_000_000, per_image, folder)
            urls[1_000_000] = big
        rows += memory_rows(urls)
    print(f"{'name':<52} {'value':>10} {'unit':<12} {'peer':<16} {'peer value':>10} "
          f"{'ratio':>7} {'target':>6}")  # fmt: skip
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['name']:<52} {r['value']:>10.3f} {r['unit']:<12} {r['peer']:<16} "
              f"{r['peer_value'] or '':>10} {ratio:>7} {r['target'] or '':>6}")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
