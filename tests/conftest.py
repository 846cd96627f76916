"""Fixtures: real SQLite files and real PostgreSQL databases, made and dropped per test.

PostgreSQL is found at ``LEDGER_TEST_PG_URL`` (default the local server as user
postgres). Where it cannot be reached the PostgreSQL half of the suite is skipped with
a loud warning, except under CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from ledger.service import Ledger
from ledger.store import Store, open_store

PG_ADMIN_URL = os.environ.get("LEDGER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _pg_url(dbname: str) -> str:
    parts = urlsplit(PG_ADMIN_URL)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)


def _postgres_problem() -> str | None:
    try:
        with _admin() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return None


_PG_PROBLEM = _postgres_problem()


def pytest_configure(config: pytest.Config) -> None:
    if _PG_PROBLEM is None:
        return
    banner = (
        "\n" + "!" * 78 + f"\n!! PostgreSQL at {PG_ADMIN_URL} is NOT reachable: {_PG_PROBLEM}\n"
        "!! The PostgreSQL half of the storage contract suite will be SKIPPED.\n"
        "!! Start it (pg_ctlcluster ... main start) or set LEDGER_TEST_PG_URL.\n" + "!" * 78
    )
    if IN_CI:
        raise pytest.UsageError(f"CI=true and PostgreSQL is required: {_PG_PROBLEM}{banner}")
    print(banner)
    warnings.warn(f"PostgreSQL unreachable, its tests are skipped: {_PG_PROBLEM}", stacklevel=1)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _PG_PROBLEM is not None:
        terminalreporter.write_line(
            f"WARNING: PostgreSQL unreachable ({_PG_PROBLEM}); PostgreSQL tests were SKIPPED",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated database that each test's database is copied from."""
    if _PG_PROBLEM is not None:
        pytest.skip(f"PostgreSQL unreachable: {_PG_PROBLEM}")
    name = f"ledger_tmpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    store = open_store(_pg_url(name), upgrade=True)
    store.close()
    yield name
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url_factory(pg_template: str) -> Iterator[Callable[[], str]]:
    """Make throwaway, migrated PostgreSQL databases; all are dropped after the test."""
    made: list[str] = []

    def make() -> str:
        name = f"ledger_t_{uuid.uuid4().hex[:12]}"
        with _admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
        made.append(name)
        return _pg_url(name)

    yield make
    with _admin() as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database of each backend."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
        open_store(url, upgrade=True).close()
        return url
    factory: Callable[[], str] = request.getfixturevalue("pg_url_factory")
    return factory()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.close()


@pytest.fixture
def ledger(store: Store) -> Ledger:
    return Ledger(store)
