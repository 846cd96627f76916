"""Queries shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations

import abc
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeAlias

from ledger.errors import LedgerError, StorageError
from ledger.store.base import (
    TABLES,
    UPSERT_KEYS,
    AppendTxn,
    ExistingEvent,
    Head,
    Store,
    WriteBatch,
)


def _schema_dir() -> Path:
    """schema/ of the source checkout this runs from, else the copy an installed wheel
    put under <prefix>/share/annotation-ledger/ (see pyproject.toml)."""
    checkout = Path(__file__).resolve().parents[2] / "schema"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "annotation-ledger" / "schema"


SCHEMA_DIR = _schema_dir()

#: (table, columns, key column, key values) of one keyed read inside an append
KeyedRequest: TypeAlias = tuple[str, str, str, Sequence[Any]]

# Longest IN (...) list sent in one query; both drivers take far more, this bounds
# statement size.
_IN_CHUNK = 500


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


class SqlStore(Store):
    """Every query, written once. Subclasses provide connections and dialect details."""

    #: placeholder the driver takes
    placeholder = "?"

    def sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    # --- hooks ------------------------------------------------------------------
    @abc.abstractmethod
    def _connection(self) -> AbstractContextManager[Any]:
        """A connection for one unit of work (not inside a transaction)."""

    @abc.abstractmethod
    def _begin_append(
        self, conn: Any, project: str, event_ids: Sequence[str]
    ) -> tuple[Head | None, dict[str, ExistingEvent] | None]:
        """Start the append transaction, make sure the project's head row exists (size
        0 for a new project; rolled back with the rest if the append fails) and take
        the project's lock. May return the locked head when taking the lock read it
        anyway, and the stored entries of ``event_ids`` when it read them in the same
        round trip; None makes the append read them."""

    @abc.abstractmethod
    def _insert_many(self, conn: Any, table: str, rows: list[tuple[Any, ...]]) -> None: ...

    @abc.abstractmethod
    def _executemany(self, conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> None: ...

    @abc.abstractmethod
    def _translate(self, error: Exception) -> LedgerError | None:
        """Map a driver error to a LedgerError, or None if it is not a driver error."""

    @abc.abstractmethod
    def _commit(self, conn: Any) -> None: ...

    @abc.abstractmethod
    def _rollback(self, conn: Any) -> None: ...

    def _keyed_statements(
        self, table: str, columns: str, key: str, project: str, values: Sequence[Any]
    ) -> list[tuple[str, tuple[Any, ...]]]:
        """Statements (``?`` placeholders) selecting ``columns`` of the project's rows
        of ``table`` whose ``key`` is one of ``values`` (distinct). Plain ``IN`` lists
        here; a dialect may use a form its planner handles better."""
        statements = []
        for chunk in _chunks(values):
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {columns} FROM {table} WHERE project = ? AND {key} IN ({marks})"
            statements.append((sql, (project, *chunk)))
        return statements

    def _select_keyed_many(
        self, conn: Any, project: str, requests: Sequence[KeyedRequest]
    ) -> list[list[dict[str, Any]]]:
        """The rows each (table, columns, key, values) request names, in request order,
        inside the append transaction. One query after the other here; a client-server
        dialect may send them all in one round trip."""
        out: list[list[dict[str, Any]]] = []
        for table, columns, key, values in requests:
            rows: list[dict[str, Any]] = []
            for sql, params in self._keyed_statements(table, columns, key, project, values):
                rows.extend(self._fetch(conn, sql, params))
            out.append(rows)
        return out

    def _select_keyed(
        self, conn: Any, table: str, columns: str, key: str, project: str, values: Sequence[Any]
    ) -> list[dict[str, Any]]:
        return self._select_keyed_many(conn, project, [(table, columns, key, values)])[0]

    def _write_batch(self, conn: Any, project: str, batch: WriteBatch, head: Head) -> None:
        """Write everything one append gathered, then move the head, inside the append
        transaction. Mutable projections are upserted, everything else inserted."""
        for table, rows in batch.rows.items():
            if not rows:
                continue
            if table in UPSERT_KEYS:
                self._executemany(conn, _upsert_sql(self, table), batch.upserts(table))
            else:
                self._insert_many(conn, table, rows)
        conn.execute(self.sql(_MOVE_HEAD), (*_head_values(head), project))

    # --- helpers ----------------------------------------------------------------
    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Translate driver errors, in one place, for every public method."""
        try:
            yield
        except LedgerError:
            raise
        except Exception as e:
            translated = self._translate(e)
            if translated is None:
                raise
            raise translated from e

    @staticmethod
    def _dicts(cursor: Any) -> list[dict[str, Any]]:
        cols = [d[0] for d in cursor.description]
        return [dict(zip(cols, row, strict=True)) for row in cursor.fetchall()]

    def _fetch(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self._dicts(conn.execute(self.sql(sql), tuple(params)))

    # --- migrations -----------------------------------------------------------------
    def _migration_files(self) -> list[Path]:
        folder = SCHEMA_DIR / self.dialect
        files = sorted(folder.glob("*.sql"))
        if not files:
            raise StorageError(
                f"no schema migrations in {folder}: reinstall the package, or run from a "
                "checkout that has schema/"
            )
        return files

    def _applied(self, conn: Any) -> set[str]:
        try:
            return {r["name"] for r in self._fetch(conn, "SELECT name FROM schema_migrations")}
        except Exception as e:
            if self._is_missing_table(e):
                self._rollback(conn)
                return set()
            raise

    @abc.abstractmethod
    def _is_missing_table(self, error: Exception) -> bool: ...

    def pending_migrations(self) -> list[str]:
        with self._guard(), self._connection() as conn:
            applied = self._applied(conn)
            self._rollback(conn)
        return [p.name for p in self._migration_files() if p.name not in applied]

    # --- append -------------------------------------------------------------------
    @contextmanager
    def _append_txn(self, project: str, event_ids: Sequence[str]) -> Iterator[AppendTxn]:
        with self._guard(), self._connection() as conn:
            try:
                locked, existing = self._begin_append(conn, project, event_ids)
                txn = _SqlAppendTxn(self, conn, project, locked)
                if existing is not None:
                    txn.known_events(event_ids, existing)
                yield txn
            except BaseException:
                self._rollback(conn)
                raise
            self._commit(conn)

    def append_txn(
        self, project: str, event_ids: Sequence[str] = ()
    ) -> AbstractContextManager[AppendTxn]:
        return self._append_txn(project, event_ids)

    def _existing_statements(
        self, project: str, event_ids: Sequence[str]
    ) -> list[tuple[str, tuple[Any, ...]]]:
        return self._keyed_statements(*_EXISTING, project, _distinct(event_ids))

    # --- reads --------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._guard(), self._connection() as conn:
            try:
                return self._fetch(conn, sql, params)
            finally:
                self._rollback(conn)

    def query_rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._guard(), self._connection() as conn:
            try:
                return self._fetch_rows(conn, self.sql(sql), tuple(params))
            finally:
                self._rollback(conn)

    def _fetch_rows(self, conn: Any, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = conn.execute(sql, params).fetchall()
        return rows

    def iter_query(
        self, sql: str, params: Sequence[Any] = (), page: int = 5000
    ) -> Iterator[dict[str, Any]]:
        # Each page is its own short read; callers page by a key they control. Here a
        # plain LIMIT/OFFSET is avoided: the caller's query must be keyset-ordered, so
        # this helper streams with fetchmany inside one read transaction instead.
        with self._guard(), self._connection() as conn:
            try:
                cur = conn.execute(self.sql(sql), tuple(params))
                cols = [d[0] for d in cur.description]
                while True:
                    rows = cur.fetchmany(page)
                    if not rows:
                        break
                    for row in rows:
                        yield dict(zip(cols, row, strict=True))
            finally:
                self._rollback(conn)

    def head(self, project: str) -> Head | None:
        rows = self.query(
            "SELECT project, size, last_leaf, last_recorded_at FROM heads WHERE project = ?",
            (project,),
        )
        return _head(rows[0]) if rows else None

    def projects(self) -> list[Head]:
        rows = self.query(
            "SELECT project, size, last_leaf, last_recorded_at FROM heads ORDER BY project"
        )
        return [_head(r) for r in rows]

    def iter_entries(
        self, project: str, start: int = 0, end: int | None = None, page: int = 5000
    ) -> Iterator[tuple[int, bytes]]:
        yield from self._iter_keyset("entries", "seq", "entry", project, start, end, page)

    def iter_tree_hashes(
        self, project: str, start: int = 0, end: int | None = None, page: int = 20000
    ) -> Iterator[tuple[int, bytes]]:
        yield from self._iter_keyset("tree_hashes", "idx", "hash", project, start, end, page)

    def _iter_keyset(
        self, table: str, key: str, col: str, project: str, start: int, end: int | None, page: int
    ) -> Iterator[tuple[int, bytes]]:
        # Keyset pages: each page is one short indexed range scan, so a verification
        # of a huge log holds no long transaction and O(page) rows in memory.
        stop = end if end is not None else 2**62
        sql = self.sql(
            f"SELECT {key}, {col} FROM {table} WHERE project = ? AND {key} >= ? AND {key} < ?"
            f" ORDER BY {key} LIMIT ?"
        )
        pos = start
        while pos < stop:
            with self._guard(), self._connection() as conn:
                try:
                    rows = conn.execute(sql, (project, pos, stop, page)).fetchall()
                finally:
                    self._rollback(conn)
            if not rows:
                return
            for k, value in rows:
                yield int(k), bytes(value)
            pos = int(rows[-1][0]) + 1
            if len(rows) < page:
                return

    def read_hashes(self, project: str, indexes: Sequence[int]) -> list[bytes]:
        with self._guard(), self._connection() as conn:
            try:
                return _read_hashes(self, conn, project, indexes)
            finally:
                self._rollback(conn)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._guard(), self._connection() as conn:
            try:
                count = conn.execute(self.sql(sql), tuple(params)).rowcount
            except BaseException:
                self._rollback(conn)
                raise
            self._commit(conn)
            return int(count)

    def ping(self) -> None:
        with self._guard(), self._connection() as conn:
            conn.execute("SELECT 1").fetchall()
            self._rollback(conn)


def _head(row: dict[str, Any]) -> Head:
    leaf = row["last_leaf"]
    return Head(
        project=row["project"],
        size=int(row["size"]),
        last_leaf=bytes(leaf) if leaf is not None else None,
        last_recorded_at=row["last_recorded_at"],
    )


def _read_hashes(store: SqlStore, conn: Any, project: str, indexes: Sequence[int]) -> list[bytes]:
    wanted = sorted(set(indexes))
    found: dict[int, bytes] = {}
    for chunk in _chunks(wanted):
        marks = ",".join("?" * len(chunk))
        sql = store.sql(f"SELECT idx, hash FROM tree_hashes WHERE project = ? AND idx IN ({marks})")
        for idx, value in conn.execute(sql, (project, *chunk)).fetchall():
            found[int(idx)] = bytes(value)
    missing = [i for i in wanted if i not in found]
    if missing:
        from ledger.errors import VerificationFailed

        raise VerificationFailed(
            f"project {project}: stored tree hash {missing[0]} is missing "
            f"({len(missing)} of {len(wanted)} requested)"
        )
    return [found[i] for i in indexes]


class _SqlAppendTxn(AppendTxn):
    def __init__(self, store: SqlStore, conn: Any, project: str, locked: Head | None) -> None:
        self.store = store
        self.conn = conn
        self.project = project
        self._locked = locked  # the head as read by taking the lock, if it was
        self._known: tuple[set[str], dict[str, ExistingEvent]] | None = None

    def head(self) -> Head:
        if self._locked is not None:
            return self._locked
        rows = self.store._fetch(
            self.conn,
            "SELECT project, size, last_leaf, last_recorded_at FROM heads WHERE project = ?",
            (self.project,),
        )
        return _head(rows[0])

    def known_events(self, event_ids: Sequence[str], existing: dict[str, ExistingEvent]) -> None:
        """The answer to ``existing_events(event_ids)``, read with the lock."""
        self._known = (set(event_ids), existing)

    def existing_events(self, event_ids: Sequence[str]) -> dict[str, ExistingEvent]:
        wanted = set(event_ids)
        if self._known is not None and wanted <= self._known[0]:
            return {k: v for k, v in self._known[1].items() if k in wanted}
        rows = self.store._select_keyed(self.conn, *_EXISTING, self.project, _distinct(event_ids))
        return existing_from_rows(rows)

    def rows(self, table: str, key: str, values: Iterable[Any]) -> list[dict[str, Any]]:
        return self.rows_many([(table, key, values)])[0]

    def rows_many(
        self, requests: Sequence[tuple[str, str, Iterable[Any]]]
    ) -> list[list[dict[str, Any]]]:
        """``rows`` of several (table, key, values) requests at once (one round trip
        where the dialect can)."""
        keyed: list[KeyedRequest] = []
        for table, key, values in requests:
            if key not in TABLES[table]:
                raise ValueError(f"{table} has no column {key}")
            keyed.append((table, "*", key, sorted(set(values))))
        return self.store._select_keyed_many(self.conn, self.project, keyed)

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return _read_hashes(self.store, self.conn, self.project, indexes)

    def write(self, batch: WriteBatch, head: Head) -> None:
        self._locked = None
        self.store._write_batch(self.conn, self.project, batch, head)


#: (table, columns, key column) of the read of a batch's event ids already in the log
_EXISTING = ("entries", "event_id, seq, event_hash", "event_id")


def _distinct(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def existing_from_rows(rows: Iterable[dict[str, Any]]) -> dict[str, ExistingEvent]:
    return {r["event_id"]: ExistingEvent(int(r["seq"]), bytes(r["event_hash"])) for r in rows}


_MOVE_HEAD = "UPDATE heads SET size = ?, last_leaf = ?, last_recorded_at = ? WHERE project = ?"


def _head_values(head: Head) -> tuple[Any, ...]:
    return (head.size, head.last_leaf, head.last_recorded_at)


def _upsert_sql(store: SqlStore, table: str) -> str:
    cols = TABLES[table]
    keys = UPSERT_KEYS[table]
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in keys)
    return store.sql(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )
