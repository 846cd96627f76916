"""PostgreSQL through psycopg 3, for production.

The append lock is the project's row in ``heads``, taken with ``SELECT ... FOR UPDATE``
inside the append transaction: writers of one project queue on that row and commit in
sequence order; writers of other projects lock other rows and never wait for each
other. Rows are written with COPY: one round trip per table per batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from ledger.errors import Conflict, LedgerError, StorageError, StorageUnavailable
from ledger.store.base import TABLES
from ledger.store.sql import SqlStore

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 0x4C454447  # "LEDG"


class PostgresStore(SqlStore):
    dialect = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str, pool_size: int = 8, connect_timeout: float = 10.0) -> None:
        self.url = url
        try:
            self._pool = ConnectionPool(
                url,
                min_size=1,
                max_size=pool_size,
                timeout=connect_timeout,
                open=False,
                check=ConnectionPool.check_connection,
                kwargs={"autocommit": False, "connect_timeout": int(connect_timeout)},
            )
            self._pool.open(wait=False)
        except (psycopg.Error, PoolTimeout) as e:
            raise self._translate(e) or StorageError(str(e)) from e

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self._pool.close()

    # --- dialect hooks ------------------------------------------------------------
    def _begin_append(self, conn: Any, project: str) -> None:
        lock = "SELECT size FROM heads WHERE project = %s FOR UPDATE"
        if conn.execute(lock, (project,)).fetchone() is None:
            conn.execute(
                "INSERT INTO heads (project, size) VALUES (%s, 0) ON CONFLICT DO NOTHING",
                (project,),
            )
            conn.execute(lock, (project,)).fetchone()

    def _commit(self, conn: Any) -> None:
        conn.commit()

    def _rollback(self, conn: Any) -> None:
        conn.rollback()

    def _insert_many(self, conn: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
        cols = ", ".join(TABLES[table])
        with conn.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _executemany(self, conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(sql, rows)

    def _is_missing_table(self, error: Exception) -> bool:
        return isinstance(error, pg_errors.UndefinedTable)

    def _translate(self, error: Exception) -> LedgerError | None:
        where = _redact(self.url)
        if isinstance(error, PoolTimeout):
            return StorageUnavailable(f"PostgreSQL at {where} is not reachable: {error}")
        if not isinstance(error, psycopg.Error):
            return None
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, pg_errors.InsufficientPrivilege):
            return StorageError(f"refused by the database: {text}")
        if isinstance(error, pg_errors.UniqueViolation):
            return Conflict(f"the database refused a duplicate: {text}")
        if isinstance(error, pg_errors.UndefinedTable):
            return StorageError(
                f"the database at {where} has no ledger schema; run `ledger db upgrade`"
            )
        if isinstance(
            error,
            pg_errors.SerializationFailure
            | pg_errors.DeadlockDetected
            | pg_errors.AdminShutdown
            | pg_errors.CannotConnectNow
            | pg_errors.DiskFull
            | pg_errors.QueryCanceled,
        ):
            return StorageUnavailable(f"PostgreSQL at {where}: {text}; retry the request")
        if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
            return StorageUnavailable(f"PostgreSQL at {where} is not reachable: {text}")
        return StorageError(f"PostgreSQL error at {where}: {text}")

    # --- migrations -----------------------------------------------------------------
    def upgrade(self) -> list[str]:
        applied_now: list[str] = []
        with self._guard(), self._connection() as conn:
            try:
                # Two processes upgrading at once: the second waits here, then finds
                # the migrations applied.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations"
                    " (name text PRIMARY KEY, applied_at text NOT NULL)"
                )
                applied = self._applied(conn)
                for path in self._migration_files():
                    if path.name in applied:
                        continue
                    conn.execute(path.read_text(encoding="utf-8").encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (name, applied_at) VALUES (%s, %s)",
                        (path.name, datetime.now(UTC).isoformat()),
                    )
                    applied_now.append(path.name)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        return applied_now


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "<unparsable database URL>"
    host = info.get("host", "localhost")
    port = info.get("port", "5432")
    return f"{host}:{port}/{info.get('dbname', '')}"
