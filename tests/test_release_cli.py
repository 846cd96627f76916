"""The release, export, import, lineage, history, asof, diff and projections commands,
run as real processes. The commands are a thin layer over the library, whose tests run
on both backends; here one SQLite database keeps the number of processes down."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from ledger.store import open_store
from tests.conftest import sqlite_url
from tests.test_cli import run
from tests.test_coco_import import coco_file
from tests.test_release import tamper


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    url = sqlite_url(tmp_path)
    open_store(url, upgrade=True).close()
    e = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    e["LEDGER_DATA_DIR"] = str(tmp_path / "data")
    e["LEDGER_DATABASE_URL"] = url
    return e


def test_import_release_export_verify(tmp_path: Path, cli_env: dict[str, str]) -> None:
    env, db_url = cli_env, cli_env["LEDGER_DATABASE_URL"]
    src = tmp_path / "coco.json"
    src.write_text(json.dumps(coco_file()), encoding="utf-8")
    out = run(
        ["import", "coco", str(src), "-p", "ds", "--actor", "importer", "--guideline", "coco@2017"],
        env,
    )
    assert out.returncode == 0, out.stderr
    assert "appended 11 events" in out.stdout and "log size 11" in out.stdout

    out = run(["release", "create", "-p", "ds", "-n", "v1", "--policy", "all"], env)
    assert out.returncode == 0, out.stderr
    sha = out.stdout.split("sha256 ")[1].split(",")[0]
    listed = run(["release", "list", "-p", "ds"], env)
    assert listed.stdout.split("\t")[:2] == ["v1", "11"] and sha in listed.stdout

    target = tmp_path / "v1.json"
    out = run(["release", "export", "-p", "ds", "-n", "v1", "-o", str(target)], env)
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(target.read_bytes()).hexdigest() == sha
    out = run(["release", "verify", "-p", "ds", "-n", "v1"], env)
    assert out.returncode == 0 and "OK, rebuilt from entries 0..10" in out.stdout

    as_of = tmp_path / "asof.json"
    out = run(["export", "coco", "-p", "ds", "--at", "11", "-o", str(as_of)], env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(as_of.read_bytes())
    assert doc["info"]["tree_size"] == 11 and len(doc["annotations"]) == 3

    out = run(["projections", "check", "-p", "ds"], env)
    assert out.returncode == 0 and "OK" in out.stdout

    prov = json.loads(run(["lineage", "coco-12", "-p", "ds", "--prov"], env).stdout)
    assert "ledger:ds/instance/coco-12/revision/1" in prov["entity"]

    history = run(["history", "-p", "ds", "--actor", "importer"], env).stdout.splitlines()
    assert len(history) == 11 and json.loads(history[-1])["instance_id"] == "coco-12"
    state = run(["asof", "-p", "ds", "--at", "10", "--image", "coco-1"], env)
    assert [json.loads(line)["instance_id"] for line in state.stdout.splitlines()] == [
        "coco-10",
        "coco-11",
    ]
    changes = run(["diff", "-p", "ds", "@9", "v1"], env).stdout.splitlines()
    assert [json.loads(c)["instance_id"] for c in changes] == ["coco-11", "coco-12"]

    # a projection row changed behind the ledger's back
    tamper(
        db_url,
        "revisions",
        "UPDATE revisions SET area = 1 WHERE project = ? AND instance_id = 'coco-10'",
        ("ds",),
    )
    out = run(["projections", "check", "-p", "ds"], env)
    assert out.returncode == 1
    assert "revisions row 'coco-10', 1: column area is 1 in the store" in out.stderr
    out = run(["release", "export", "-p", "ds", "-n", "v1", "-o", str(tmp_path / "bad.json")], env)
    assert out.returncode == 1 and "nothing was written" in out.stderr
    assert not (tmp_path / "bad.json").exists() and not (tmp_path / "bad.json.partial").exists()
    assert run(["release", "verify", "-p", "ds", "-n", "v1"], env).returncode == 0


def test_usage_errors(cli_env: dict[str, str]) -> None:
    out = run(["release", "verify", "-p", "nope", "-n", "v1"], cli_env)
    assert out.returncode == 4 and "project nope does not exist" in out.stderr
