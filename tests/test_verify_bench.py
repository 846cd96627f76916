"""One tiny run of bench/verify.py on SQLite: the benchmark builds its log, verifies it
and writes well-formed rows. No timing is asserted (that is what the benchmark is for)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROW_KEYS = {"name", "value", "unit", "peer", "peer_value", "ratio", "target"}


def test_bench_verify_writes_rows(tmp_path: Path) -> None:
    out = tmp_path / "verify.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "verify.py"), "--entries", "1200",
         "--backend", "sqlite", "--samples", "5", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {r["name"].split(",")[0] for r in rows} == {
        "verify", "verify vs raw read + SHA-256", "verify CPU time",
        "inclusion proof", "consistency proof",
    }  # fmt: skip
    for r in rows:
        assert set(r) == ROW_KEYS
        assert r["value"] > 0
    assert "verify, SQLite, 1k entries, 1 process" in done.stdout
