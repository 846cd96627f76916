"""COCO import: events for every image, category and annotation; idempotent re-runs;
errors that name the place in the file; round trip through the export."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ledger.coco import export_bytes, export_state
from ledger.coco_import import import_coco
from ledger.errors import Conflict, InvalidInput
from ledger.events import ReleasePolicy
from ledger.masks import decode, encode
from ledger.service import Ledger
from ledger.store import Store, open_store
from tests.conftest import sqlite_url

P = "imported"


def coco_file() -> dict[str, Any]:
    """Two images, three categories; polygons, compressed RLE and a crowd region."""
    crowd = np.zeros((30, 40), dtype=np.uint8)
    crowd[5:25, 10:30] = 1
    runs: list[int] = []
    flat = crowd.flatten(order="F")
    value, count = 0, 0
    for pixel in flat:
        if pixel == value:
            count += 1
        else:
            runs.append(count)
            value, count = int(pixel), 1
    runs.append(count)
    box = np.zeros((48, 64), dtype=np.uint8)
    box[10:20, 5:40] = 1
    return {
        "info": {"description": "tiny"},
        "images": [
            {"id": 1, "width": 64, "height": 48, "file_name": "a.jpg"},
            {"id": 7, "width": 40, "height": 30, "file_name": "b.jpg"},
        ],
        "categories": [
            {"id": 1, "name": "car", "supercategory": "vehicle"},
            {"id": 2, "name": "person"},
            {"id": 3, "name": "unused"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 9, "bbox": [0, 0, 1, 1],
             "segmentation": [[2.5, 3.0, 30.0, 3.0, 30.0, 20.5, 2.5, 20.0]]},
            {"id": 11, "image_id": 1, "category_id": 2, "iscrowd": 0,
             "segmentation": dict(encode(box))},
            {"id": 12, "image_id": 7, "category_id": 2, "iscrowd": 1,
             "segmentation": {"size": [30, 40], "counts": runs}},
        ],
    }  # fmt: skip


def write(tmp_path: Path, data: dict[str, Any], name: str = "coco.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def run(ledger: Ledger, path: Path, **kwargs: Any) -> Any:
    args: dict[str, Any] = {"actor": "importer", "guideline": "coco@2017", "principal": "t"}
    args.update(kwargs)
    return import_coco(ledger, P, path, **args)


def test_import_creates_project_actor_guideline_and_masks(
    ledger: Ledger, store: Store, tmp_path: Path
) -> None:
    path = write(tmp_path, coco_file())
    result = run(ledger, path)
    # project, actor, guideline, 3 categories, 2 images, 3 masks
    assert (result.appended, result.already_present, result.size) == (11, 0, 11)
    assert (result.images, result.categories, result.annotations) == (2, 3, 3)
    rows = store.query("SELECT instance_id, image_id, iscrowd FROM revisions ORDER BY seq")
    assert [(r["instance_id"], r["image_id"], r["iscrowd"]) for r in rows] == [
        ("coco-10", "coco-1", 0), ("coco-11", "coco-1", 0), ("coco-12", "coco-7", 1),
    ]  # fmt: skip
    guideline = store.query("SELECT sha256, title FROM guidelines WHERE project = ?", (P,))[0]
    assert guideline["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert guideline["title"] == "COCO import of coco.json"
    actor = store.query("SELECT kind FROM actors WHERE actor_id = 'importer'")[0]
    assert actor["kind"] == "annotator"


def test_running_the_import_again_appends_nothing(ledger: Ledger, tmp_path: Path) -> None:
    path = write(tmp_path, coco_file())
    run(ledger, path)
    again = run(ledger, path, batch_size=2)
    assert (again.appended, again.already_present, again.size) == (0, 3, 11)


def test_an_interrupted_import_resumes(ledger: Ledger, tmp_path: Path) -> None:
    data = coco_file()
    partial = dict(data, annotations=data["annotations"][:1])
    run(ledger, write(tmp_path, partial, "part.json"), guideline_sha256="ab" * 32)
    result = run(ledger, write(tmp_path, data))
    assert result.appended == 2 and result.size == 11


def test_import_then_export_round_trips(ledger: Ledger, tmp_path: Path) -> None:
    data = coco_file()
    run(ledger, write(tmp_path, data))
    size = ledger.head(P).size
    doc = json.loads(
        export_bytes(export_state(ledger.store, P, size, ReleasePolicy(selection="all")))
    )
    assert [(c["id"], c["name"], c.get("supercategory")) for c in doc["categories"]] == [
        (c["id"], c["name"], c.get("supercategory")) for c in data["categories"]
    ]
    images = {i["id"]: i for i in doc["images"]}
    assert sorted((i["file_name"], i["width"], i["height"]) for i in images.values()) == sorted(
        (i["file_name"], i["width"], i["height"]) for i in data["images"]
    )
    source = {f"coco-{a['id']}": a for a in data["annotations"]}
    assert {a["instance_id"] for a in doc["annotations"]} == set(source)
    for ann in doc["annotations"]:
        original = source[ann["instance_id"]]
        img = images[ann["image_id"]]
        assert img["ledger_id"] == f"coco-{original['image_id']}"
        assert ann["segmentation"] == original["segmentation"]
        assert ann["category_id"] == original["category_id"]
        assert ann["iscrowd"] == original["iscrowd"]
        h, w = img["height"], img["width"]
        assert np.array_equal(
            decode(ann["segmentation"], h, w), decode(original["segmentation"], h, w)
        )


def test_existing_images_and_categories_are_reused(ledger: Ledger, tmp_path: Path) -> None:
    data = coco_file()
    run(ledger, write(tmp_path, data))
    more = dict(
        data,
        annotations=[{"id": 99, "image_id": 7, "category_id": 3,
                      "segmentation": [[1.0, 1.0, 9.0, 1.0, 9.0, 9.0]]}],
    )  # fmt: skip
    result = run(ledger, write(tmp_path, more, "more.json"))
    assert result.appended == 1 and result.already_present == 0


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda d: d.pop("images"), InvalidInput, r"images: missing or not a list"),
        (
            lambda d: d["images"][1].update(width="40"),
            InvalidInput,
            r"images\[1\].width: expected an integer",
        ),
        (
            lambda d: d["images"][1].update(id="bad id"),
            InvalidInput,
            r"images\[1\].id: 'coco-bad id' is not a valid ledger id",
        ),
        (
            lambda d: d["images"].append(dict(d["images"][0])),
            InvalidInput,
            r"images\[2\].id: image 1 appears twice",
        ),
        (
            lambda d: d["categories"][0].update(id=0),
            InvalidInput,
            r"categories\[0\].id: category ids run from 1 to 2\*\*31 - 1, got 0",
        ),
        (
            lambda d: d["categories"][1].pop("name"),
            InvalidInput,
            r"categories\[1\].name: expected a string",
        ),
        (
            lambda d: d["annotations"][2].update(image_id=3),
            InvalidInput,
            r"annotations\[2\].image_id: image 3 is not in images",
        ),
        (
            lambda d: d["annotations"][0].update(category_id=9),
            InvalidInput,
            r"annotations\[0\].category_id: category 9 is not in categories",
        ),
        (
            lambda d: d["annotations"][1].update(iscrowd=2),
            InvalidInput,
            r"annotations\[1\].iscrowd: expected 0 or 1",
        ),
        (
            lambda d: d["annotations"][1].pop("segmentation"),
            InvalidInput,
            r"annotations\[1\].segmentation: missing",
        ),
        (
            lambda d: d["annotations"][0].update(segmentation=[[1, 1, 2, 2]]),
            InvalidInput,
            r"annotations\[0\].payload.segmentation\[0\]: 4 coordinates",
        ),
        (
            lambda d: d["annotations"][1]["segmentation"].update(size=[47, 64]),
            InvalidInput,
            r"annotations\[1\].payload.segmentation.size: size \[47, 64\] does not match",
        ),
        (
            lambda d: d["annotations"].append(dict(d["annotations"][0])),
            InvalidInput,
            r"annotations\[3\].id: annotation 10 appears twice",
        ),
    ],
)
def test_bad_files_are_refused_with_the_place(
    tmp_path: Path, change: Any, error: type[Exception], match: str
) -> None:
    # file checks do not depend on the backend: SQLite only, to keep the suite fast
    store = open_store(sqlite_url(tmp_path), upgrade=True)
    data = coco_file()
    change(data)
    try:
        with pytest.raises(error, match=match):
            run(Ledger(store), write(tmp_path, data))
        assert store.head(P) is None or store.head(P).size == 0  # type: ignore[union-attr]
    finally:
        store.close()


def test_malformed_json_and_bad_arguments(ledger: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"images": [', encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"file: line 1 column 13"):
        run(ledger, path)
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"file: a COCO file is a JSON object"):
        run(ledger, path)
    with pytest.raises(InvalidInput, match=r"file: cannot read"):
        run(ledger, tmp_path / "missing.json")
    with pytest.raises(InvalidInput, match=r"guideline: expected ID@VERSION, got 'coco'"):
        run(ledger, write(tmp_path, coco_file()), guideline="coco")


def test_conflicts_with_what_the_project_holds(ledger: Ledger, tmp_path: Path) -> None:
    data = coco_file()
    run(ledger, write(tmp_path, data))
    renamed = coco_file()
    renamed["categories"][1]["name"] = "pedestrian"
    with pytest.raises(
        Conflict, match=r"categories\[1\]: category 2 is 'pedestrian' in the file but 'person'"
    ):
        run(ledger, write(tmp_path, renamed, "r.json"))
    resized = coco_file()
    resized["images"][0]["width"] = 65
    with pytest.raises(
        Conflict, match=r"images\[0\]: image 'coco-1' is 65x48 in the file but 64x48"
    ):
        run(ledger, write(tmp_path, resized, "s.json"))
    changed = coco_file()
    changed["annotations"][0]["category_id"] = 2
    with pytest.raises(Conflict, match=r"instance 'coco-10' already exists"):
        run(ledger, write(tmp_path, changed, "t.json"))


def test_skip_invalid_leaves_out_refused_masks(ledger: Ledger, tmp_path: Path) -> None:
    data = coco_file()
    data["annotations"][0]["segmentation"] = [[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]  # empty mask
    data["annotations"][1]["segmentation"]["counts"] = "~~"
    result = run(ledger, write(tmp_path, data), skip_invalid=True)
    assert result.appended == 9
    assert [e.loc for e in result.skipped] == [
        "annotations[0].payload.segmentation",
        "annotations[1].payload.segmentation.counts",
    ]
    assert "mask is empty" in result.skipped[0].message
