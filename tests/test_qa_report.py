"""The QA report: every check in one canonical, reproducible document."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from ledger.errors import InvalidInput
from ledger.qa.checks import DeclaredCounts
from ledger.qa.records import QAState
from ledger.qa.report import CHECKS, REPORT_FORMAT, run_qa
from ledger.qa.thresholds import Thresholds
from tests.test_qa_records import accepted, box, image, inst, state


def _state() -> QAState:
    return state(
        [
            inst("a", box(10, 10, 20, 20), seq=10, review=accepted(30)),
            inst("b", box(15, 10, 35, 20), seq=20),
            inst("c", box(40, 30, 60, 50), image_id="other", annotator="bob"),
            inst("d", box(41, 31, 61, 51), image_id="other", annotator="carol"),
        ],
        [image(), image("other")],
    )


def test_report_is_canonical_and_reproducible() -> None:
    report = run_qa(_state())
    assert report.canonical == run_qa(_state()).canonical
    assert report.sha256 == hashlib.sha256(report.canonical).hexdigest()
    doc = json.loads(report.canonical)
    assert doc == report.document
    assert report.canonical == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert doc["format"] == REPORT_FORMAT
    assert doc["scope"] == {
        "project": "demo",
        "tree_size": 1000,
        "selection": "all",
        "categories": None,
    }
    assert doc["checks"] == [
        "overlap",
        "agreement",
        "drift",
        "outliers",
        "review",
    ]  # no counts declared
    assert doc["summary"]["by_code"] == {"overlap": 1, "review.accepted_with_flag": 1}
    assert doc["totals"] == {"images": 2, "instances": 4, "crowd": 0, "annotators": 3}
    assert doc["agreement"]["images"][0]["annotators"] == ["bob", "carol"]
    assert set(report.timings) == {"prepare", *doc["checks"], "serialize"}
    assert "timings" not in doc


def test_report_does_not_depend_on_input_order() -> None:
    s = _state()
    shuffled = replace(
        s, instances=tuple(reversed(s.instances)), images=dict(reversed(list(s.images.items())))
    )
    assert run_qa(shuffled).canonical == run_qa(s).canonical


def test_thresholds_and_declarations_change_the_report() -> None:
    base = run_qa(_state())
    stricter = run_qa(_state(), Thresholds().with_overrides({"overlap.min_ios": 0.9}))
    assert stricter.sha256 != base.sha256
    assert stricter.document["thresholds"]["overlap.min_ios"] == 0.9
    assert stricter.document["summary"]["by_code"] == {}
    declared = DeclaredCounts({("img", 1): 2}, "ab" * 32, "counts.json")
    counted = run_qa(_state(), declared=declared)
    assert "counts" in counted.document["checks"]
    assert counted.document["declared_counts"] == {"sha256": "ab" * 32, "entries": 1}


def test_checks_can_be_chosen() -> None:
    report = run_qa(_state(), checks=["overlap"])
    assert report.document["checks"] == ["overlap"] and report.agreement is None
    assert [f.code for f in report.flags] == ["overlap"]
    assert CHECKS[-1] == "review"
    with pytest.raises(InvalidInput, match="unknown check 'spelling'; known: overlap, agreement"):
        run_qa(_state(), checks=["overlap", "spelling"])
