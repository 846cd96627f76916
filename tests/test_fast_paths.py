"""Shortcuts on the append path give what the plain formulas give.

Projection column text, batch upserts, the stored form of an event and the box of a
mask take shortcuts for the usual values (a compressed RLE, a box of whole pixels, a
plain ``mask.created`` event, an image small enough for pycocotools' box); these tests
check them against the plain formulas on arbitrary input.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ledger import masks
from ledger.entry import entry_bytes
from ledger.errors import InvalidInput
from ledger.events import Event, parse_event
from ledger.masks import MaskInfo
from ledger.projector import _bbox_text, _segmentation_text
from ledger.service import Ledger
from ledger.store.base import TABLES, WriteBatch, dumps_column


def plain_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@given(JSON)
def test_dumps_column_is_json_dumps(value: Any) -> None:
    assert dumps_column(value) == plain_json(value)


def test_dumps_column_refuses_what_json_dumps_refuses() -> None:
    looped: list[Any] = []
    looped.append(looped)
    for value in ({1: 2, "a": 3}, {"a": object()}, b"x", looped):
        with pytest.raises((TypeError, ValueError)) as expected:
            plain_json(value)
        with pytest.raises(type(expected.value)) as caught:
            dumps_column(value)
        assert str(caught.value) == str(expected.value)


SIZES = st.one_of(
    st.lists(st.integers(0, 2**40), min_size=2, max_size=2),
    st.tuples(st.integers(0, 100), st.integers(0, 100)),
    st.lists(st.one_of(st.integers(0, 9), st.booleans(), st.floats(0, 9)), max_size=3),
)
SEGMENTATIONS = st.one_of(
    st.fixed_dictionaries({"size": SIZES, "counts": st.text()}),
    st.fixed_dictionaries({"counts": st.text(), "size": SIZES}),
    st.fixed_dictionaries({"size": SIZES, "counts": st.lists(st.integers(0, 9), max_size=4)}),
    st.fixed_dictionaries({"size": SIZES, "counts": st.text(), "extra": st.integers()}),
    st.lists(st.lists(st.floats(0, 100), max_size=8), max_size=3),
)


@given(SEGMENTATIONS)
def test_segmentation_text_is_dumps_column(seg: Any) -> None:
    assert _segmentation_text(seg) == plain_json(seg)


BOX_VALUES = st.one_of(
    st.integers(0, 10**6).map(float),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e6, 1e6),
    st.integers(0, 10**6),
)


@given(st.tuples(BOX_VALUES, BOX_VALUES, BOX_VALUES, BOX_VALUES))
def test_bbox_text_rounds_like_round_to_two_places(box: Any) -> None:
    mask = MaskInfo("rle", 1, box, {"size": [1, 1], "counts": "01"})
    assert _bbox_text(mask) == plain_json([round(float(v), 2) for v in box])


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 5)), max_size=30))
def test_upserts_keep_the_first_place_and_the_last_row_per_key(
    keys: list[tuple[str, int]],
) -> None:
    batch = WriteBatch()
    width = len(TABLES["instances"])
    rows = [(project, f"i{n}", *range(width - 2)) for project, n in keys]
    for i, row in enumerate(rows):
        batch.add("instances", (*row[:-1], i))
    expected: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in batch.rows.get("instances", []):
        expected[(row[0], row[1])] = row
    assert batch.upserts("instances") == list(expected.values())


def event(payload: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "mask.created",
        "actor": "annotator-1",
        "client_time": "2026-11-01T09:00:00.5+02:00",
        "guideline": {"id": "g", "version": "1"},
        "payload": payload,
        **envelope,
    }


PAYLOADS = st.fixed_dictionaries(
    {
        "instance_id": st.sampled_from(["i-1", "i-2"]),
        "image_id": st.just("img"),
        "category_id": st.integers(1, 9),
        "segmentation": SEGMENTATIONS,
    },
    optional={
        "iscrowd": st.booleans(),
        "score": st.floats(0, 1),
        "track_id": st.none() | st.just("t-1"),
        "parents": st.lists(st.sampled_from(["p-1", "p-2", "i-1"]), max_size=2),
        "relation": st.none() | st.sampled_from(["split", "merge"]),
    },
)


@given(
    PAYLOADS,
    st.fixed_dictionaries(
        {}, optional={"tool": st.just({"name": "t", "version": "1"}), "model": st.none()}
    ),
)
def test_stored_form_is_the_dump_of_envelope_and_payload(
    payload: dict[str, Any], extra: dict[str, Any]
) -> None:
    raw = event(payload, **extra)
    try:
        parsed = parse_event(raw)
    except InvalidInput:  # refusals are covered elsewhere; here only what is accepted
        assume(False)
        return
    envelope = Event.model_validate(raw)
    expected = envelope.model_dump(mode="json", exclude_none=True)
    expected["payload"] = envelope.typed_payload().model_dump(mode="json", exclude_none=True)
    assert parsed.stored == expected
    assert list(parsed.stored) == list(expected)
    assert parsed.envelope == envelope


def test_entry_bytes_of_other_principals_and_projects() -> None:
    common = {"event": b"{}", "prev": None, "recorded_at": "t", "seq": 0}
    for principal in ("p", "p\u00e9", ["p"]):
        data = entry_bytes(principal=principal, project="proj", **common)  # type: ignore[arg-type]
        assert json.loads(data)["principal"] == principal


@given(
    st.integers(1, 2**15),
    st.integers(1, 2**15),
    st.lists(st.floats(0, 1), min_size=1, max_size=12),
)
def test_box_of_validated_masks_is_the_box_of_the_runs(
    height: int, width: int, cuts: list[float]
) -> None:
    # up to 2**30 pixels: on both sides of the size up to which pycocotools gives the box
    pixels = height * width
    points = sorted(int(c * pixels) for c in cuts)
    runs = np.diff([0, *points, pixels]).tolist()
    assume(len(runs) <= pixels + 1 and sum(runs[1::2]) > 0)
    info = masks.validate_segmentation({"size": [height, width], "counts": runs}, height, width)
    canonical = masks._canonical_runs(np.array(runs, dtype=np.int64))
    assert info.bbox == masks._bbox(canonical, height)
    assert all(type(v) is float for v in info.bbox)


def test_an_append_leaves_the_garbage_collector_as_it_found_it(ledger: Ledger) -> None:
    """The collector is held off during an append, and on again after it, whether the
    append succeeded or failed; one that was off stays off."""
    import gc
    from datetime import UTC, datetime

    from tests import factory as f

    seen: list[bool] = []
    inside: list[bool] = []
    ledger.on_append = lambda result: seen.append(gc.isenabled())
    ledger.clock = lambda: (inside.append(gc.isenabled()), datetime.now(UTC))[1]
    assert gc.isenabled()
    ledger.append("p", f.setup_events(), "t")
    assert inside == [False]  # the clock is read inside the append
    assert gc.isenabled() and seen == [True]  # on_append runs after it
    with pytest.raises(InvalidInput):
        ledger.append("p", [{"type": "mask.created"}], "t")
    assert gc.isenabled()
    gc.disable()
    try:
        ledger.append("p", [f.mask_created("i1")], "t")
        assert not gc.isenabled()
    finally:
        gc.enable()
