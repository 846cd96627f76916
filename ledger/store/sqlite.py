"""The embedded default: one SQLite file in WAL mode.

Appends take SQLite's database-wide write lock with ``BEGIN IMMEDIATE`` (waiting up to
the busy timeout), so appends to different projects in one file do serialize; that is
SQLite's single-writer model, and PostgreSQL is the answer when it matters. Readers
never block writers in WAL mode and see only committed transactions.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.errors import (
    Conflict,
    LedgerError,
    StorageError,
    StorageUnavailable,
)
from ledger.store.base import TABLES
from ledger.store.sql import SqlStore


def sqlite_path(url: str) -> Path:
    """``sqlite:///rel/path.db`` -> rel/path.db; ``sqlite:////abs/path.db`` -> /abs/path.db."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StorageError(f"not a SQLite URL: {url!r} (expected sqlite:///path/to/file.db)")
    return Path(url[len(prefix) :])


def _split_statements(script: str) -> list[str]:
    """Split a script into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in current.splitlines()
    ):
        statements.append(current.strip())
    return statements


class SQLiteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, url: str, busy_timeout: float = 30.0) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create the folder for {self.path}: {e}") from e

    # --- connections --------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        with self._guard():
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        # One connection per thread, reused; gunicorn's sync workers are one thread.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
        yield conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # --- dialect hooks ------------------------------------------------------------
    def _begin_append(self, conn: Any, project: str, event_ids: Sequence[str]) -> tuple[None, None]:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO heads (project, size) VALUES (?, 0) ON CONFLICT (project) DO NOTHING",
            (project,),
        )
        return None, None  # reads are local: the append makes them when it needs them

    def _commit(self, conn: Any) -> None:
        if conn.in_transaction:
            conn.execute("COMMIT")

    def _rollback(self, conn: Any) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _insert_many(self, conn: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
        cols = TABLES[table]
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        conn.executemany(sql, rows)

    def _executemany(self, conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
        conn.executemany(sql, rows)

    def _is_missing_table(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.OperationalError) and "no such table" in str(error)

    def _translate(self, error: Exception) -> LedgerError | None:
        if not isinstance(error, sqlite3.Error):
            return None
        text = str(error)
        if isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return StorageUnavailable(
                f"the SQLite database {self.path} stayed locked by another writer for "
                f"{self.busy_timeout:g} s; retry the request"
            )
        if "append-only" in text:
            return StorageError(f"refused by the database: {text}")
        if isinstance(error, sqlite3.IntegrityError):
            return Conflict(f"the database refused a duplicate: {text}")
        if isinstance(error, sqlite3.OperationalError) and (
            "disk" in text or "full" in text or "unable to open" in text
        ):
            return StorageUnavailable(f"SQLite database {self.path}: {text}")
        if isinstance(error, sqlite3.OperationalError) and "no such table" in text:
            return StorageError(
                f"the database {self.path} has no ledger schema; run `ledger db upgrade`"
            )
        return StorageError(f"SQLite error on {self.path}: {text}")

    # --- migrations -----------------------------------------------------------------
    def upgrade(self) -> list[str]:
        applied_now: list[str] = []
        with self._guard(), self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations"
                    " (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
                applied = self._applied(conn)
                for path in self._migration_files():
                    if path.name in applied:
                        continue
                    for statement in _split_statements(path.read_text(encoding="utf-8")):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                        (path.name, datetime.now(UTC).isoformat()),
                    )
                    applied_now.append(path.name)
            except BaseException:
                self._rollback(conn)
                raise
            self._commit(conn)
        return applied_now
