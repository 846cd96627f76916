"""Changes made behind the ledger's back are found by `verify`, at the right entry."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import psycopg
import pytest

from ledger.merkle import leaf_hash, stored_hash_index
from ledger.service import Ledger
from ledger.store import Store
from ledger.verify import verify_log
from tests import factory as f

P = "proj"


def owner_sql(url: str, sql: str, params: tuple[object, ...] = ()) -> None:
    """Run SQL as the owner with the append-only triggers switched off."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            names = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
            ]
            for name in names:
                conn.execute(f"DROP TRIGGER {name}")
            conn.execute(sql, params)
            conn.commit()
        finally:
            conn.close()
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE entries DISABLE TRIGGER USER")
            conn.execute("ALTER TABLE tree_hashes DISABLE TRIGGER USER")
            conn.execute(sql.replace("?", "%s"), params)


def build(ledger: Ledger) -> None:
    ledger.append(P, f.setup_events(), "t")
    ledger.append(P, [f.mask_created(f"i{k}") for k in range(6)], "t")  # 12 entries


def entry(store: Store, seq: int) -> bytes:
    return dict(store.iter_entries(P))[seq]


Tamper = Callable[[Store, str], None]


def change_bytes(store: Store, url: str) -> None:
    raw = entry(store, 7).replace(b'"i1"', b'"i9"')
    owner_sql(url, "UPDATE entries SET entry = ? WHERE project = ? AND seq = 7", (raw, P))


def change_bytes_and_leaf(store: Store, url: str) -> None:
    raw = entry(store, 7).replace(b'"i1"', b'"i9"')
    owner_sql(url, "UPDATE entries SET entry = ? WHERE project = ? AND seq = 7", (raw, P))
    owner_sql(
        url,
        "UPDATE tree_hashes SET hash = ? WHERE project = ? AND idx = ?",
        (leaf_hash(raw), P, stored_hash_index(0, 7)),
    )


def delete_row(store: Store, url: str) -> None:
    owner_sql(url, "DELETE FROM entries WHERE project = ? AND seq = 5", (P,))


def swap_rows(store: Store, url: str) -> None:
    a, b = entry(store, 3), entry(store, 4)
    owner_sql(url, "UPDATE entries SET entry = ? WHERE project = ? AND seq = 3", (b, P))
    owner_sql(url, "UPDATE entries SET entry = ? WHERE project = ? AND seq = 4", (a, P))


def insert_row(store: Store, url: str) -> None:
    raw = entry(store, 11)
    owner_sql(
        url,
        "INSERT INTO entries (project, seq, event_id, event_hash, type, actor, recorded_at, entry)"
        " VALUES (?, 12, 'x', ?, 'mask.created', 'alice', '2026', ?)",
        (P, b"0" * 32, raw),
    )


def truncate_tail(store: Store, url: str) -> None:
    owner_sql(url, "DELETE FROM entries WHERE project = ? AND seq >= 10", (P,))


CASES: list[tuple[str, Tamper, int, str]] = [
    ("changed entry bytes", change_bytes, 7, "leaf"),
    ("changed bytes and leaf hash", change_bytes_and_leaf, 7, "tree"),
    ("deleted entry", delete_row, 5, "missing"),
    ("swapped entries", swap_rows, 3, "sequence"),
    ("inserted entry", insert_row, 12, "beyond-head"),
    ("truncated tail", truncate_tail, 10, "missing"),
]


@pytest.mark.parametrize(("case", "tamper", "seq", "kind"), CASES, ids=[c[0] for c in CASES])
def test_verify_names_the_first_bad_entry(
    ledger: Ledger, store: Store, db_url: str, case: str, tamper: Tamper, seq: int, kind: str
) -> None:
    build(ledger)
    assert verify_log(store, P).ok
    tamper(store, db_url)
    report = verify_log(store, P)
    assert not report.ok
    failure = report.first_failure
    assert failure is not None
    assert (failure.seq, failure.kind) == (seq, kind), str(failure)
