"""`ledger serve`: the newcomer's first run on the SQLite default, and the second."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from api.testing import free_port, with_database
from tests.conftest import _PG_PROBLEM, PG_ADMIN_URL

LEDGER = [sys.executable, "-c", "from ledger.cli import main; main()"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEDGER_", "PROMETHEUS_"))}
    env.update(extra)
    return env


class Serve:
    """`ledger serve` in its own process group, output to a file."""

    def __init__(self, cwd: Path, port: int, env: dict[str, str]) -> None:
        self.out = cwd / f"serve-{port}.out"
        self.url = f"http://127.0.0.1:{port}"
        with self.out.open("wb") as out:
            self.process = subprocess.Popen(
                [*LEDGER, "serve", "--port", str(port), "--workers", "1"],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.text()
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready:\n{self.text()}")

    def text(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for s in started:
        s.stop()


def _banner(s: Serve) -> str:
    text = s.text()
    return text[: text.find("{")] if "{" in text else text


def test_first_run_sets_everything_up_and_second_run_reuses_it(
    tmp_path: Path, serve: list[Serve]
) -> None:
    here = tmp_path / "first"
    here.mkdir()
    first = Serve(here, free_port(), _env())
    serve.append(first)
    first.wait_ready()
    banner = _banner(first)
    data = here / "ledger-data"  # the default, in the working directory
    assert (data / "ledger.db").is_file()
    key = data / "signing.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert str(data) in banner and str(key) in banner and "created now" in banner
    assert "LEDGER_DATABASE_URL=postgresql://" in banner and "postgres-roles.sql" in banner
    tokens = [line.strip() for line in banner.splitlines() if line.strip().startswith("ldg_")]
    assert len(tokens) == 1
    token = tokens[0]
    who = httpx.get(first.url + "/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert (who["role"], who["project"], who["principal"]) == ("admin", None, "token:admin")
    r = httpx.post(
        first.url + "/v1/projects",
        json={"project": "first", "name": "First"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201
    first.stop()
    assert token not in first.text().split(token, 1)[1]  # printed once, never logged
    key_text = key.read_text()

    # from elsewhere, with LEDGER_DATA_DIR naming the same folder
    there = tmp_path / "second"
    there.mkdir()
    second = Serve(there, free_port(), _env(LEDGER_DATA_DIR=str(data)))
    serve.append(second)
    second.wait_ready()
    banner = _banner(second)
    assert "ldg_" not in banner and "1 active" in banner and "created now" not in banner
    assert key.read_text() == key_text
    assert not (there / "ledger-data").exists()
    r = httpx.get(second.url + "/v1/projects/first", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["size"] == 1


@pytest.mark.postgres
def test_serve_refuses_an_unmigrated_postgres(tmp_path: Path) -> None:
    if _PG_PROBLEM is not None:
        pytest.skip(f"PostgreSQL unreachable: {_PG_PROBLEM}")
    name = f"ledger_serve_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        done = subprocess.run(
            [*LEDGER, "serve", "--port", str(free_port())],
            cwd=tmp_path,
            env=_env(LEDGER_DATABASE_URL=with_database(PG_ADMIN_URL, name)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert done.returncode == 6, done.stdout + done.stderr
    assert "ledger db upgrade" in done.stderr and "0001_log.sql" in done.stderr
