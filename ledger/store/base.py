"""The storage interface, and the SQL both backends share.

One ``SqlStore`` holds every query; ``SQLiteStore`` and ``PostgresStore`` supply the
connection, the per-project lock, bulk inserts and the translation of driver errors.
Queries are written with ``?`` placeholders; the PostgreSQL store rewrites them to
``%s`` once, at class creation.

Locking, in one paragraph: an append runs in one transaction that first takes the
project's lock (PostgreSQL: ``SELECT ... FROM heads WHERE project = ? FOR UPDATE``;
SQLite: ``BEGIN IMMEDIATE``, the database-wide write lock). Everything that decides
sequence numbers, the chain link and the tree hashes happens after the lock is held,
and the lock is released by COMMIT. The next writer of the same project reads the head
only after that commit, so commit order is sequence order and no reader ever sees a
gap. Sequence numbers never come from a database sequence.
"""

from __future__ import annotations

import abc
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from ledger.canonical import compact_c_encoder

# Column order of every table the ledger writes. Rows are tuples in this order.
TABLES: dict[str, tuple[str, ...]] = {
    "entries": (
        "project", "seq", "event_id", "event_hash", "type", "actor", "instance_id",
        "image_id", "guideline", "recorded_at", "entry",
    ),
    "tree_hashes": ("project", "idx", "hash"),
    "actors": (
        "project", "actor_id", "kind", "roles", "skills", "organization", "display_name", "seq",
    ),
    "guidelines": ("project", "guideline_id", "version", "sha256", "title", "seq"),
    "categories": ("project", "category_id", "name", "supercategory", "seq"),
    "images": (
        "project", "image_id", "width", "height", "file_name", "sha256", "sequence_id",
        "frame_index", "seq",
    ),
    "instances": (
        "project", "instance_id", "image_id", "category_id", "revision", "deleted",
        "created_seq", "updated_seq", "review",
    ),
    "revisions": (
        "project", "instance_id", "revision", "seq", "op", "image_id", "category_id",
        "iscrowd", "segmentation", "area", "bbox", "actor", "guideline",
    ),
    "reviews": ("project", "seq", "instance_id", "revision", "reviewer", "decision", "reason"),
    "links": ("project", "parent", "child", "relation", "seq"),
    "releases": ("project", "name", "seq", "tree_size", "policy", "sha256"),
    "assignments": ("project", "seq", "instance_id", "revision", "assignee", "rule", "assigned_by"),
    "count_declarations": ("project", "seq", "image_id", "counts"),
    "materializations": ("project", "seq", "name", "manifest_sha256", "files", "target"),
}  # fmt: skip

#: mutable projections: rows replace the row with the same key
UPSERT_KEYS: dict[str, tuple[str, ...]] = {
    "actors": ("project", "actor_id"),
    "instances": ("project", "instance_id"),
}

#: projection tables, in the order ``projections check`` compares them
PROJECTION_TABLES = (
    "actors", "guidelines", "categories", "images", "instances", "revisions", "reviews",
    "links", "releases", "assignments", "count_declarations", "materializations",
)  # fmt: skip

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "actors": ("actor_id",),
    "guidelines": ("guideline_id", "version"),
    "categories": ("category_id",),
    "images": ("image_id",),
    "instances": ("instance_id",),
    "revisions": ("instance_id", "revision"),
    "reviews": ("seq",),
    "links": ("parent", "child"),
    "releases": ("name",),
    "assignments": ("seq",),
    "count_declarations": ("seq",),
    "materializations": ("seq",),
}


@dataclass(frozen=True)
class Head:
    project: str
    size: int
    last_leaf: bytes | None
    last_recorded_at: str | None


