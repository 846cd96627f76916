"""Faults under a running service: kill -9 of workers and of the whole service in the
middle of batch appends, SQLite writers contending for the lock, a PostgreSQL restart
under load, and a full disk. After each: every acknowledged event is in the log at its
acknowledged seq, no batch is there in part, seqs are dense and ``verify_log`` passes.

Sizes are reduced for CI; docs/reliability.md gives the variables for the full runs
(LEDGER_FAULT_ROUNDS, LEDGER_FAULT_PG_SECONDS, LEDGER_FAULT_SQLITE_SECONDS).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.testing import LiveServer, scratch_postgres
from ledger.errors import LedgerError
from ledger.service import Ledger
from ledger.store import open_store
from ledger.store.sqlite import SQLiteStore
from ledger.verify import verify_log
from tests import factory as f
from tests.conftest import _PG_PROBLEM, PG_ADMIN_URL
from tests.fault_tools import (
    Writer,
    admin_token,
    assert_unavailable,
    check_log,
    env_float,
    env_int,
    kill_service,
    postgres_binaries_usable,
    private_cluster,
    setup_project,
    worker_pids,
)

#: kill rounds (half kill one worker, half the whole service); 50 for the full run
ROUNDS = env_int("LEDGER_FAULT_ROUNDS", 5)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    if _PG_PROBLEM is not None:
        pytest.skip(f"PostgreSQL unreachable: {_PG_PROBLEM}")
    with scratch_postgres(PG_ADMIN_URL, prefix="ledger_fault") as made:
        yield made


def test_kill_9_in_the_middle_of_batch_appends(url: str, tmp_path: Path) -> None:
    token = admin_token(url)
    server = LiveServer(url, data_dir=tmp_path / "srv", workers=2).start()
    rng = random.Random(7)
    writers: list[Writer] = []
    killed = {"worker": 0, "service": 0}
    try:
        size0 = setup_project(server.url, token, "alpha")
        for round_ in range(ROUNDS):
            round_writers = [
                Writer(lambda: server.url, token, "alpha", f"r{round_}w{i}", 20, retry=False)
                for i in range(3)
            ]
            writers += round_writers
            for w in round_writers:
                w.start()
            time.sleep(0.15 + rng.random() * 0.3)
            if round_ % 2 == 0:
                pids = worker_pids(server)
                assert pids, "no gunicorn workers found"
                os.kill(rng.choice(pids), signal.SIGKILL)
                killed["worker"] += 1
                time.sleep(0.1)
            else:
                kill_service(server)
                killed["service"] += 1
                server.start()
            for w in round_writers:
                w.join()
    finally:
        for w in writers:
            w.stop.set()
        server.stop()
    for w in writers:
        assert not w.problems, w.problems
        assert set(w.statuses) <= {0, 200, 201, 503}, w.statuses
    acked = sum(len(w.acked) for w in writers)
    assert acked > 0
    size = check_log(url, "alpha", writers, setup_size=size0)
    in_doubt = sum(w.in_doubt for w in writers)
    print(
        f"\n{ROUNDS} rounds ({killed}): {acked} events acknowledged, log size {size}, "
        f"{in_doubt} batches in doubt (answer lost after they reached the service)"
    )
    assert size - size0 >= acked


def test_sqlite_writer_processes_contend_503_never_500(tmp_path: Path) -> None:
    """Four gunicorn workers writing one SQLite file with a short busy timeout: a lock
    waited for too long is a 503 with Retry-After, and the retries (same event UUIDs)
    leave every batch in the log exactly once."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    token = admin_token(url)
    env = {"LEDGER_SQLITE_BUSY_TIMEOUT": "0.02"}
    with LiveServer(url, data_dir=tmp_path / "srv", workers=4, env=env) as server:
        size0 = setup_project(server.url, token, "alpha")
        size0 += setup_project(server.url, token, "beta")
        writers = [
            Writer(lambda: server.url, token, ("alpha", "beta")[i % 2], f"w{i}", 10)
            for i in range(6)
        ]
        for w in writers:
            w.start()
        time.sleep(env_float("LEDGER_FAULT_SQLITE_SECONDS", 3))
        for w in writers:
            w.join()
        log = server.log_text()
    statuses: dict[int, int] = {}
    for w in writers:
        assert not w.problems, w.problems
        for k, v in w.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    assert set(statuses) <= {200, 201, 503}, statuses
    assert "Traceback" not in log
    total = 0
    for project in ("alpha", "beta"):
        mine = [w for w in writers if w.project == project]
        total += check_log(url, project, mine, setup_size=6, require_all_sent=True)
    print(f"\nSQLite, 4 worker processes, 6 writers: statuses {statuses}, {total} entries")
    assert total - size0 == sum(len(b) for w in writers for b in w.sent)


PG_SKIP = postgres_binaries_usable()


