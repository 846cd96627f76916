"""schema/json/event.schema.json: up to date with the event models, and a JSON Schema a
tool can check its events with before it sends them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from ledger.cli import cli
from ledger.events import EVENT_TYPES, event_json_schema
from tests import factory as f

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schema" / "json" / "event.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_file_is_what_the_models_give() -> None:
    """Fails when an event model changed and the file was not regenerated with
    `ledger db event-schema > schema/json/event.schema.json`."""
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == event_json_schema()
    printed = CliRunner().invoke(cli, ["db", "event-schema"])
    assert printed.exit_code == 0, printed.output
    assert printed.output == SCHEMA_FILE.read_text(encoding="utf-8")


def test_every_type_has_its_payload_schema(validator: jsonschema.Draft202012Validator) -> None:
    branches = validator.schema["allOf"]
    assert [b["if"]["properties"]["type"]["const"] for b in branches] == list(EVENT_TYPES)
    for branch in branches:
        ref = branch["then"]["properties"]["payload"]["$ref"]
        assert ref.removeprefix("#/$defs/") in validator.schema["$defs"]


def events() -> list[dict[str, Any]]:
    return [
        *f.setup_events(),
        f.mask_created("a", segmentation=[[1.5, 1, 10, 1, 10, 10]]),
        f.mask_edited("a", 1),
        f.review("a", 2),
        f.mask_deleted("a", 2),
        f.event(
            "counts.declared", {"image_id": "img-1", "counts": [{"category_id": 1, "count": 2}]}
        ),
    ]


def test_the_ledgers_events_match(validator: jsonschema.Draft202012Validator) -> None:
    for event in events():
        assert list(validator.iter_errors(event)) == [], event["type"]


def _errors(validator: jsonschema.Draft202012Validator, event: dict[str, Any]) -> list[str]:
    return [
        "/".join(map(str, e.absolute_path)) + ": " + e.message for e in validator.iter_errors(event)
    ]


def test_a_bad_payload_is_refused_by_the_schema_of_its_type(
    validator: jsonschema.Draft202012Validator,
) -> None:
    missing = f.mask_created("a")
    del missing["payload"]["image_id"]
    assert _errors(validator, missing) == ["payload: 'image_id' is a required property"]
    extra = f.review("a", 1)
    extra["payload"]["score"] = 1
    assert any("payload" in e and "score" in e for e in _errors(validator, extra))
    unknown = f.event("mask.painted", {})
    assert any(e.startswith("type: ") for e in _errors(validator, unknown))
    no_id = f.mask_created("a")
    del no_id["id"]
    assert _errors(validator, no_id) == [": 'id' is a required property"]
