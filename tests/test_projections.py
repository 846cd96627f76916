"""`projections check`: the log's replay against the stored projections."""

from __future__ import annotations

import pytest

from ledger.errors import VerificationFailed
from ledger.rebuild import check_projections
from ledger.releases import create_release
from ledger.service import Ledger
from ledger.store import Store
from tests.test_release import P, built, later_changes, tamper


@pytest.fixture
def lg(store: Store) -> Ledger:
    return built(store)


def test_untouched_projections_match(lg: Ledger) -> None:
    later_changes(lg)
    create_release(lg, P, "v1", actor="alice", principal="t")
    report = check_projections(lg.store, P)
    assert report.ok and report.total == 0 and report.first is None
    assert report.rows["revisions"] == 13 and report.rows["releases"] == 1
    assert report.rows["instances"] == 8 and report.rows["reviews"] == 8


@pytest.mark.parametrize(
    ("table", "sql", "expected"),
    [
        (
            "revisions",
            "UPDATE revisions SET area = 7 WHERE project = ? AND instance_id = 'i2'",
            "revisions row 'i2', 1: column area is 7 in the store but 300 when rebuilt from the log",
        ),
        (
            "instances",
            "UPDATE instances SET review = 'accept' WHERE project = ? AND instance_id = 'i3'",
            "instances row 'i3': column review is 'accept' in the store but None when rebuilt",
        ),
        (
            "reviews",
            "DELETE FROM reviews WHERE project = ? AND seq = 20",
            "reviews row 20 follows from the log but is not stored",
        ),
        (
            "links",
            "INSERT INTO links (project, parent, child, relation, seq) VALUES (?, 'i0', 'i1', 'split', 11)",
            "links row 'i0', 'i1' is stored but no entry of the log makes it",
        ),
        (
            "categories",
            "UPDATE categories SET name = 'truck' WHERE project = ? AND category_id = 1",
            "categories row 1: column name is 'truck' in the store but 'car'",
        ),
    ],
)
def test_a_row_changed_behind_the_ledgers_back_is_named(
    lg: Ledger, db_url: str, table: str, sql: str, expected: str
) -> None:
    tamper(db_url, table, sql, (P,))
    report = check_projections(lg.store, P)
    assert not report.ok and report.total == 1
    assert str(report.first).startswith(expected)


def test_differences_are_ordered_and_limited(lg: Ledger, db_url: str) -> None:
    tamper(db_url, "revisions", "UPDATE revisions SET actor = 'mallory' WHERE project = ?", (P,))
    tamper(
        db_url,
        "actors",
        "UPDATE actors SET kind = 'model' WHERE project = ? AND actor_id = 'rita'",
        (P,),
    )
    report = check_projections(lg.store, P, limit=3)
    assert report.total == 10 and len(report.differences) == 3
    assert str(report.first).startswith("actors row 'rita': column kind")
    assert [d.key for d in report.differences[1:]] == [("i0", 1), ("i1", 1)]


def test_a_log_that_cannot_be_replayed(lg: Ledger, db_url: str) -> None:
    raw = dict(lg.store.iter_entries(P, 17, 18))[17]
    broken = raw.replace(b'"revision":1', b'"revision":5')
    tamper(
        db_url,
        "entries",
        "UPDATE entries SET entry = ? WHERE project = ? AND seq = 17",
        (broken, P),
    )
    with pytest.raises(VerificationFailed, match=r"entry 17 cannot be replayed: stale revision"):
        check_projections(lg.store, P)
