"""Label Studio webhooks: brush and polygon results through the ledger and back out of
the COCO export; redeliveries, updates, deletions; the HTTP endpoint's secret."""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from api import create_app
from ledger.coco import export_bytes, export_state
from ledger.errors import InvalidInput, LedgerError
from ledger.events import ReleasePolicy
from ledger.integrations import label_studio as ls
from ledger.service import Ledger
from ledger.store import open_store
from tests import factory as f

brush = pytest.importorskip("label_studio_sdk.converter.brush")

P = "lsproj"
H, W = 40, 56
SECRET = "s3cret-webhook"
ALL = ReleasePolicy(selection="all")

# pycocotools 2.0.x decodes through a numpy-1 style __array__ (its own issue, harmless)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def brush_mask(seed: int = 0) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[5:30, 8:40] = 1
    mask[rng.integers(0, H, 60), rng.integers(0, W, 60)] = 1
    mask[10:12, 0:W] = 0
    return mask


def ls_rle(mask: npt.NDArray[np.uint8]) -> list[int]:
    """Label Studio's own encoding, as its brush tool and SDK produce it."""
    rgba = np.repeat(mask.astype(np.uint8).ravel() * 255, 4)
    return [int(x) for x in brush.encode_rle(rgba)]


def payload(
    action: str = "ANNOTATION_CREATED",
    mask: npt.NDArray[np.uint8] | None = None,
    polygon: list[list[float]] | None = None,
    annotation_id: int = 71,
    label: str = "car",
    extra_results: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    if mask is not None:
        results.append(
            {
                "id": "Br_x1",
                "type": "brushlabels",
                "from_name": "tag",
                "to_name": "image",
                "original_width": W,
                "original_height": H,
                "image_rotation": 0,
                "value": {"format": "rle", "rle": ls_rle(mask), "brushlabels": [label]},
            }
        )
    if polygon is not None:
        results.append(
            {
                "id": "poly9",
                "type": "polygonlabels",
                "from_name": "poly",
                "to_name": "image",
                "original_width": W,
                "original_height": H,
                "value": {"points": polygon, "polygonlabels": ["person"], "closed": True},
            }
        )
    results += extra_results or []
    return {
        "action": action,
        "project": {
            "id": 3,
            "title": "Streets",
            "label_config": '<View><Image name="image" value="$image"/></View>',
            "expert_instruction": "Outline every car.",
        },
        "task": {"id": 12, "data": {"image": "/data/upload/3/street.png"}},
        "annotation": {
            "id": annotation_id,
            "task": 12,
            "completed_by": {"id": 5, "email": "ann@example.org"},
            "created_at": "2026-11-02T10:00:00.123456Z",
            "updated_at": "2026-11-02T10:00:00.123456Z",
            "result": results,
        },
    }


def new_project(ledger: Ledger) -> None:
    ledger.append(P, [f.project_created()], "test")


def apply(ledger: Ledger, body: Any) -> int:
    events = ls.convert(ledger.store, P, body)
    if not events:
        return 0
    return ledger.append(P, events, "webhook:label-studio").appended


def coco(ledger: Ledger) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        export_bytes(export_state(ledger.store, P, ledger.head(P).size, ALL))
    )
    return data


def test_decoder_matches_the_sdk_decoder() -> None:
    mask = brush_mask(3)
    rle = ls_rle(mask)
    ours = ls.decode_brush_rle(rle, H, W)
    theirs = brush.decode_rle(rle).reshape(H, W, 4)[:, :, 3] > 0
    assert np.array_equal(ours, theirs.astype(np.uint8))
    assert np.array_equal(ours, mask)


def test_brush_mask_comes_out_of_the_coco_export_as_the_same_pixels(ledger: Ledger) -> None:
    new_project(ledger)
    mask = brush_mask()
    assert apply(ledger, payload(mask=mask)) == 5  # actor, guideline, category, image, mask
    data = coco(ledger)
    (ann,) = data["annotations"]
    assert data["images"][0]["width"] == W and data["images"][0]["height"] == H
    assert data["categories"][0]["name"] == "car"
    decoded = mask_utils.decode(ann["segmentation"])
    assert np.array_equal(decoded, mask)


