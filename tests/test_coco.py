"""The COCO export: loads in pycocotools, masks as posted, AP 1.0 against itself, and
the numpy area/box used by the log rebuild equal the validator's on random masks."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ledger.canonical import canonical_bytes
from ledger.coco import (
    HASH_CONVENTION,
    annotation_bytes,
    coco_annotation,
    export_bytes,
    export_state,
    mask_stats,
    mask_stats_many,
    runs_of_counts,
)
from ledger.errors import InvalidInput
from ledger.events import ReleasePolicy
from ledger.masks import decode, encode, validate_segmentation
from ledger.merkle import tree_hash
from ledger.service import Ledger
from ledger.store import Store
from tests import factory as f
from tests.test_release import P, built, later_changes, polygon


@pytest.fixture
def lg(store: Store) -> Ledger:
    return built(store)


ALL = ReleasePolicy(selection="all")

# pycocotools 2.0.x decodes through a numpy-1 style __array__ (its own issue, harmless)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def load(tmp_path: Path, data: bytes) -> COCO:
    path = tmp_path / "export.json"
    path.write_bytes(data)
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_export_loads_and_decodes_to_the_posted_masks(lg: Ledger, tmp_path: Path) -> None:
    later_changes(lg)
    size = lg.head(P).size
    data = export_bytes(export_state(lg.store, P, size, ALL))
    coco = load(tmp_path, data)
    assert sorted(coco.getImgIds()) == [5, 6]
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["car", "person"]
    posted: dict[str, Any] = {}
    for _, raw in lg.store.iter_entries(P):
        event = json.loads(raw)["event"]
        payload = event["payload"]
        if event["type"] in ("mask.created", "mask.edited") and "segmentation" in payload:
            posted[payload["instance_id"]] = payload["segmentation"]
    anns = coco.loadAnns(coco.getAnnIds())
    assert {a["instance_id"] for a in anns} == {"i0", "i1", "i2", "i3", "i5", "i7"}
    for ann in anns:
        img = coco.loadImgs(ann["image_id"])[0]
        expected = decode(posted[ann["instance_id"]], img["height"], img["width"])
        assert np.array_equal(coco.annToMask(ann), expected), ann["instance_id"]
        assert ann["area"] == int(expected.sum())
        ys, xs = np.nonzero(expected)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_coco_eval_of_the_export_against_itself_is_perfect(lg: Ledger, tmp_path: Path) -> None:
    data = export_bytes(export_state(lg.store, P, lg.head(P).size, ALL))
    gt = load(tmp_path, data)
    detections = copy.deepcopy(gt.loadAnns(gt.getAnnIds()))
    for det in detections:
        det["score"] = 1.0
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # AP @ IoU .50:.95
    assert ev.stats[1] == pytest.approx(1.0)  # AP @ IoU .50


def test_info_block_names_release_size_root_and_convention(lg: Ledger) -> None:
    data = export_bytes(export_state(lg.store, P, 17, ReleasePolicy(), "v0"))
    info = json.loads(data)["info"]
    root = tree_hash(17, lambda ix: lg.store.read_hashes(P, ix))
    recorded = json.loads(dict(lg.store.iter_entries(P, 16, 17))[16])["recorded_at"]
    assert info["root_hash"] == root.hex()
    assert info["tree_size"] == 17 and info["release"] == "v0" and info["version"] == "v0"
    assert info["date_created"] == recorded and info["year"] == int(recorded[:4])
    assert info["hash_convention"] == HASH_CONVENTION
    assert info["policy"] == {"selection": "accepted"}
    as_of = json.loads(export_bytes(export_state(lg.store, P, 17)))["info"]
    assert "release" not in as_of and as_of["version"] == "tree-17"


def test_ids_and_order_are_stable_across_sizes(lg: Ledger) -> None:
    early = json.loads(export_bytes(export_state(lg.store, P, 17, ALL)))
    later_changes(lg)
    late = json.loads(export_bytes(export_state(lg.store, P, lg.head(P).size, ALL)))
    ids = {a["instance_id"]: a["id"] for a in early["annotations"]}
    for ann in late["annotations"]:
        if ann["instance_id"] in ids:
            assert ann["id"] == ids[ann["instance_id"]]
    assert [a["id"] for a in late["annotations"]] == sorted(a["id"] for a in late["annotations"])
    assert early["images"] == late["images"]
    assert [i["ledger_id"] for i in late["images"]] == ["img-1", "img-2"]


def test_segmentation_is_exported_as_submitted(lg: Ledger) -> None:
    doc = json.loads(export_bytes(export_state(lg.store, P, 24, ALL)))
    by_id = {a["instance_id"]: a for a in doc["annotations"]}
    assert by_id["i4"]["segmentation"] == polygon()
    assert by_id["i0"]["segmentation"] == f.box_rle()
    assert by_id["i5"]["iscrowd"] == 0 and by_id["i5"]["category_id"] == 2


# --- annotations written without a JSON round trip ---------------------------------


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_coordinate = st.one_of(
    st.integers(0, 10**6),
    st.floats(0, 1e15, allow_nan=False, allow_infinity=False),
    st.floats(0, 1e-3, allow_nan=False),
    st.integers(0, 4000).map(float),
    st.integers(0, 10**5).map(lambda v: v / 100),
)


@settings(max_examples=150, deadline=None)
@given(
    seg=st.one_of(
        st.lists(st.lists(_coordinate, min_size=6, max_size=12), min_size=1, max_size=3),
        st.builds(
            lambda counts, h, w: {"counts": counts, "size": [h, w]},
            st.text(alphabet=[chr(c) for c in range(48, 112)], max_size=30),
            st.integers(1, 5000),
            st.integers(1, 5000),
        ),
        st.builds(
            lambda counts: {"counts": counts, "size": [3, 4]},
            st.lists(st.integers(0, 12), max_size=8),
        ),
    ),
    bbox=st.tuples(
        *[st.one_of(st.integers(0, 5000).map(float), st.floats(0, 5000)) for _ in range(4)]
    ),
    instance_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,20}", fullmatch=True),
)
def test_annotation_bytes_equal_canonical_bytes(seg: Any, bbox: Any, instance_id: str) -> None:
    fields: dict[str, Any] = {
        "annotation_id": 12, "image_seq": 5, "category_id": 3, "area": 77,
        "iscrowd": True, "instance_id": instance_id, "revision": 2,
    }  # fmt: skip
    expected = canonical_bytes(coco_annotation(segmentation=seg, bbox=bbox, **fields))
    assert annotation_bytes(segmentation=_text(seg), bbox=bbox, **fields) == expected
    box_text = _text([round(float(v), 2) for v in bbox])
    assert annotation_bytes(segmentation=_text(seg), bbox=box_text, **fields) == expected
    # the same value read back from canonical text (integral floats become ints)
    again = json.loads(canonical_bytes(seg))
    assert annotation_bytes(segmentation=_text(again), bbox=bbox, **fields) == expected


# --- area and box from the mask alone ----------------------------------------------


def _blob(rng: np.random.Generator, height: int, width: int) -> np.ndarray[Any, Any]:
    mask = np.zeros((height, width), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, height)), int(rng.integers(0, width))
        mask[
            y0 : y0 + int(rng.integers(1, height + 1)), x0 : x0 + int(rng.integers(1, width + 1))
        ] = 1
    return mask


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
)
def test_mask_stats_equal_the_validator_on_random_rle(seed: int, height: int, width: int) -> None:
    rng = np.random.default_rng(seed)
    mask = _blob(rng, height, width)
    if rng.random() < 0.3:
        mask = (rng.random((height, width)) < 0.4).astype(np.uint8)
    if not mask.any():
        mask[0, 0] = 1
    rle = encode(mask)
    info = validate_segmentation(rle, height, width)
    assert mask_stats(dict(rle), height, width) == (info.area, info.bbox)
    # uncompressed counts, with zero-length runs inserted, give the same numbers
    runs = runs_of_counts(rle["counts"])
    padded = [*runs[:2], 0, 0, *runs[2:]] if len(runs) + 2 <= height * width + 1 else runs
    raw = {"size": [height, width], "counts": padded}
    info = validate_segmentation(raw, height, width)
    assert mask_stats(raw, height, width) == (info.area, info.bbox)


@settings(max_examples=100, deadline=None)
@given(
    points=st.lists(
        st.tuples(st.floats(0, 60, allow_nan=False), st.floats(0, 40, allow_nan=False)),
        min_size=3,
        max_size=12,
    ),
    rings=st.integers(1, 3),
)
def test_mask_stats_equal_the_validator_on_random_polygons(
    points: list[tuple[float, float]], rings: int
) -> None:
    ring = [c for p in points for c in p]
    seg = [ring] * rings
    try:
        info = validate_segmentation(seg, 40, 60)
    except InvalidInput:
        return  # an empty polygon: nothing to compare
    assert mask_stats(seg, 40, 60) == (info.area, info.bbox)


def test_mask_stats_on_many_rings_and_large_values() -> None:
    rings = [[float(x), 0.0, x + 1.0, 0.0, x + 1.0, 5.0] for x in range(300)]
    info = validate_segmentation(rings, 10, 400)
    assert mask_stats(rings, 10, 400) == (info.area, info.bbox)
    big = np.zeros((3000, 3000), dtype=np.uint8)
    big[2500:, 2999] = 1
    rle = dict(encode(big))
    info = validate_segmentation(rle, 3000, 3000)
    assert mask_stats(rle, 3000, 3000) == (info.area, info.bbox)


def test_many_masks_at_once_equal_one_at_a_time() -> None:
    rng = np.random.default_rng(5)
    items = []
    for i in range(60):
        h, w = int(rng.integers(1, 30)), int(rng.integers(1, 30))
        mask = _blob(rng, h, w)
        seg: Any = dict(encode(mask))
        if i % 3 == 1:
            seg = [[0.0, 0.0, float(w), 0.0, float(w) / 2, float(h)]]
        elif i % 3 == 2:
            seg = {"size": [h, w], "counts": runs_of_counts(seg["counts"])}
        items.append((seg, h, w, f"items[{i}]"))
    together = mask_stats_many(items)
    assert together == [mask_stats(seg, h, w) for seg, h, w, _ in items]
    items[41] = ({"size": [items[41][1], items[41][2]], "counts": "0"}, *items[41][1:])
    with pytest.raises(InvalidInput, match=r"items\[41\].counts: runs do not cover"):
        mask_stats_many(items)
    assert mask_stats_many([]) == []


@pytest.mark.parametrize(
    ("seg", "match"),
    [
        ({"size": [48, 64], "counts": "0"}, "runs do not cover the 48x64 mask"),
        ({"size": [48, 64], "counts": "a"}, "not a compressed RLE string"),
        ({"size": [48, 64], "counts": "0~"}, "not a compressed RLE string"),
        ({"size": [47, 64], "counts": "0"}, "not an RLE of a 48x64 image"),
        ({"size": [48, 64], "counts": 5}, "not a compressed string or run lengths"),
        ({"size": [48, 64], "counts": [-1, 3073]}, "run lengths must be integers from 0"),
        ({"size": [48, 64], "counts": [3000, 73, 1]}, "runs do not cover the 48x64 mask"),
        ({"size": [48, 64], "counts": "0Ho0"}, "runs do not cover the 48x64 mask"),
        ({"size": [48, 64], "counts": "oooooooo0"}, "does not fit in 32 bits"),
        ([[0, 0, 1, 1]], "not a polygon of three or more points"),
        ([[0, 0, 1, 1, 2, float("nan")]], "finite numbers"),
        ([[0, 0, 1, 1, 2, "3"]], "finite numbers"),
        ([[0, 0, 100, 1, 2, 2]], "polygon leaves the image"),
        ([], "empty polygon list"),
        ("x", "expected an RLE object or a list of polygons"),
    ],
)
def test_mask_stats_refuses_what_is_not_a_mask(seg: Any, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        mask_stats(seg, 48, 64)
