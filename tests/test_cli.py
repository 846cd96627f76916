"""The `ledger` command, run as a real process against real databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.merkle import leaf_hash, root_from_leaves
from tests import factory as f
from tests.test_tamper import owner_sql


def run(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    e["LEDGER_DATA_DIR"] = str(tmp_path / "data")
    e["LEDGER_DATABASE_URL"] = db_url
    return e


def write_jsonl(path: Path, events: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def test_append_log_verify_round_trip(tmp_path: Path, env: dict[str, str], db_url: str) -> None:
    events = f.setup_events() + [f.mask_created(f"i{k}") for k in range(20)]
    src = write_jsonl(tmp_path / "ev.jsonl", events)
    out = run(["append", "--project", "demo", "--batch-size", "7", str(src)], env)
    assert out.returncode == 0, out.stderr
    assert "appended 26 events to demo (0 already present); log size 26" in out.stdout
    again = run(["append", "-p", "demo", str(src)], env)
    assert "appended 0 events to demo (26 already present)" in again.stdout

    log = subprocess.run(
        [sys.executable, "-m", "ledger.cli", "log", "-p", "demo"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    lines = log.stdout.split(b"\n")[:-1]
    assert len(lines) == 26
    assert [json.loads(line)["event"]["id"] for line in lines] == [e["id"] for e in events]
    root = root_from_leaves(leaf_hash(line) for line in lines)

    verified = run(["verify", "-p", "demo"], env)
    assert verified.returncode == 0, verified.stderr
    assert f"demo: OK, 26 entries, root {root.hex()}" in verified.stdout

    window = subprocess.run(
        [sys.executable, "-m", "ledger.cli", "log", "-p", "demo", "--from", "3", "--to", "5"],
        env=env, capture_output=True, timeout=60,
    )  # fmt: skip
    assert window.stdout.split(b"\n")[:-1] == lines[3:5]

    owner_sql(
        db_url, "UPDATE entries SET entry = ? WHERE project = ? AND seq = 9", (lines[8], "demo")
    )
    broken = run(["verify", "-p", "demo"], env)
    assert broken.returncode == 1
    assert "demo: FAILED at entry 9: sequence" in broken.stderr


def test_bad_input_names_the_line_and_appends_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    good = f.setup_events()
    bad = f.mask_created("x", image_id="nope")
    src = write_jsonl(tmp_path / "ev.jsonl", [*good, f.mask_created("a"), bad])
    out = run(["append", "-p", "demo", str(src)], env)
    assert out.returncode == 2
    assert "line 8: payload.image_id: image 'nope' is not registered" in out.stderr
    listed = run(["projects"], env)
    assert listed.stdout == ""  # the one batch held everything: nothing was written

    (tmp_path / "broken.jsonl").write_text('{"x": 1}\n{"id": \n', encoding="utf-8")
    out = run(["append", "-p", "demo", str(tmp_path / "broken.jsonl")], env)
    assert out.returncode == 2
    assert "line 2" in out.stderr


def test_exit_codes(tmp_path: Path, env: dict[str, str]) -> None:
    assert run(["verify", "-p", "nope"], env).returncode == 4
    src = write_jsonl(tmp_path / "a.jsonl", [*f.setup_events(), f.mask_created("a")])
    assert run(["append", "-p", "demo", str(src)], env).returncode == 0
    stale = write_jsonl(tmp_path / "b.jsonl", [f.mask_edited("a", 7)])
    out = run(["append", "-p", "demo", str(stale)], env)
    assert out.returncode == 3 and "stale revision" in out.stderr
    usage = run(["append"], env)
    assert usage.returncode == 2


def test_default_sqlite_in_data_dir(tmp_path: Path) -> None:
    e = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    e["LEDGER_DATA_DIR"] = str(tmp_path / "here")
    src = write_jsonl(tmp_path / "a.jsonl", f.setup_events())
    out = run(["append", "-p", "demo", str(src)], e)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "here" / "ledger.db").is_file()
    bad = dict(e, LEDGER_DATABASE_URL="mysql://x")
    out = run(["projects"], bad)
    assert out.returncode == 5 and "unsupported database URL 'mysql'" in out.stderr