def test_polygon_percentages_become_pixels(ledger: Ledger) -> None:
    new_project(ledger)
    apply(ledger, payload(polygon=[[10, 10], [50, 10], [50, 50], [10, 50]]))
    (ann,) = coco(ledger)["annotations"]
    assert ann["bbox"] == pytest.approx([5.6, 4.0, 22.4, 16.0], abs=1.0)
    rows = ledger.store.query("SELECT segmentation FROM revisions WHERE project = ?", (P,))
    assert json.loads(rows[0]["segmentation"]) == [[5.6, 4.0, 28.0, 4.0, 28.0, 20.0, 5.6, 20.0]]


def test_redelivery_appends_nothing(ledger: Ledger) -> None:
    new_project(ledger)
    body = payload(mask=brush_mask(), polygon=[[10, 10], [50, 10], [50, 50]])
    assert apply(ledger, body) == 7
    size = ledger.head(P).size
    assert ls.convert(ledger.store, P, copy.deepcopy(body)) == []
    assert ledger.head(P).size == size
    # the same events posted twice (a concurrent redelivery) are idempotent retries
    events = ls.convert(ledger.store, P, payload(mask=brush_mask(1), action="ANNOTATION_UPDATED"))
    assert [e["type"] for e in events] == ["mask.edited", "mask.deleted"]
    assert ledger.append(P, events, "w").appended == 2
    assert ledger.append(P, events, "w").appended == 0


def test_update_edits_changes_and_deletes_removed_results(ledger: Ledger) -> None:
    new_project(ledger)
    apply(ledger, payload(mask=brush_mask(), polygon=[[10, 10], [50, 10], [50, 50]]))
    events = ls.convert(
        ledger.store, P, payload("ANNOTATION_UPDATED", mask=brush_mask(7), label="truck")
    )
    kinds = [e["type"] for e in events]
    assert kinds == ["category.defined", "mask.edited", "mask.deleted"]
    ledger.append(P, events, "w")
    data = coco(ledger)
    assert len(data["annotations"]) == 1
    assert np.array_equal(mask_utils.decode(data["annotations"][0]["segmentation"]), brush_mask(7))


@pytest.mark.parametrize("form", ["ANNOTATIONS_DELETED", "ANNOTATION_DELETED"])
def test_deletion_uses_current_state_and_is_idempotent(ledger: Ledger, form: str) -> None:
    new_project(ledger)
    apply(ledger, payload(mask=brush_mask(), polygon=[[10, 10], [50, 10], [50, 50]]))
    apply(ledger, payload(mask=brush_mask(), annotation_id=72))
    body = {"action": form, "annotations": [{"id": 71}], "project": {"id": 3}}
    assert apply(ledger, body) == 3  # the tool actor and two deletions
    assert apply(ledger, body) == 0
    assert len(coco(ledger)["annotations"]) == 1


def test_plural_created_with_lists(ledger: Ledger) -> None:
    new_project(ledger)
    one = payload(mask=brush_mask())
    two = payload(mask=brush_mask(2), annotation_id=80)
    body = {
        "action": "ANNOTATIONS_CREATED",
        "project": one["project"],
        "task": [one["task"]],
        "annotation": [one["annotation"], two["annotation"]],
    }
    assert apply(ledger, body) == 6
    assert len(coco(ledger)["annotations"]) == 2


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"action": "TASK_CREATED"},
        {"action": "ANNOTATION_CREATED", "annotation": "x"},
        {"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "result": {}}},
    ],
)
def test_bad_payloads_are_refused_by_field(ledger: Ledger, body: Any) -> None:
    new_project(ledger)
    with pytest.raises(InvalidInput):
        ls.convert(ledger.store, P, body)


