"""One tiny run of bench/ingest.py: the benchmark runs end to end and writes well-formed
rows. No timing is asserted (that is what the benchmark itself is for)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
ROW_KEYS = {"name", "value", "unit", "peer", "peer_value", "ratio", "target"}
PG_ADMIN_URL = os.environ.get("LEDGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _postgres_reachable() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


@pytest.mark.postgres
def test_ingest_writes_rows(tmp_path: Path) -> None:
    if not _postgres_reachable() and not IN_CI:
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} is not reachable")
    out = tmp_path / "ingest.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "ingest.py"),
         "--count", "24", "--single", "3", "--batch", "12", "--rounds", "1",
         "--json", str(out)],
        cwd=REPO,
        env={**os.environ, "LEDGER_BENCH_PG_URL": PG_ADMIN_URL},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text(encoding="utf-8"))
    rows = document["rows"]
    assert rows, "no result rows"
    for row in rows:
        assert set(row) == ROW_KEYS, row
        assert isinstance(row["name"], str) and row["name"]
        assert isinstance(row["unit"], str) and row["unit"]
        assert row["value"] > 0, row
        if row["peer"] is not None:
            assert row["peer_value"] > 0, row
            assert row["ratio"] > 0, row
    names = {row["name"] for row in rows}
    assert "append PostgreSQL, 12/batch" in names
    assert "append SQLite, 1/commit" in names
    targets = sorted(row["target"] for row in rows if row["target"] is not None)
    assert targets == [0.5, 1.0, 3.0]
    # the table went to stdout, progress to stderr
    assert "append PostgreSQL, 1/commit" in done.stdout
