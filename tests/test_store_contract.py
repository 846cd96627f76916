"""The storage contract: every test here runs against SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from ledger.entry import parse_entry
from ledger.errors import Conflict, InvalidInput, LedgerError, NotFound, StorageError
from ledger.merkle import leaf_hash, root_from_leaves, tree_hash
from ledger.service import Ledger
from ledger.store import Store
from ledger.verify import verify_log
from tests import factory as f

P = "proj"


def seeded(ledger: Ledger, project: str = P) -> int:
    return ledger.append(project, f.setup_events(), "test").size


def size(store: Store, project: str = P) -> int:
    head = store.head(project)
    return head.size if head else 0


def test_append_assigns_dense_sequence_numbers_and_chains(ledger: Ledger, store: Store) -> None:
    result = ledger.append(P, f.setup_events(), "tester")
    assert [r.seq for r in result.results] == list(range(6))
    assert not any(r.duplicate for r in result.results)
    more = ledger.append(P, [f.mask_created("a"), f.mask_created("b")], "tester")
    assert [r.seq for r in more.results] == [6, 7]
    entries = list(store.iter_entries(P))
    assert [s for s, _ in entries] == list(range(8))
    prev = None
    for seq, raw in entries:
        e = parse_entry(raw)
        assert e.seq == seq and e.project == P and e.principal == "tester"
        assert e.prev == prev
        prev = leaf_hash(raw)
    assert root_from_leaves(leaf_hash(raw) for _, raw in entries) == more.root
    assert tree_hash(8, lambda idx: store.read_hashes(P, idx)) == more.root


def test_recorded_at_never_decreases(store: Store) -> None:
    from datetime import UTC, datetime

    times = iter([datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)])
    ledger = Ledger(store, clock=lambda: next(times))
    ledger.append(P, f.setup_events()[:2], "t")
    ledger.append(P, f.setup_events()[1:2], "t")
    stamps = [parse_entry(raw).recorded_at for _, raw in store.iter_entries(P)]
    assert stamps == sorted(stamps) and stamps[-1] == "2026-01-02T00:00:00.000000Z"


def test_stored_event_is_normalised_and_bytes_are_canonical(ledger: Ledger, store: Store) -> None:
    from ledger.canonical import canonical_bytes

    ledger.append(P, f.setup_events(), "t")
    for _, raw in store.iter_entries(P):
        assert canonical_bytes(json.loads(raw)) == raw


def test_idempotent_retry_returns_original_sequence(ledger: Ledger, store: Store) -> None:
    seeded(ledger)
    ev = f.mask_created("a")
    first = ledger.append(P, [ev], "t")
    again = ledger.append(P, [ev], "t")
    assert again.results[0].seq == first.results[0].seq == 6
    assert again.results[0].duplicate and again.appended == 0
    assert size(store) == 7
    # a batch mixing a retried event and a new one appends only the new one
    mixed = ledger.append(P, [ev, f.mask_created("b")], "t")
    assert [(r.seq, r.duplicate) for r in mixed.results] == [(6, True), (7, False)]


def test_reused_uuid_with_other_content_is_a_conflict(ledger: Ledger, store: Store) -> None:
    seeded(ledger)
    ev = f.mask_created("a")
    ledger.append(P, [ev], "t")
    changed = dict(ev, payload=dict(ev["payload"], instance_id="other"))
    with pytest.raises(Conflict, match=r"already used for different content \(entry 6\)"):
        ledger.append(P, [changed], "t")
    assert size(store) == 7


def test_batch_is_atomic_and_names_the_bad_event(ledger: Ledger, store: Store) -> None:
    seeded(ledger)
    bad = f.mask_created("b", image_id="no-such-image")
    with pytest.raises(
        InvalidInput, match=r"events\[1\]\.payload\.image_id: image 'no-such-image'"
    ):
        ledger.append(P, [f.mask_created("a"), bad, f.mask_created("c")], "t")
    assert size(store) == 6
    assert store.query("SELECT COUNT(*) AS n FROM instances WHERE project = ?", (P,))[0]["n"] == 0


def test_shape_errors_name_every_bad_field(ledger: Ledger, store: Store) -> None:
    seeded(ledger)
    a = f.mask_created("a")
    a["payload"]["category_id"] = "one"
    b = f.mask_created("b")
    del b["guideline"]
    with pytest.raises(InvalidInput) as info:
        ledger.append(P, [a, b], "t")
    locs = [e.loc for e in info.value.errors]
    assert "events[0].payload.category_id" in locs
    assert any(loc.startswith("events[1]") for loc in locs)
    assert "guideline version" in str(info.value)
    assert size(store) == 6


def test_events_in_one_batch_may_depend_on_each_other(ledger: Ledger) -> None:
    events = [*f.setup_events(), f.mask_created("a"), f.mask_edited("a", 1), f.review("a", 2)]
    result = ledger.append(P, events, "t")
    assert result.size == 9


def test_project_must_exist_and_be_created_once(ledger: Ledger, store: Store) -> None:
    with pytest.raises(NotFound, match="project proj does not exist"):
        ledger.append(P, [f.actor("alice")], "t")
    assert store.head(P) is None or size(store) == 0
    seeded(ledger)
    with pytest.raises(Conflict, match="already exists"):
        ledger.append(P, [f.project_created()], "t")


REFUSALS: list[tuple[str, Any, type[LedgerError], str]] = [
    ("unregistered actor", lambda: f.mask_created("x", actor_id="nobody"), InvalidInput,
     r"events\[0\]\.actor: actor 'nobody' is not registered"),
    ("reviewer may not annotate", lambda: f.mask_created("x", actor_id="rita"), InvalidInput,
     r"actor 'rita' \(reviewer\) may not annotate"),
    ("annotator may not review", lambda: f.review("inst-1", 1, actor_id="alice"), InvalidInput,
     r"actor 'alice' \(annotator\) may not review"),
    ("unpublished guideline", lambda: dict(f.mask_created("x"), guideline={"id": "g", "version": "9"}),
     InvalidInput, r"events\[0\]\.guideline: guideline g@9 has not been published"),
    ("unregistered image", lambda: f.mask_created("x", image_id="nope"), InvalidInput,
     r"payload\.image_id: image 'nope' is not registered"),
    ("undefined category", lambda: f.mask_created("x", category_id=7), InvalidInput,
     r"payload\.category_id: category 7 is not defined"),
    ("mask size differs from image", lambda: f.mask_created("x", segmentation=f.box_rle(height=40)),
     InvalidInput, r"payload\.segmentation\.size"),
    ("empty mask", lambda: f.mask_created("x", segmentation={"size": [48, 64], "counts": "`a0"}),
     InvalidInput, r"payload\.segmentation"),
    ("undecodable counts", lambda: f.mask_created("x", segmentation={"size": [48, 64], "counts": "\x7f\x7f"}),
     InvalidInput, r"payload\.segmentation\.counts"),
    ("polygon with NaN", lambda: f.mask_created("x", segmentation=[[1, 1, 10, 1, float("nan"), 10]]),
     InvalidInput, r"payload\.segmentation"),
    ("polygon with 4 coordinates", lambda: f.mask_created("x", segmentation=[[1, 1, 10, 10]]),
     InvalidInput, r"payload\.segmentation\[0\]"),
    ("polygon outside the image", lambda: f.mask_created("x", segmentation=[[1, 1, 100, 1, 100, 10]]),
     InvalidInput, r"payload\.segmentation\[0\]"),
    ("duplicate instance", lambda: f.mask_created("inst-1"), Conflict, "instance 'inst-1' already exists"),
    ("edit of unknown instance", lambda: f.mask_edited("ghost", 1), InvalidInput,
     r"payload\.instance_id: instance 'ghost' does not exist"),
    ("stale edit", lambda: f.mask_edited("inst-1", 2), Conflict,
     "stale revision: instance 'inst-1' is at revision 1, the event names revision 2"),
    ("stale delete", lambda: f.mask_deleted("inst-1", 3), Conflict, "stale revision"),
    ("stale review", lambda: f.review("inst-1", 5), Conflict, "stale revision"),
    ("review of unknown instance", lambda: f.review("ghost", 1), InvalidInput, "does not exist"),
    ("unknown parent", lambda: f.mask_created("x", parents=["ghost"], relation="split"), InvalidInput,
     r"payload\.parents\[0\]: instance 'ghost' does not exist"),
    ("republished guideline", lambda: f.guideline(), Conflict, "seg-guide@1.0 is already published"),
    ("redefined category", lambda: f.category(1, "truck"), Conflict, "category 1 is already defined"),
    ("re-registered image", lambda: f.image(), Conflict, "image 'img-1' is already registered"),
    ("unknown event type", lambda: f.event("mask.exploded", {}), InvalidInput, r"events\[0\]\.type"),
    ("extra envelope field", lambda: dict(f.mask_created("x"), colour="red"), InvalidInput,
     r"events\[0\]\.colour"),
    ("naive client time", lambda: dict(f.mask_created("x"), client_time="2026-01-01T00:00:00"),
     InvalidInput, r"events\[0\]\.client_time"),
    ("bad uuid", lambda: dict(f.mask_created("x"), id="not-a-uuid"), InvalidInput, r"events\[0\]\.id"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "error", "match"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_every_rule_refuses_and_appends_nothing(
    ledger: Ledger, store: Store, case: str, make: Any, error: type[LedgerError], match: str
) -> None:
    seeded(ledger)
    ledger.append(P, [f.mask_created("inst-1")], "t")
    before = list(store.iter_entries(P))
    before_instances = store.query("SELECT * FROM instances WHERE project = ?", (P,))
    with pytest.raises(error, match=match):
        ledger.append(P, [make()], "t")
    assert list(store.iter_entries(P)) == before
    assert store.query("SELECT * FROM instances WHERE project = ?", (P,)) == before_instances


def test_revisions_and_current_state_projection(ledger: Ledger, store: Store) -> None:
    seeded(ledger)
    ledger.append(P, [f.mask_created("a"), f.review("a", 1, "reject")], "t")
    ledger.append(P, [f.mask_edited("a", 1, category_id=1, segmentation=f.box_rle(x1=30))], "t")
    ledger.append(P, [f.review("a", 2, "accept")], "t")
    inst = store.query("SELECT * FROM instances WHERE project = ? AND instance_id = 'a'", (P,))[0]
    assert (inst["revision"], inst["review"], inst["deleted"]) == (2, "accept", 0)
    revs = store.query(
        "SELECT revision, seq, op, area FROM revisions WHERE project = ? ORDER BY revision", (P,)
    )
    assert [(r["revision"], r["op"]) for r in revs] == [(1, "created"), (2, "edited")]
    assert revs[0]["area"] == 150 and revs[1]["area"] == 250
    ledger.append(P, [f.mask_deleted("a", 2)], "t")
    inst = store.query("SELECT * FROM instances WHERE project = ? AND instance_id = 'a'", (P,))[0]
    assert (inst["revision"], inst["deleted"], inst["review"]) == (3, 1, None)
    with pytest.raises(Conflict, match="was deleted"):
        ledger.append(P, [f.mask_edited("a", 3)], "t")


def test_projects_do_not_share_state(ledger: Ledger, store: Store) -> None:
    seeded(ledger, "one")
    seeded(ledger, "two")
    ledger.append("one", [f.mask_created("a")], "t")
    ledger.append("two", [f.mask_created("a")], "t")  # same instance id, other project
    assert size(store, "one") == size(store, "two") == 7
    assert [h.project for h in store.projects()] == ["one", "two"]


def test_invalid_project_names_are_refused(ledger: Ledger) -> None:
    for bad in ["", "UPPER", "a b", "x" * 65, "../etc"]:
        with pytest.raises(InvalidInput, match="project names are"):
            ledger.append(bad, f.setup_events(), "t")


def test_batch_limit(store: Store) -> None:
    ledger = Ledger(store, max_batch=3)
    with pytest.raises(InvalidInput, match="batch of 6 events exceeds the limit of 3"):
        ledger.append(P, f.setup_events(), "t")


@pytest.mark.parametrize("statement", [
    "UPDATE entries SET actor = 'mallory'",
    "DELETE FROM entries WHERE seq = 2",
    "DELETE FROM entries",
    "UPDATE tree_hashes SET hash = hash",
    "DELETE FROM revisions",
    "TRUNCATE entries",
    "TRUNCATE tree_hashes",
])  # fmt: skip
def test_log_tables_refuse_changes_through_sql(
    ledger: Ledger, store: Store, db_url: str, statement: str
) -> None:
    seeded(ledger)
    ledger.append(P, [f.mask_created("a")], "t")
    before = list(store.iter_entries(P))
    if statement.startswith("TRUNCATE") and store.dialect == "sqlite":
        pytest.skip("SQLite has no TRUNCATE (DELETE without WHERE is covered)")
    with pytest.raises(Exception, match="append-only"):
        _raw_execute(db_url, statement)
    assert list(store.iter_entries(P)) == before
    assert verify_log(store, P).ok


def _raw_execute(url: str, sql: str) -> None:
    """Run SQL as the database owner, outside the ledger."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            conn.executescript(sql)
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.encode())