def test_broken_brush_rle_is_a_validation_error(ledger: Ledger) -> None:
    new_project(ledger)
    body = payload(mask=brush_mask())
    body["annotation"]["result"][0]["value"]["rle"] = body["annotation"]["result"][0]["value"][
        "rle"
    ][:20]
    with pytest.raises(InvalidInput) as e:
        ls.convert(ledger.store, P, body)
    assert "rle" in e.value.errors[0].loc


# --- HTTP ------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = open_store(url, upgrade=True)
    Ledger(store).append(P, [f.project_created()], "test")
    store.close()
    app = create_app({"database_url": url, "data_dir": tmp_path, "label_studio_secret": SECRET})
    return app.test_client()


def test_http_webhook_with_secret_then_redelivery(client: FlaskClient) -> None:
    url = f"/v1/projects/{P}/integrations/label-studio"
    body = payload(mask=brush_mask())
    r = client.post(url, json=body, headers={"X-Ledger-Webhook-Secret": SECRET})
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.get_json()["appended"] == 5
    r = client.post(url + f"?token={SECRET}", json=body)
    assert r.status_code == 200 and r.get_json()["appended"] == 0


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-Ledger-Webhook-Secret": "wrong"}, 403),
        ({"X-Ledger-Webhook-Secret": ""}, 401),
    ],
)
def test_http_webhook_wrong_secret(
    client: FlaskClient, headers: dict[str, str], status: int
) -> None:
    url = f"/v1/projects/{P}/integrations/label-studio"
    r = client.post(url, json=payload(mask=brush_mask()), headers=headers)
    assert r.status_code == status
    assert r.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    "data",
    [b"{", b"[]", b'{"action": 1}', b'{"action":"ANNOTATION_CREATED","annotation":[1,null]}'],
)
def test_http_webhook_bad_bodies_are_4xx(client: FlaskClient, data: bytes) -> None:
    r = client.post(
        f"/v1/projects/{P}/integrations/label-studio",
        data=data,
        headers={"X-Ledger-Webhook-Secret": SECRET, "Content-Type": "application/json"},
    )
    assert 400 <= r.status_code < 500, r.get_data(as_text=True)


def test_http_webhook_unknown_project_is_404(client: FlaskClient) -> None:
    r = client.post(
        "/v1/projects/nope/integrations/label-studio",
        json=payload(mask=brush_mask()),
        headers={"X-Ledger-Webhook-Secret": SECRET},
    )
    assert r.status_code == 404


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _mutated(draw: st.DrawFn) -> Any:
    body = payload(mask=brush_mask(), polygon=[[10, 10], [50, 10], [50, 50]])
    ann = body["annotation"]
    target = draw(st.sampled_from(["annotation", "task", "result", "value", "top"]))
    key = draw(st.sampled_from(["id", "task", "result", "completed_by", "value", "rle", "points",
                                "original_width", "original_height", "type", "action", "annotations"]))  # fmt: skip
    value = draw(_json)
    where = {
        "annotation": ann,
        "task": body["task"],
        "result": ann["result"][draw(st.integers(0, 1))],
        "value": ann["result"][draw(st.integers(0, 1))]["value"],
        "top": body,
    }[target]
    where[key] = value
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_payload_is_converted_or_refused_by_field(
    tmp_path_factory: Any, data: st.DataObject
) -> None:
    store = _fuzz_store(tmp_path_factory)
    body = data.draw(st.composite(_mutated)())
    try:
        events = ls.convert(store, P, body)
    except LedgerError:
        return
    if events:
        with contextlib.suppress(LedgerError):
            Ledger(store).append(P, events, "fuzz")


_STORES: dict[int, Any] = {}


def _fuzz_store(tmp_path_factory: Any) -> Any:
    if not _STORES:
        path = tmp_path_factory.mktemp("lsfuzz") / "ledger.db"
        store = open_store(f"sqlite:///{path}", upgrade=True)
        Ledger(store).append(P, [f.project_created()], "test")
        _STORES[0] = store
    return _STORES[0]
