"""``ledger projections check``: rebuild every projection from the log and compare.

The log is read as stored bytes, each entry parsed (``parse_entry``, ``parse_event``)
and replayed through the same :class:`~ledger.projector.Projector` the append path
uses, starting from an empty state. The rows it produces are the projections as the
log says they must be; every stored projection row of the project is then compared
with them, table by table, key by key. A row changed, added or removed behind the
ledger's back is reported with its table, key and column.

Columns that hold JSON text are compared as JSON values: the append path writes the
value as submitted (``20.0``) and the replay the value as the canonical entry holds it
(``20``); both are the same number.

Memory grows with the size of the projections (the rebuilt rows are held to compare
with), not with the length of the log: the replay folds its output every few thousand
entries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ledger.asof import log_size
from ledger.entry import MalformedEntry, parse_entry
from ledger.errors import Conflict, InvalidInput, NotFound, VerificationFailed
from ledger.events import parse_event
from ledger.projector import EmptyLoader, Projector
from ledger.store.base import (
    PRIMARY_KEYS,
    PROJECTION_TABLES,
    TABLES,
    UPSERT_KEYS,
    Store,
    WriteBatch,
)

Progress = Callable[[int, int], None]
_FOLD_EVERY = 5000
#: projection columns holding JSON text
_JSON_COLUMNS = frozenset({"roles", "skills", "segmentation", "bbox", "policy"})
_PAGE = 5000


@dataclass(frozen=True)
class Difference:
    table: str
    key: tuple[Any, ...]
    #: "changed": the stored row differs; "extra": stored but not in the log;
    #: "missing": in the log but not stored
    kind: str
    column: str | None = None
    stored: Any = None
    rebuilt: Any = None

    def __str__(self) -> str:
        where = f"{self.table} row {', '.join(map(repr, self.key))}"
        if self.kind == "changed":
            return (
                f"{where}: column {self.column} is {self.stored!r} in the store but "
                f"{self.rebuilt!r} when rebuilt from the log"
            )
        if self.kind == "extra":
            return f"{where} is stored but no entry of the log makes it"
        return f"{where} follows from the log but is not stored"


@dataclass
class ProjectionReport:
    project: str
    size: int
    rows: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    #: all differences found (``differences`` keeps the first ``limit``)
    total: int = 0

    @property
    def ok(self) -> bool:
        return self.total == 0

    @property
    def first(self) -> Difference | None:
        return self.differences[0] if self.differences else None


def _key_of(table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    cols = TABLES[table]
    return tuple(row[cols.index(k)] for k in PRIMARY_KEYS[table])


def _fold(batch: WriteBatch, rebuilt: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]) -> None:
    for table, rows in batch.rows.items():
        if table not in rebuilt:
            continue
        out = rebuilt[table]
        for row in batch.upserts(table) if table in UPSERT_KEYS else rows:
            out[_key_of(table, row)] = row


def rebuild_projections(
    store: Store, project: str, size: int | None = None, progress: Progress | None = None
) -> dict[str, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """Projection rows of ``project`` rebuilt from its first ``size`` entries, by table
    and primary key (without the project column)."""
    total = size if size is not None else log_size(store, project)
    rebuilt: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {t: {} for t in PROJECTION_TABLES}
    projector = Projector(project, EmptyLoader(), 0)
    expected = 0
    for seq, raw in store.iter_entries(project, 0, total):
        if seq != expected:
            raise VerificationFailed(f"entry {expected}: missing from the log")
        expected += 1
        try:
            entry = parse_entry(raw)
            parsed = parse_event(entry.event, loc=f"entry {seq}")
            projector.apply(seq, parsed, f"entry {seq}: ")
        except (MalformedEntry, InvalidInput, Conflict, NotFound) as e:
            raise VerificationFailed(f"entry {seq} cannot be replayed: {e}") from e
        if expected % _FOLD_EVERY == 0:
            _fold(projector.batch, rebuilt)
            projector.batch = WriteBatch()
            if progress is not None:
                progress(expected, total)
    if expected != total:
        raise VerificationFailed(f"entry {expected}: missing from the log")
    _fold(projector.batch, rebuilt)
    if progress is not None:
        progress(total, total)
    return rebuilt


def _stored_rows(store: Store, project: str, table: str) -> Iterator[tuple[Any, ...]]:
    """Stored rows of one table, in primary-key order, by keyset pages."""
    cols = TABLES[table]
    keys = PRIMARY_KEYS[table]
    order = ", ".join(keys)
    after: tuple[Any, ...] | None = None
    while True:
        cond = ""
        params: tuple[Any, ...] = (project,)
        if after is not None:
            cond = f" AND ({order}) > ({', '.join('?' * len(keys))})"
            params += after
        rows = store.query(
            f"SELECT {', '.join(cols)} FROM {table} WHERE project = ?{cond}"
            f" ORDER BY {order} LIMIT ?",
            (*params, _PAGE),
        )
        for r in rows:
            yield tuple(r[c] for c in cols)
        if len(rows) < _PAGE:
            return
        last = rows[-1]
        after = tuple(last[k] for k in keys)


def _same_json(column: str, a: Any, b: Any) -> bool:
    if column not in _JSON_COLUMNS or not isinstance(a, str) or not isinstance(b, str):
        return False
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return False


def _sort_key(key: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(f"{type(v).__name__}:{v:020d}" if isinstance(v, int) else str(v) for v in key)


def check_projections(
    store: Store, project: str, progress: Progress | None = None, limit: int = 100
) -> ProjectionReport:
    """Compare every stored projection row of ``project`` with the log's replay."""
    size = log_size(store, project)
    rebuilt = rebuild_projections(store, project, size, progress)
    report = ProjectionReport(project, size)
    found: list[Difference] = []
    for table in PROJECTION_TABLES:
        expected = rebuilt[table]
        seen: set[tuple[Any, ...]] = set()
        cols = TABLES[table]
        count = 0
        for row in _stored_rows(store, project, table):
            count += 1
            key = _key_of(table, row)
            seen.add(key)
            want = expected.get(key)
            if want is None:
                found.append(Difference(table, key, "extra"))
                continue
            for col, have, should in zip(cols, row, want, strict=True):
                if have != should and not _same_json(col, have, should):
                    found.append(Difference(table, key, "changed", col, have, should))
                    break
        report.rows[table] = count
        found.extend(Difference(table, k, "missing") for k in expected if k not in seen)
    order = {t: i for i, t in enumerate(PROJECTION_TABLES)}
    found.sort(key=lambda d: (order[d.table], _sort_key(d.key)))
    report.total = len(found)
    report.differences = found[:limit]
    return report
