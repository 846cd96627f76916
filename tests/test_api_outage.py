"""A database that cannot answer gets 503 with Retry-After, never a 500, and the
service recovers by itself when the database is back."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from api.testing import LiveServer, scratch_postgres
from ledger.auth import TokenStore
from ledger.store import open_store
from tests import factory as f
from tests.conftest import _PG_PROBLEM, PG_ADMIN_URL


def _admin_token(url: str) -> str:
    store = open_store(url, upgrade=True)
    try:
        return TokenStore(store).create("admin", created_by="test")[1]
    finally:
        store.close()


def _assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"].isdigit()
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["type"].endswith(":storage-unavailable")


def test_sqlite_writer_lock_held_too_long_is_503(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    url = f"sqlite:///{db}"
    secret = _admin_token(url)
    env = {"LEDGER_SQLITE_BUSY_TIMEOUT": "0.3"}
    with (
        LiveServer(url, data_dir=tmp_path, env=env) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}) as http,
    ):
        assert (
            http.post("/v1/projects/alpha/events", json={"events": f.setup_events()}).status_code
            == 201
        )
        blocker = sqlite3.connect(db, isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            _assert_unavailable(http.post("/v1/projects/alpha/events", json=f.mask_created()))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert http.post("/v1/projects/alpha/events", json=f.mask_created()).status_code == 201
        assert "Traceback" not in server.log_text()


@pytest.fixture
def pg_url() -> Iterator[str]:
    if _PG_PROBLEM is not None:
        pytest.skip(f"PostgreSQL unreachable: {_PG_PROBLEM}")
    with scratch_postgres(PG_ADMIN_URL, prefix="ledger_outage") as url:
        yield url


def _set_connections(url: str, allowed: bool) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )


@pytest.mark.postgres
def test_postgres_outage_is_503_and_the_service_recovers(pg_url: str, tmp_path: Path) -> None:
    secret = _admin_token(pg_url)
    with (
        LiveServer(pg_url, data_dir=tmp_path, workers=1) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=60
        ) as http,
    ):
        assert (
            http.post("/v1/projects/alpha/events", json={"events": f.setup_events()}).status_code
            == 201
        )
        _set_connections(pg_url, False)
        try:
            # the pool waits for a connection (10 s) before it gives up
            _assert_unavailable(http.get("/readyz"))
            assert http.get("/healthz").status_code == 200
        finally:
            _set_connections(pg_url, True)
        event = f.mask_created(f"after-{uuid.uuid4().hex[:6]}")
        r = http.post("/v1/projects/alpha/events", json=event)
        assert r.status_code == 201, r.text
        assert http.get("/readyz").status_code == 200
        assert "Traceback" not in server.log_text()
