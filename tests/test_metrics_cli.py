"""`ledger metrics`: table, JSON and CSV output, rate cards and the chart."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ledger.errors import InvalidInput
from ledger.service import Ledger
from ledger.store import Store
from tests.test_qa_cli import SQLITE_ONLY, invoke
from tests.test_qa_source import build


@SQLITE_ONLY  # the store reads are tested on both backends in test_metrics.py
def test_metrics_outputs_and_chart(store: Store, db_url: str, tmp_path: Path) -> None:
    build(Ledger(store))
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"currency": "EUR", "default": {"per_instance": 0.25}}))
    chart = tmp_path / "metrics.png"
    as_json = invoke(
        db_url,
        [
            "metrics",
            "-p",
            "demo",
            "--rate-card",
            str(rates),
            "--format",
            "json",
            "--png",
            str(chart),
        ],
    )
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout_bytes)
    alice = next(g for g in doc["groups"] if g["name"] == "alice")
    assert (alice["created"], alice["edited"], alice["deleted"]) == (4, 1, 1)
    assert alice["cost"] == 1.0 and doc["rate_card"]["currency"] == "EUR"
    assert chart.read_bytes().startswith(b"\x89PNG")

    table = invoke(db_url, ["metrics", "-p", "demo", "--by", "organization"])
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].startswith(
        "metrics of demo from the start to now, by organization"
    )
    assert "(project)" in table.stdout

    as_csv = invoke(
        db_url,
        ["metrics", "-p", "demo", "--format", "csv", "--from", "2000-01-01", "--to", "2000-01-02"],
    )
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["actor"] for r in rows] == ["(project)"]  # nothing happened in 2000
    assert rows[0]["created"] == "0" and rows[0]["first_pass_acceptance"] == ""

    bad = invoke(db_url, ["metrics", "-p", "demo", "--from", "soon"])
    assert isinstance(bad.exception, InvalidInput)
