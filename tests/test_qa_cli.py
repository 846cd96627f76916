"""`ledger qa`: table, JSON and CSV output, thresholds, declared counts and pictures."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from ledger.commands.common import Context
from ledger.commands.qa import register
from ledger.config import load_settings
from ledger.errors import InvalidInput, NotFound
from ledger.service import Ledger
from ledger.store import Store
from tests.test_qa_source import build


def invoke(db_url: str, args: list[str]) -> Result:
    @click.group()
    @click.pass_context
    def cli(ctx: click.Context) -> None:
        ctx.obj = Context(load_settings(database_url=db_url))

    register(cli)
    return CliRunner().invoke(cli, args, catch_exceptions=True)


@pytest.fixture
def seqs(store: Store) -> dict[str, int]:
    return build(Ledger(store))


def test_qa_json_is_the_canonical_report_of_a_size_or_release(
    db_url: str, seqs: dict[str, int]
) -> None:
    result = invoke(db_url, ["qa", "-p", "demo", "--at", str(seqs["edit b"]), "--format", "json"])
    assert result.exit_code == 0, result.output
    body = result.stdout_bytes.rstrip(b"\n")
    digest = hashlib.sha256(body).hexdigest()
    assert f"sha256 {digest}" in result.stderr
    doc = json.loads(body)
    assert doc["scope"]["tree_size"] == seqs["edit b"]
    assert doc["summary"]["by_code"]["overlap"] == 1
    again = invoke(db_url, ["qa", "-p", "demo", "--at", str(seqs["edit b"]), "--format", "json"])
    assert again.stdout_bytes == result.stdout_bytes

    release = invoke(db_url, ["qa", "-p", "demo", "--release", "r1", "--format", "json"])
    assert release.exit_code == 0, release.output
    same = invoke(
        db_url,
        [
            "qa",
            "-p",
            "demo",
            "--at",
            str(seqs["edit b"]),
            "--selection",
            "accepted",
            "--format",
            "json",
        ],
    )
    assert same.stdout_bytes == release.stdout_bytes  # computable before the release exists
    mixed = invoke(db_url, ["qa", "-p", "demo", "--release", "r1", "--at", "3"])
    assert isinstance(mixed.exception, InvalidInput) and "leave out --at" in str(mixed.exception)
    bad = invoke(db_url, ["qa", "-p", "demo", "--threshold", "overlap=1"])
    assert isinstance(bad.exception, InvalidInput) and "unknown threshold" in str(bad.exception)
    missing = invoke(db_url, ["qa", "-p", "demo", "--release", "r9"])
    assert isinstance(missing.exception, NotFound)


def test_qa_table_csv_thresholds_and_counts(
    db_url: str, seqs: dict[str, int], tmp_path: Path
) -> None:
    table = invoke(db_url, ["qa", "-p", "demo", "--at", str(seqs["edit b"]), "--timings"])
    assert table.exit_code == 0, table.output
    assert f"QA report of demo at tree size {seqs['edit b']} (selection all)" in table.stdout
    assert re.search(
        r"\noverlap +img-1 +a,b +a and b \(both by alice\) overlap by 50 px", table.stdout
    )
    assert "time overlap" in table.stderr

    counts = tmp_path / "counts.csv"
    counts.write_text("image_id,category_id,count\nimg-1,1,5\n")
    result = invoke(
        db_url,
        ["qa", "-p", "demo", "--at", str(seqs["edit b"]), "--format", "csv",
         "--threshold", "overlap.min_ios=0.9", "--counts", str(counts)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    codes = {r["code"] for r in rows}
    assert "overlap" not in codes and "counts.mismatch" in codes
    # bob drew on img-1 too, so each annotator's count is compared
    mismatches = {r["actors"]: r for r in rows if r["code"] == "counts.mismatch"}
    assert sorted(mismatches) == ["alice", "bob"]
    mismatch = mismatches["alice"]
    assert (
        mismatch["reason"]
        == "car (1): 5 instances declared, 2 found by alice (difference -3, tolerance 0)"
    )
    assert mismatch["value"] == "-3.0" and mismatch["actors"] == "alice"


SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE_ONLY  # drawing does not depend on the backend; reading is tested on both
def test_qa_pictures_of_flagged_images(db_url: str, seqs: dict[str, int], tmp_path: Path) -> None:
    out = tmp_path / "pictures"
    result = invoke(db_url, ["qa", "-p", "demo", "--at", str(seqs["edit b"]), "--png", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == ["f1.png", "img-1.png"]  # overlap on img-1, drift on f1
    data = (out / "img-1.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    from matplotlib import image as mpl_image

    pixels: Any = mpl_image.imread(out / "img-1.png")
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300
    again = tmp_path / "again"
    invoke(db_url, ["qa", "-p", "demo", "--at", str(seqs["edit b"]), "--png", str(again)])
    assert (again / "img-1.png").read_bytes() == data  # no timestamp in the file
