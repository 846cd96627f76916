"""CVAT: the XML import (polygons and masks) and the signed job-status webhook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from flask.testing import FlaskClient

from api import create_app
from ledger.coco import export_bytes, export_state
from ledger.errors import InvalidInput
from ledger.events import ReleasePolicy
from ledger.integrations import cvat
from ledger.masks import decode
from ledger.service import Ledger
from ledger.store import open_store
from tests import factory as f

P = "cvatproj"
SECRET = "cvat-hmac-secret"
GUIDE = {"id": "seg-guide", "version": "1.0"}


def cvat_rle(box: npt.NDArray[np.uint8]) -> str:
    """CVAT's mask RLE over its box: alternating runs, starting with zeros."""
    flat = box.ravel().astype(np.uint8)
    runs, value, count = [], 0, 0
    for px in flat:
        if px == value:
            count += 1
        else:
            runs.append(count)
            value, count = int(px), 1
    runs.append(count)
    return ", ".join(str(r) for r in runs)


BOX = np.array([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 1, 0]], dtype=np.uint8)
XML = f"""<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <image id="0" name="frame_000.png" width="20" height="10">
    <polygon label="car" source="manual" occluded="0" points="1.5,1.0;8.0,1.0;8.0,6.5;1.5,6.5" z_order="0"/>
    <mask label="person" source="manual" occluded="0" rle="{cvat_rle(BOX)}" left="10" top="2" width="4" height="3" z_order="0"/>
    <box label="car" xtl="1" ytl="1" xbr="3" ybr="3"/>
  </image>
</annotations>
""".encode()


def setup(ledger: Ledger) -> None:
    ledger.append(P, [f.project_created(), f.guideline()], "test")


def test_xml_import_polygons_and_masks_and_again_nothing(ledger: Ledger) -> None:
    setup(ledger)
    events = cvat.import_xml(ledger.store, P, XML, actor="carla", guideline=GUIDE)
    assert [e["type"] for e in events] == [
        "actor.registered",
        "image.registered",
        "category.defined",
        "category.defined",
        "mask.created",
        "mask.created",
    ]
    ledger.append(P, events, "test")
    data = json.loads(
        export_bytes(
            export_state(ledger.store, P, ledger.head(P).size, ReleasePolicy(selection="all"))
        )
    )
    by_cat = {c["name"]: c["id"] for c in data["categories"]}
    mask_ann = next(a for a in data["annotations"] if a["category_id"] == by_cat["person"])
    pixels = decode(mask_ann["segmentation"], 10, 20)
    expected = np.zeros((10, 20), dtype=np.uint8)
    expected[2:5, 10:14] = BOX
    assert np.array_equal(pixels, expected)
    poly = next(a for a in data["annotations"] if a["category_id"] == by_cat["car"])
    assert poly["bbox"][0] == pytest.approx(1.5, abs=1)
    assert cvat.import_xml(ledger.store, P, XML, actor="carla", guideline=GUIDE) == []


@pytest.mark.parametrize(
    "data",
    [
        b"not xml",
        b'<!DOCTYPE x [<!ENTITY a "b">]><annotations/>',
        b'<annotations><image id="0" name="a" width="x" height="2"/></annotations>',
        b'<annotations><image id="0" name="a" width="4" height="2">'
        b'<mask label="a" rle="1, 2" left="0" top="0" width="2" height="2"/></image></annotations>',
        b'<annotations><image id="0" name="a" width="4" height="2">'
        b'<mask label="a" rle="0, 4" left="3" top="0" width="2" height="2"/></image></annotations>',
        b'<annotations><image id="0" name="a" width="4" height="2">'
        b'<polygon label="a" points="1;2"/></image></annotations>',
    ],
)
def test_bad_xml_is_refused(ledger: Ledger, data: bytes) -> None:
    setup(ledger)
    with pytest.raises(InvalidInput):
        cvat.import_xml(ledger.store, P, data, actor="carla", guideline=GUIDE)


def test_cli_import(tmp_path: Path, db_url: str) -> None:
    store = open_store(db_url, upgrade=True)
    setup(Ledger(store))
    store.close()
    path = tmp_path / "annotations.xml"
    path.write_bytes(XML)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env.update(LEDGER_DATA_DIR=str(tmp_path / "data"), LEDGER_DATABASE_URL=db_url)
    argv = [sys.executable, "-m", "ledger.cli", "import", "cvat", str(path), "--project", P]
    argv += ["--actor", "carla", "--guideline", "seg-guide@1.0"]
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "2 new shapes" in first.stdout
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "appended 0 events" in again.stdout


# --- webhook ---------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = open_store(url, upgrade=True)
    setup(Ledger(store))
    store.close()
    app = create_app({"database_url": url, "data_dir": tmp_path, "cvat_webhook_secret": SECRET})
    return app.test_client()


def delivery(state: str = "completed") -> dict[str, Any]:
    return {
        "event": "update:job",
        "webhook_id": 4,
        "sender": {"username": "carla"},
        "job": {
            "id": 17,
            "task_id": 3,
            "state": state,
            "stage": "annotation",
            "updated_date": "2026-11-03T08:00:00.000000Z",
            "url": "http://cvat.local/api/jobs/17",
        },
        "before_update": {"state": "in progress"},
    }


def post(client: FlaskClient, body: bytes, signature: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Signature-256"] = signature
    return client.post(f"/v1/projects/{P}/integrations/cvat", data=body, headers=headers)


def test_signed_job_status_is_recorded_once(client: FlaskClient) -> None:
    body = json.dumps(delivery()).encode()
    r = post(client, body, cvat.signature(SECRET, body))
    assert r.status_code == 201, r.get_data(as_text=True)
    r = post(client, body, cvat.signature(SECRET, body))
    assert r.status_code == 200 and r.get_json()["appended"] == 0
    entries = client.application.extensions["ledger"].store.query(
        "SELECT type, actor FROM entries WHERE project = ? AND type = ?",
        (P, "job.status_changed"),
    )
    assert entries == [{"type": "job.status_changed", "actor": "cvat-user-carla"}]


def test_unchanged_status_and_other_events_record_nothing(client: FlaskClient) -> None:
    ping = json.dumps({"event": "ping", "webhook_id": 4}).encode()
    assert post(client, ping, cvat.signature(SECRET, ping)).get_json()["appended"] == 0
    other = delivery()
    other["before_update"] = {"assignee": None}
    body = json.dumps(other).encode()
    assert post(client, body, cvat.signature(SECRET, body)).get_json()["appended"] == 0


@pytest.mark.parametrize(
    ("signature", "status"),
    [(None, 401), ("sha256=" + "0" * 64, 403), ("md5=abc", 403), ("", 401)],
)
def test_bad_signatures(client: FlaskClient, signature: str | None, status: int) -> None:
    body = json.dumps(delivery()).encode()
    assert post(client, body, signature).status_code == status


@pytest.mark.parametrize(
    "body", [b"{", b"[]", b'{"event":"update:job","job":1}', b'{"event":"update:job","job":{}}']
)
def test_bad_bodies_are_4xx(client: FlaskClient, body: bytes) -> None:
    r = post(client, body, cvat.signature(SECRET, body))
    assert 400 <= r.status_code < 500, r.get_data(as_text=True)