@pytest.mark.slow
@pytest.mark.skipif(PG_SKIP is not None, reason=PG_SKIP or "")
def test_postgres_restart_under_load(tmp_path: Path) -> None:
    """A private cluster restarted (fast, then immediate) under four writers: clients
    see 503 with Retry-After or a closed connection, never a 500, and retrying with the
    same event UUIDs loses and duplicates nothing."""
    import psycopg

    seconds = env_float("LEDGER_FAULT_PG_SECONDS", 2)
    with private_cluster() as cluster:
        with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE ledger")
        url = cluster.url("ledger")
        token = admin_token(url)
        env = {"LEDGER_DATABASE_URL": url}
        with LiveServer(url, data_dir=tmp_path / "srv", workers=2, env=env) as server:
            size0 = setup_project(server.url, token, "alpha")
            writers = [Writer(lambda: server.url, token, "alpha", f"w{i}", 10) for i in range(4)]
            for w in writers:
                w.start()
            for mode in ("fast", "immediate"):
                time.sleep(seconds / 2)
                # Hold the project's head row so that writers are inside their append
                # transactions, waiting for it, when the server goes away.
                blocker = psycopg.connect(url)
                blocker.execute("SELECT size FROM heads WHERE project = 'alpha' FOR UPDATE")
                time.sleep(1.0)
                cluster.stop(mode)
                with contextlib.suppress(psycopg.Error):
                    blocker.close()
                time.sleep(0.5)
                cluster.start()
            time.sleep(seconds / 2)
            for w in writers:
                w.join(timeout=180)
            log = server.log_text()
        statuses: dict[int, int] = {}
        for w in writers:
            assert not w.problems, w.problems
            for k, v in w.statuses.items():
                statuses[k] = statuses.get(k, 0) + v
        assert set(statuses) <= {0, 200, 201, 503}, statuses
        assert statuses.get(503, 0) > 0, statuses
        assert "Traceback" not in log
        size = check_log(url, "alpha", writers, setup_size=size0, require_all_sent=True)
        print(f"\nPostgreSQL restarted twice under 4 writers: statuses {statuses}, size {size}")
        assert size - size0 == sum(len(b) for w in writers for b in w.sent)


# --- a full disk ----------------------------------------------------------------------


def _limit_pages(store: SQLiteStore, pages: int | None) -> None:
    with store._connection() as conn:
        if pages is None:
            conn.execute("PRAGMA max_page_count=1073741823")
        else:
            conn.execute(f"PRAGMA max_page_count={pages}")


def test_sqlite_disk_full_during_an_append_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = open_store(url, upgrade=True)
    assert isinstance(store, SQLiteStore)
    try:
        ledger = Ledger(store)
        ledger.append("alpha", f.setup_events(), "test")
        ledger.append("alpha", [f.mask_created("first")], "test")
        before = store.head("alpha")
        assert before is not None
        with store._connection() as conn:
            used = int(conn.execute("PRAGMA page_count").fetchone()[0])
        _limit_pages(store, used)  # the file may not grow: the "disk" is full
        big = [f.mask_created(f"big-{i}") for i in range(200)]
        with pytest.raises(LedgerError) as caught:
            ledger.append("alpha", big, "test")
        message = str(caught.value)
        assert "full" in message and str(tmp_path / "ledger.db") in message, message
        assert store.head("alpha") == before
        rows = store.query("SELECT count(*) AS n FROM entries WHERE project = ?", ("alpha",))
        assert int(rows[0]["n"]) == before.size
        assert verify_log(store, "alpha").ok
        _limit_pages(store, None)  # space again: the same batch goes in whole
        result = ledger.append("alpha", big, "test")
        assert result.appended == 200 and result.size == before.size + 200
        assert verify_log(store, "alpha").ok
    finally:
        store.close()


@contextlib.contextmanager
def _tiny_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_sqlite_disk_full_through_the_service(tmp_path: Path) -> None:
    """The database on a 4 MB tmpfs that a filler file makes full: the batch gets a
    problem naming the full disk (503, retry once there is room), nothing of it is
    written, and after room is made the same batch goes in whole."""
    with _tiny_disk(tmp_path / "disk", "4m") as disk:
        db = disk / "ledger.db"
        url = f"sqlite:///{db}"
        token = admin_token(url)
        headers = {"Authorization": f"Bearer {token}"}
        with LiveServer(url, data_dir=tmp_path / "srv", workers=1) as server:
            size0 = setup_project(server.url, token, "alpha")
            filler = disk / "filler"
            with filler.open("wb") as out, contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            batch = [f.mask_created(f"big-{i}") for i in range(200)]
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
                r = http.post("/v1/projects/alpha/events", json={"events": batch})
                assert_unavailable(r)
                assert "full" in r.json()["detail"], r.json()
                assert http.get("/v1/projects/alpha").status_code == 200
                filler.unlink()
                r = http.post("/v1/projects/alpha/events", json={"events": batch})
                assert r.status_code == 201, r.text
            log = server.log_text()
        assert "Traceback" not in log
        store = open_store(url)
        try:
            head = store.head("alpha")
            assert head is not None and head.size == size0 + 200
            assert verify_log(store, "alpha").ok
        finally:
            store.close()
