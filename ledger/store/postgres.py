"""PostgreSQL through psycopg 3, for production.

The append lock is the project's row in ``heads``, taken with ``SELECT ... FOR UPDATE``
inside the append transaction: writers of one project queue on that row and commit in
sequence order; writers of other projects lock other rows and never wait for each
other. Taking the lock also reads the head. The reads of an append are index probes
(see ``_keyed_statements``), the ones that do not depend on each other sent in one
round trip. Rows are written with COPY where a table gets many (binary where they hold
bytes; one round trip per table per batch); the few rows of the other tables and the
mutable projections go in one statement with the head update (see ``_write_batch``),
sent with the COMMIT in one round trip.

Connections are in autocommit mode: a read is one statement and one round trip (no
BEGIN before it, no ROLLBACK after it). Only the append and the migrations open a
transaction, with an explicit BEGIN sent in the same round trip as their first
statement.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from ledger.errors import (
    Conflict,
    InvalidInput,
    LedgerError,
    StorageError,
    StorageUnavailable,
)
from ledger.store.base import TABLES, UPSERT_KEYS, ExistingEvent, Head, WriteBatch
from ledger.store.sql import (
    _MOVE_HEAD,
    KeyedRequest,
    SqlStore,
    _head_values,
    existing_from_rows,
)

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 0x4C454447  # "LEDG"

# A table with fewer new rows than this is written by the statement that moves the head
# (one round trip for all such tables); from this many rows on, COPY is cheaper on both
# sides despite its own round trip. Single-event appends write everything at once.
_COPY_MIN_ROWS = 32

_LOCK_HEAD = (
    "SELECT project, size, last_leaf, last_recorded_at FROM heads WHERE project = %s FOR UPDATE"
)


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
                # an empty query before each checkout (a cheap round trip): a
                # connection the server dropped is replaced, not handed out
                check=ConnectionPool.check_connection,
                kwargs={"autocommit": True, "connect_timeout": int(connect_timeout)},
            )
            self._pool.open(wait=False)
        except (psycopg.Error, PoolTimeout) as e:
            raise self._translate(e) or StorageError(str(e)) from e
        self._types: dict[str, dict[str, str]] = {}  # table -> column -> SQL type

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self._pool.close()

    # --- dialect hooks ------------------------------------------------------------
    def _begin_append(
        self, conn: Any, project: str, event_ids: Sequence[str]
    ) -> tuple[Head, dict[str, ExistingEvent] | None]:
        # BEGIN, the lock and the read of the batch's event ids in one round trip. The
        # server runs them in order, so the read waits for the lock and sees every
        # append committed before it.
        reads = self._existing_statements(project, event_ids)
        with conn.pipeline():
            conn.execute("BEGIN")
            lock = conn.execute(_LOCK_HEAD, (project,))
            cursors = [conn.execute(self.sql(sql), params) for sql, params in reads]
        row = lock.fetchone()
        existing: dict[str, ExistingEvent] | None = None
        if row is None:
            # A new project. The read above ran without a lock to wait for: the append
            # reads the ids again once it holds the lock taken here.
            conn.execute(
                "INSERT INTO heads (project, size) VALUES (%s, 0) ON CONFLICT DO NOTHING",
                (project,),
            )
            row = conn.execute(_LOCK_HEAD, (project,)).fetchone()
        else:
            existing = existing_from_rows(r for cur in cursors for r in self._dicts(cur))
        name, size, leaf, recorded_at = row
        head = Head(name, int(size), bytes(leaf) if leaf is not None else None, recorded_at)
        return head, existing

    # Outside a transaction (autocommit) both are no-ops that send nothing.
    def _commit(self, conn: Any) -> None:
        conn.commit()

    def _rollback(self, conn: Any) -> None:
        conn.rollback()

    def _fetch_rows(self, conn: Any, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        # binary results: bytea arrives as raw bytes, not hex text to decode
        rows: list[tuple[Any, ...]] = conn.execute(sql, params, binary=True).fetchall()
        return rows

    def _insert_many(self, conn: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
        cols = TABLES[table]
        types = self._column_types(conn, table)
        # Text COPY spells bytea in hex, doubling the entry bytes on the wire and making
        # the server decode them; binary COPY sends them as they are. Binary needs the
        # column types, read from the catalog once per table.
        binary = "bytea" in types.values()
        sql = f"COPY {table} ({', '.join(cols)}) FROM STDIN{' (FORMAT BINARY)' if binary else ''}"
        with conn.cursor() as cur, cur.copy(sql) as copy:
            if binary:
                copy.set_types([types[c] for c in cols])
            for row in rows:
                copy.write_row(row)

    def _column_types(self, conn: Any, table: str) -> dict[str, str]:
        types = self._types.get(table)
        if types is None:
            rows = conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                (table,),
            ).fetchall()
            types = {str(name): str(kind) for name, kind in rows}
            if types:
                self._types[table] = types
        return types

    def _keyed_statements(
        self, table: str, columns: str, key: str, project: str, values: Sequence[Any]
    ) -> list[tuple[str, tuple[Any, ...]]]:
        # One index probe per key, whatever the statistics say. The plain form
        # `project = $1 AND key IN (...)` is planned from statistics, and on a table not
        # analyzed yet (a new database, a log that just grew) the planner takes the
        # default selectivity of `project = $1`, picks any project-prefixed index and
        # filters every row of the project: each append then reads the whole log. A
        # LATERAL subquery with OFFSET 0 (which keeps it from being flattened into a
        # join) is run once per key with both columns bound, so it always uses the
        # (project, key) index. One statement per table: also prepared once.
        if not values:
            return []
        if all(isinstance(v, str) for v in values):
            array = "text[]"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            array = "bigint[]"
        else:
            return super()._keyed_statements(table, columns, key, project, values)
        sql = (  # the key array goes in binary (%b): cheaper to dump than its text form
            f"SELECT t.* FROM unnest(%b::{array}) AS k(v) CROSS JOIN LATERAL"
            f" (SELECT {columns} FROM {table} WHERE project = ? AND {key} = k.v OFFSET 0) AS t"
        )
        return [(sql, (list(values), project))]

    def _select_keyed_many(
        self, conn: Any, project: str, requests: Sequence[KeyedRequest]
    ) -> list[list[dict[str, Any]]]:
        plans = [self._keyed_statements(t, c, k, project, v) for t, c, k, v in requests]
        if sum(len(plan) for plan in plans) < 2:
            return super()._select_keyed_many(conn, project, requests)
        # Several reads in one round trip: pipeline mode sends every query before
        # waiting for the first result.
        with conn.pipeline():
            cursors = [
                [conn.execute(self.sql(sql), params) for sql, params in plan] for plan in plans
            ]
        return [[row for cur in plan for row in self._dicts(cur)] for plan in cursors]

    def _write_batch(self, conn: Any, project: str, batch: WriteBatch, head: Head) -> None:
        # Tables with many new rows go first, by COPY. Every other table's rows, the
        # head update and the COMMIT then go in one round trip, as one statement: each
        # table's rows are column arrays (binary, %b) unnested server-side by an INSERT
        # (an upsert for the mutable projections) in a data-modifying WITH clause of
        # the head's UPDATE. The clauses touch different tables, so running them on
        # one snapshot changes nothing. Should the statement fail, the COMMIT behind
        # it in the pipeline is skipped and the append rolls back as a whole.
        clauses: list[str] = []
        arrays: list[list[Any]] = []
        for table, rows in batch.rows.items():
            if not rows:
                continue
            if table not in UPSERT_KEYS and len(rows) >= _COPY_MIN_ROWS:
                self._insert_many(conn, table, rows)
                continue
            cols = TABLES[table]
            types = self._column_types(conn, table)
            unnest = ", ".join(f"%b::{types[c]}[]" for c in cols)
            clause = f"INSERT INTO {table} ({', '.join(cols)}) SELECT * FROM unnest({unnest})"
            if table in UPSERT_KEYS:
                keys = UPSERT_KEYS[table]
                updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys)
                clause += f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
                rows = batch.upserts(table)
            clauses.append(f"w{len(clauses)} AS ({clause})")
            arrays.extend(list(column) for column in zip(*rows, strict=True))
        sql = (f"WITH {', '.join(clauses)} " if clauses else "") + self.sql(_MOVE_HEAD)
        with conn.pipeline():
            conn.execute(sql, (*arrays, *_head_values(head), project))
            conn.commit()

    def iter_query(
        self, sql: str, params: Sequence[Any] = (), page: int = 5000
    ) -> Iterator[dict[str, Any]]:
        # A server-side cursor (it needs a transaction: the connections are in
        # autocommit mode) keeps the result on the server and brings it a page at a
        # time, so memory holds one page whatever the size of the result.
        with (
            self._guard(),
            self._connection() as conn,
            conn.transaction(),
            conn.cursor(name="ledger_iter_query") as cur,
        ):
            cur.execute(self.sql(sql), tuple(params))
            cols = [d[0] for d in cur.description or ()]
            while rows := cur.fetchmany(page):
                for row in rows:
                    yield dict(zip(cols, row, strict=True))

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
        if isinstance(error, psycopg.DataError):
            # SQLSTATE class 22: a value its column cannot hold (an integer out of range,
            # NUL in text). The input's fault; the transaction wrote nothing.
            return InvalidInput(f"the database refused a value: {text}")
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
            conn.execute("BEGIN")
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