def test_storage_errors_are_translated(store: Store) -> None:
    with pytest.raises(StorageError):
        store.query("SELECT * FROM no_such_table")


def test_iter_query_yields_every_row_in_order_across_pages(ledger: Ledger, store: Store) -> None:
    ledger.append(P, [*f.setup_events(), *(f.mask_created(f"i{k}") for k in range(5))], "t")
    sql = "SELECT seq, event_id FROM entries WHERE project = ? ORDER BY seq"
    rows = list(store.iter_query(sql, (P,), page=3))
    assert [r["seq"] for r in rows] == list(range(11))
    assert rows == store.query(sql, (P,))
    assert list(store.iter_query(sql, ("no such project",), page=3)) == []


@pytest.mark.postgres
def test_iter_query_on_postgresql_streams_from_a_server_side_cursor(
    pg_url_factory: Callable[[], str],
) -> None:
    """The result stays on the server: while a caller is between pages, its session is
    inside the transaction of a declared cursor, fetching a page at a time."""
    import psycopg

    from ledger.store import open_store

    url = pg_url_factory()
    store = open_store(url)
    try:
        Ledger(store).append(P, f.setup_events(), "t")
        rows = store.iter_query("SELECT seq FROM entries WHERE project = ? ORDER BY seq", (P,), 2)
        assert next(rows)["seq"] == 0
        with psycopg.connect(url, autocommit=True) as watcher:
            seen = watcher.execute(
                "SELECT state, query FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND query LIKE 'FETCH%%ledger_iter_query%%'"
            ).fetchall()
        assert [state for state, _ in seen] == ["idle in transaction"], seen
        assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    finally:
        store.close()
