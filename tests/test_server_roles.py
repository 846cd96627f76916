"""deploy/postgres-roles.sql: migrations as ledger_owner, the service as ledger_app.

The application role can append, read, upsert the mutable projections and revoke
tokens, and the service runs as it; it cannot change or remove log rows, delete
tokens, or create tables.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from api.testing import LiveServer, with_database
from ledger.auth import TokenStore
from ledger.errors import StorageError
from ledger.service import Ledger
from ledger.store import open_store
from tests import factory as f
from tests.conftest import _PG_PROBLEM, PG_ADMIN_URL

pytestmark = pytest.mark.postgres

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "postgres-roles.sql"
ROLES = ("ledger_owner", "ledger_app")


def _as(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}@{host}{port}"))


def _run_script(url: str) -> None:
    psql = shutil.which("psql")
    assert psql is not None
    done = subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def database() -> Iterator[str]:
    if _PG_PROBLEM is not None:
        pytest.skip(f"PostgreSQL unreachable: {_PG_PROBLEM}")
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    name = f"ledger_roles_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        existing = {
            r[0]
            for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname IN ('ledger_owner', 'ledger_app')"
            )
        }
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(PG_ADMIN_URL, name)
    try:
        yield url
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP OWNED BY ledger_owner, ledger_app")
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in ROLES:
                if role not in existing:  # roles are cluster-wide: drop only ours
                    with contextlib.suppress(psycopg.Error):
                        conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_roles_script_gives_the_app_only_what_it_needs(database: str, tmp_path: Path) -> None:
    _run_script(database)
    owner_url, app_url = _as(database, "ledger_owner"), _as(database, "ledger_app")
    owner = open_store(owner_url, upgrade=True)
    owner.close()
    _run_script(database)  # grants on the tables the migrations made
    _run_script(database)  # idempotent

    app = open_store(app_url)
    try:
        assert app.pending_migrations() == []
        ledger = Ledger(app)
        ledger.append("alpha", f.setup_events(), "test")
        ledger.append("alpha", [f.mask_created("inst-1")], "test")
        ledger.append("alpha", [f.mask_edited("inst-1", 1)], "test")  # upserts instances
        tokens = TokenStore(app)
        token, _ = tokens.create("writer", project="alpha", created_by="test")
        assert tokens.revoke(token.id).revoked_at is not None
        for statement in (
            "UPDATE entries SET actor = 'mallory'",
            "DELETE FROM revisions",
            "UPDATE tree_hashes SET idx = idx",
            "TRUNCATE entries",
            "DELETE FROM tokens",
            "DELETE FROM heads",
            "CREATE TABLE extra (x int)",
            "UPDATE schema_migrations SET name = name",
        ):
            with pytest.raises(StorageError):
                app.execute(statement)
        assert ledger.head("alpha").size == 8
    finally:
        app.close()

    owner = open_store(owner_url)
    _, admin_secret = TokenStore(owner).create("admin", created_by="test")
    owner.close()
    with LiveServer(app_url, data_dir=tmp_path) as server:
        r = httpx.post(
            f"{server.url}/v1/projects/alpha/events",
            json=f.mask_created("inst-2"),
            headers={"Authorization": f"Bearer {admin_secret}"},
        )
        assert r.status_code == 201, r.text
        assert httpx.get(f"{server.url}/readyz").json()["database"] == "postgresql"
