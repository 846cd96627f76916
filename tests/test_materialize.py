"""Materialized releases: COCO JSON, instance and semantic PNGs, the manifest and its event."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from ledger.errors import InvalidInput, NotFound, VerificationFailed
from ledger.events import ReleasePolicy
from ledger.masks import encode
from ledger.materialize import (
    WorkflowSettings,
    check_materialized,
    materialize_release,
    on_release_created,
    palette_bytes,
    verify_materialized,
    voc_color,
)
from ledger.releases import create_release
from ledger.service import Ledger
from ledger.store import Store
from tests import factory as f

P = "proj"


def coco_bitmap(seg: Any, height: int, width: int) -> npt.NDArray[np.uint8]:
    """Decode a COCO segmentation with pycocotools alone."""
    if isinstance(seg, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(seg, height, width))
    elif isinstance(seg["counts"], list):
        rle = coco_mask.frPyObjects(seg, height, width)
    else:
        rle = {"size": seg["size"], "counts": seg["counts"].encode()}
    with warnings.catch_warnings():
        # pycocotools 2.0.11 under numpy 2 warns about __array__'s copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.asarray(coco_mask.decode(rle), dtype=np.uint8)


@pytest.fixture
def released(ledger: Ledger) -> Ledger:
    """Two images: overlapping cars (one edited), a polygon person, a crowd region, and
    a second image whose file name needs cleaning; plus an image with no masks."""
    plain = np.zeros((48, 64), dtype=np.uint8)
    plain[2:20, 30:50] = 1
    uncompressed = {"size": [48, 64], "counts": [int(v) for v in _runs(plain)]}
    ledger.append(
        P,
        [
            *f.setup_events(),
            f.category(7, "person"),
            f.event(
                "image.registered",
                {"image_id": "img-2", "width": 40, "height": 30, "file_name": "city/../a b.jpg"},
            ),
            f.event(
                "image.registered",
                {"image_id": "img-3", "width": 16, "height": 16, "file_name": "img-1.jpg"},
            ),
            f.mask_created("car-a", segmentation=f.box_rle(x0=5, y0=5, x1=20, y1=15)),
            f.mask_created("car-b", segmentation=f.box_rle(x0=15, y0=10, x1=30, y1=25)),
            f.mask_created(
                "crowd",
                category_id=7,
                segmentation=f.box_rle(x0=0, y0=30, x1=64, y1=48),
                iscrowd=True,
            ),
            f.mask_created(
                "person",
                category_id=7,
                image_id="img-2",
                segmentation=[[2.0, 2.0, 30.0, 2.0, 30.0, 25.0, 2.0, 25.0]],
            ),
            f.mask_created("raw", segmentation=uncompressed),
            f.mask_edited("car-a", 1, segmentation=f.box_rle(x0=4, y0=4, x1=22, y1=16)),
        ],
        "t",
    )
    create_release(
        ledger, P, "v1", actor="admin", principal="t", policy=ReleasePolicy(selection="all")
    )
    return ledger


def _runs(mask: npt.NDArray[np.uint8]) -> list[int]:
    flat = mask.T.reshape(-1)
    runs, current, count = [], 0, 0
    for v in flat:
        if v == current:
            count += 1
        else:
            runs.append(count)
            current, count = int(v), 1
    runs.append(count)
    return runs


def read_png(path: Path) -> tuple[npt.NDArray[Any], str]:
    with Image.open(path) as image:
        return np.asarray(image), image.mode


def test_png_masks_decode_to_exactly_the_coco_masks(released: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "v1"
    done = materialize_release(released, P, "v1", out, principal="t")
    coco = json.loads((out / "coco.json").read_bytes())
    index = json.loads((out / "masks/index.json").read_bytes())
    entries = {e["coco_image_id"]: e for e in index["images"]}
    images = {img["id"]: img for img in coco["images"]}
    assert len(coco["annotations"]) == 5 and len(entries) == 3
    checked = 0
    for img_id, img in images.items():
        entry = entries[img_id]
        h, w = img["height"], img["width"]
        anns = sorted(
            (a for a in coco["annotations"] if a["image_id"] == img_id), key=lambda a: a["id"]
        )
        layers = [read_png(out / p) for p in entry["instance"]]
        assert all(mode == "L" and arr.shape == (h, w) for arr, mode in layers)
        covered = np.zeros((h, w), dtype=np.int32)
        for i, ann in enumerate(anns, start=1):
            listed = entry["instances"][i - 1]
            assert (listed["index"], listed["annotation_id"], listed["instance_id"]) == (
                i,
                ann["id"],
                ann["instance_id"],
            )
            expected = coco_bitmap(ann["segmentation"], h, w).astype(bool)
            plane = layers[listed["layer"] - 1][0]
            assert np.array_equal(plane == i, expected), ann["instance_id"]
            covered += expected
            checked += 1
        # every pixel of every layer belongs to exactly the instance its value names
        assert sum(int((arr > 0).sum()) for arr, _ in layers) == int(covered.sum())
        semantic, mode = read_png(out / entry["semantic"])
        assert mode == "P" and semantic.shape == (h, w)
        with Image.open(out / entry["semantic"]) as image:
            assert bytes(image.getpalette() or [])[:768] == palette_bytes()
        assert np.array_equal(semantic == 0, covered == 0)
        for ann in anns:
            alone = coco_bitmap(ann["segmentation"], h, w).astype(bool) & (covered == 1)
            assert (semantic[alone] == ann["category_id"]).all()
    assert checked == 5
    # the two cars overlap: the second goes into layer 2; the crowd lies under no car
    img1 = entries[images[next(i for i in images if images[i]["ledger_id"] == "img-1")]["id"]]
    assert [(x["instance_id"], x["layer"]) for x in img1["instances"]] == [
        ("car-a", 1),
        ("car-b", 2),
        ("crowd", 1),
        ("raw", 1),
    ]
    assert img1["instance"] == ["masks/instance/img-1.png", "masks/instance-2/img-1.png"]
    stems = sorted(e["semantic"] for e in index["images"])
    assert stems == [
        "masks/semantic/city/a_b.png",
        "masks/semantic/img-1.png",
        f"masks/semantic/img-1~{next(i for i in images if images[i]['ledger_id'] == 'img-3')}.png",
    ]
    assert done.files == len(json.loads((out / "manifest.json").read_bytes())["files"])


def test_manifest_hashes_match_and_the_event_records_the_manifest(
    released: Ledger, store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "v1"
    done = materialize_release(released, P, "v1", out, principal="t")
    raw = (out / "manifest.json").read_bytes()
    manifest = json.loads(raw)
    assert hashlib.sha256(raw).hexdigest() == done.manifest_sha256
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert on_disk == sorted([m["path"] for m in manifest["files"]] + ["manifest.json"])
    for item in manifest["files"]:
        data = (out / item["path"]).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (item["sha256"], item["bytes"])
    release = store.query("SELECT sha256 FROM releases WHERE project = ? AND name = 'v1'", (P,))[0]
    coco_sha = next(m["sha256"] for m in manifest["files"] if m["path"] == "coco.json")
    assert coco_sha == release["sha256"] == manifest["release_sha256"]
    row = store.query(
        "SELECT seq, name, manifest_sha256, files, target FROM materializations WHERE project = ?",
        (P,),
    )
    assert [(r["seq"], r["name"], r["manifest_sha256"], r["files"], r["target"]) for r in row] == [
        (done.seq, "v1", done.manifest_sha256, done.files, str(out))
    ]
    check = verify_materialized(store, P, out, "v1")
    assert check.ok and check.recorded_seq == done.seq and check.files == done.files
    # the same release written again gives the same manifest
    again = materialize_release(released, P, "v1", tmp_path / "again", principal="t")
    assert again.manifest_sha256 == done.manifest_sha256 and again.seq == (done.seq or 0) + 1


def test_a_changed_file_is_detected_and_named(
    released: Ledger, store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "v1"
    materialize_release(released, P, "v1", out, principal="t")
    target = out / "masks/semantic/img-1.png"
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF
    target.write_bytes(bytes(data))
    check = verify_materialized(store, P, out)
    assert not check.ok and check.changed == ["masks/semantic/img-1.png"]
    with pytest.raises(
        VerificationFailed,
        match=r"did not verify: changed file masks/semantic/img-1\.png: SHA-256 [0-9a-f]{64}",
    ):
        check_materialized(store, P, out, "v1")
    (out / "masks/instance/img-1.png").unlink()
    (out / "masks/extra.png").write_bytes(b"x")
    check = verify_materialized(store, P, out, "v1")
    assert check.missing == ["masks/instance/img-1.png"] and check.unlisted == ["masks/extra.png"]
    assert "missing file masks/instance/img-1.png" in check.problems


def test_a_rewritten_manifest_does_not_match_the_recorded_hash(
    released: Ledger, store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "v1"
    done = materialize_release(released, P, "v1", out, principal="t")
    coco = out / "coco.json"
    coco.write_bytes(coco.read_bytes().replace(b'"car"', b'"bus"'))
    manifest = json.loads((out / "manifest.json").read_bytes())
    for item in manifest["files"]:
        if item["path"] == "coco.json":
            item["sha256"] = hashlib.sha256(coco.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    check = verify_materialized(store, P, out, "v1")
    assert check.changed == []
    assert any(
        p.startswith(
            f"manifest.json has SHA-256 {check.manifest_sha256}, but the ledger recorded {done.manifest_sha256}"
        )
        for p in check.problems
    )
    assert any(p.startswith("coco.json has SHA-256") for p in check.problems)


def test_unrecorded_or_foreign_manifests(released: Ledger, store: Store, tmp_path: Path) -> None:
    out = tmp_path / "v1"
    materialize_release(released, P, "v1", out, principal="t", record=False)
    check = verify_materialized(store, P, out, "v1")
    assert check.problems == [
        f"no release.materialized event of release v1 records manifest.json SHA-256 {check.manifest_sha256}"
    ]
    assert (
        verify_materialized(store, P, out, "v2").problems[0]
        == "manifest.json is of release 'v1', not 'v2'"
    )
    assert verify_materialized(store, P, tmp_path / "nothing").problems == [
        f"manifest.json is missing from {tmp_path / 'nothing'}"
    ]
    (out / "manifest.json").write_text(
        '{"files": [{"path": "../x", "sha256": "a", "bytes": 1}], "release": "v1"}'
    )
    with pytest.raises(
        VerificationFailed,
        match=r"manifest\.json is malformed: files\[0\]\.path '\.\./x' is not a plain relative path",
    ):
        check_materialized(store, P, out)


def test_sixteen_bit_masks_where_needed(ledger: Ledger, tmp_path: Path) -> None:
    events = [
        *f.setup_events(),
        f.category(300, "tiny"),
        f.event(
            "image.registered",
            {"image_id": "dots", "width": 20, "height": 20, "file_name": "dots.png"},
        ),
    ]
    for k in range(300):
        dot = np.zeros((20, 20), dtype=np.uint8)
        dot[k // 20, k % 20] = 1
        events.append(
            f.mask_created(
                f"d{k}",
                image_id="dots",
                category_id=300 if k % 2 else 1,
                segmentation=dict(encode(dot)),
            )
        )
    ledger.append(P, events, "t")
    create_release(
        ledger, P, "dots", actor="admin", principal="t", policy=ReleasePolicy(selection="all")
    )
    out = tmp_path / "dots"
    materialize_release(ledger, P, "dots", out, principal="t")
    instance, mode = read_png(out / "masks/instance/dots.png")
    assert mode == "I;16" and instance.dtype == np.uint16
    assert sorted(np.unique(instance).tolist()) == list(range(301))
    assert instance[14, 19] == 300 and instance[0, 0] == 1
    semantic, sem_mode = read_png(out / "masks/semantic/dots.png")
    assert sem_mode == "I;16" and semantic[0, 1] == 300 and semantic[0, 0] == 1
    small, small_mode = read_png(out / "masks/instance/img-1.png")
    assert small_mode == "L" and not small.any()  # an image without masks is all background
    palette = json.loads((out / "palette.json").read_bytes())
    assert palette["categories"]["300"] == {"name": "tiny", "rgb": None}
    assert palette["categories"]["1"] == {"name": "car", "rgb": list(voc_color(1))}


def test_refusals(released: Ledger, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="busy is not empty; choose a new folder"):
        materialize_release(released, P, "v1", busy, principal="t")
    with pytest.raises(InvalidInput, match=r"holds no manifest\.json: refusing to overwrite"):
        materialize_release(released, P, "v1", busy, principal="t", overwrite=True)
    assert (busy / "notes.txt").read_text() == "mine"
    with pytest.raises(InvalidInput, match="exports: unknown export 'tiff'"):
        materialize_release(
            released, P, "v1", tmp_path / "x", principal="t", exports=["coco", "tiff"]
        )
    with pytest.raises(NotFound, match="release 'v9' does not exist in proj"):
        materialize_release(released, P, "v9", tmp_path / "x", principal="t")
    assert not (tmp_path / "x").exists()
    first = materialize_release(
        released, P, "v1", tmp_path / "only", principal="t", exports=["coco"]
    )
    assert sorted(p.name for p in (tmp_path / "only").iterdir()) == ["coco.json", "manifest.json"]
    again = materialize_release(released, P, "v1", tmp_path / "only", principal="t", overwrite=True)
    assert again.files > first.files and (tmp_path / "only/masks/index.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_on_release_created_writes_the_configured_exports(
    released: Ledger, store: Store, tmp_path: Path
) -> None:
    result = on_release_created(
        released, P, "v1", WorkflowSettings(export_dir=tmp_path / "exports")
    )
    assert result.errors == [] and result.materialized is not None
    assert result.materialized.directory == tmp_path / "exports" / P / "v1"
    assert verify_materialized(store, P, tmp_path / "exports" / P / "v1").ok

    # a settings object with the same attribute names works too
    class Settings:
        export_dir = str(tmp_path / "other")
        exports = "coco,semantic"

    chosen = WorkflowSettings.from_settings(Settings())
    assert chosen.exports == ("coco", "semantic") and chosen.export_dir == tmp_path / "other"
    failed = on_release_created(
        released, P, "v1", WorkflowSettings(export_dir=tmp_path / "exports")
    )
    assert failed.materialized is None and "is not empty" in failed.errors[0]


def test_materialize_and_verify_files_commands(
    released: Ledger, db_url: str, tmp_path: Path
) -> None:
    from tests.test_routing import invoke_cli

    out = tmp_path / "v1"
    code, stdout, _ = invoke_cli(
        db_url, tmp_path, ["release", "materialize", "-p", P, "-n", "v1", "-o", str(out)]
    )
    assert code == 0 and f"materialized release v1 of proj into {out}" in stdout
    manifest_sha = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    assert f"manifest sha256 {manifest_sha} (recorded in entry" in stdout
    code, stdout, _ = invoke_cli(db_url, tmp_path, ["release", "verify-files", "-p", P, str(out)])
    assert (
        code == 0
        and f"OK, {len(json.loads((out / 'manifest.json').read_bytes())['files'])} files" in stdout
    )
    (out / "masks/instance/img-1.png").write_bytes(b"not a png")
    code, _, err = invoke_cli(
        db_url, tmp_path, ["release", "verify-files", "-p", P, "-n", "v1", str(out)]
    )
    assert code == 1
    assert f"{out}: changed file masks/instance/img-1.png: SHA-256" in err
    assert "error: materialized release v1 in" in err
    code, _, err = invoke_cli(
        db_url,
        tmp_path,
        ["release", "materialize", "-p", P, "-n", "v1", "-o", str(out), "--exports", "png"],
    )
    assert code == 2 and "unknown export 'png'" in err


def test_palette_is_the_pascal_voc_colour_map() -> None:
    assert [voc_color(i) for i in range(5)] == [
        (0, 0, 0),
        (128, 0, 0),
        (0, 128, 0),
        (128, 128, 0),
        (0, 0, 128),
    ]
    assert voc_color(255) == (224, 224, 192)  # the colour VOC uses for its "void" label
    assert len(palette_bytes()) == 768 and palette_bytes()[3:6] == bytes((128, 0, 0))