@dataclass
class WriteBatch:
    """Everything one append transaction writes, gathered before it is written."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        try:
            self.rows[table].append(row)
        except KeyError:  # the table's first row
            self.rows[table] = [row]

    def upserts(self, table: str) -> list[tuple[Any, ...]]:
        """Rows of a mutable table, the last one per key winning."""
        rows = self.rows.get(table, [])
        # Each row keeps the place of the first row with its key and the value of the last.
        key = _UPSERT_KEY_OF[table]
        last = {key(row): row for row in rows}
        return list(last.values())


def _key_getter(table: str) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """The key columns of a row of ``table``, as a tuple."""
    cols = TABLES[table]
    positions = [cols.index(k) for k in UPSERT_KEYS[table]]
    if len(positions) == 1:  # itemgetter of one item returns the item, not a 1-tuple
        (position,) = positions
        return lambda row: (row[position],)
    getter: Callable[[tuple[Any, ...]], tuple[Any, ...]] = operator.itemgetter(*positions)
    return getter


_UPSERT_KEY_OF = {table: _key_getter(table) for table in UPSERT_KEYS}


@dataclass(frozen=True)
class ExistingEvent:
    seq: int
    event_hash: bytes


class AppendTxn(abc.ABC):
    """Reads and the final write of one append, inside the project's lock."""

    project: str

    @abc.abstractmethod
    def head(self) -> Head:
        """The locked head; size 0 for a project with no entries yet."""

    @abc.abstractmethod
    def existing_events(self, event_ids: Sequence[str]) -> dict[str, ExistingEvent]: ...

    @abc.abstractmethod
    def rows(self, table: str, key: str, values: Iterable[Any]) -> list[dict[str, Any]]:
        """Rows of a projection table whose column ``key`` is one of ``values``."""

    @abc.abstractmethod
    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]: ...

    @abc.abstractmethod
    def write(self, batch: WriteBatch, head: Head) -> None: ...


class Store(abc.ABC):
    """A ledger database: the log, tree hashes and projections of every project."""

    dialect: str
    url: str

    @abc.abstractmethod
    def upgrade(self) -> list[str]:
        """Apply pending migrations; return the names applied."""

    @abc.abstractmethod
    def pending_migrations(self) -> list[str]: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def append_txn(
        self, project: str, event_ids: Sequence[str] = ()
    ) -> AbstractContextManager[AppendTxn]:
        """Open a transaction holding the project's append lock. Commits on normal
        exit, rolls back on an exception. ``event_ids``: the ids the append will ask
        ``existing_events`` about, which a client-server dialect reads in the same
        round trip as it takes the lock."""

    # --- reads -----------------------------------------------------------------
    @abc.abstractmethod
    def head(self, project: str) -> Head | None: ...

    @abc.abstractmethod
    def projects(self) -> list[Head]: ...

    @abc.abstractmethod
    def iter_entries(
        self, project: str, start: int = 0, end: int | None = None, page: int = 5000
    ) -> Iterator[tuple[int, bytes]]:
        """(seq, entry bytes) in sequence order, ``start <= seq < end``, read in pages."""

    @abc.abstractmethod
    def iter_tree_hashes(
        self, project: str, start: int = 0, end: int | None = None, page: int = 20000
    ) -> Iterator[tuple[int, bytes]]:
        """(stored index, hash) in index order."""

    @abc.abstractmethod
    def read_hashes(self, project: str, indexes: Sequence[int]) -> list[bytes]: ...

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """A read-only query written with ``?`` placeholders (projection reads)."""

    @abc.abstractmethod
    def query_rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Like :meth:`query`, but rows as plain tuples, fetched the fastest way the
        driver has (binary format on PostgreSQL): for bulk reads such as verification."""

    @abc.abstractmethod
    def iter_query(
        self, sql: str, params: Sequence[Any] = (), page: int = 5000
    ) -> Iterator[dict[str, Any]]:
        """Stream the rows of a read-only query without holding them all in memory."""

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write statement (``?`` placeholders) in its own transaction and
        return the number of rows it changed. For small writes outside the append
        path (checkpoints, published keys)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StorageUnavailable when the database cannot be reached."""


def _column_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# The C encoder that ``_column_json`` builds on every call, built once. Without the
# circular-reference check (its bookkeeping cannot be reused after an error), so a
# RecursionError is answered by ``_column_json`` itself, which then raises what it
# always raised.
_COLUMN_ENCODER = compact_c_encoder(allow_nan=True)


def dumps_column(value: Any) -> str:
    """JSON text for a projection column (sorted keys, compact, deterministic)."""
    if _COLUMN_ENCODER is None:
        return _column_json(value)
    try:
        return "".join(_COLUMN_ENCODER(value, 0))
    except RecursionError:
        return _column_json(value)
