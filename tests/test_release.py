"""Releases: created, exported byte for byte later, verified from the log alone."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import rfc8785

from ledger.asof import iter_instances, selected
from ledger.coco import export_bytes, export_state, write_to
from ledger.errors import Conflict, InvalidInput, NotFound, VerificationFailed
from ledger.events import ReleasePolicy
from ledger.releases import (
    create_release,
    export_release,
    get_release,
    list_releases,
    parse_policy,
    rebuild_export,
    verify_release,
)
from ledger.service import Ledger
from ledger.store import Store, open_store
from tests import factory as f
from tests.conftest import sqlite_url

P = "proj"


class Clock:
    """A server clock that moves one minute per append."""

    def __init__(self, start: datetime = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def make_ledger(store: Store) -> Ledger:
    return Ledger(store, clock=Clock())


def polygon() -> list[list[float]]:
    return [[10.5, 20.0, 40.25, 20.0, 40.0, 40.75, 12.0, 41.0]]


def base_events() -> list[dict[str, Any]]:
    return [
        *f.setup_events(),
        f.image("img-2", 32, 24),
        f.category(2, "person"),
        f.guideline("seg-guide", "2.0"),
        f.actor("model-x", "model"),
    ]


def scenario(ledger: Ledger) -> dict[str, int]:
    """A small project; returns named tree sizes.

    i0: accepted   i1: edited, then accepted   i2: rejected   i3: never reviewed
    i4: polygon, accepted   i5: on img-2, category 2, accepted   i6: deleted
    """
    ledger.append(P, base_events(), "t")  # 0..9
    ledger.append(
        P,
        [
            f.mask_created("i0"),
            f.mask_created("i1", segmentation=f.box_rle(x0=0, y0=0, x1=10, y1=10)),
            f.mask_created("i2", segmentation=f.box_rle(x0=30, y0=30, x1=50, y1=45)),
            f.mask_created("i3"),
            f.mask_created("i4", segmentation=polygon()),
            {
                **f.mask_created(
                    "i5",
                    image_id="img-2",
                    category_id=2,
                    actor_id="model-x",
                    segmentation=f.box_rle(24, 32, 2, 2, 9, 9),
                    score=0.75,
                ),
                "model": {"name": "sam", "version": "vit-h"},
            },
            f.mask_created("i6"),
        ],
        "t",
    )  # 10..16
    ledger.append(P, [f.mask_edited("i1", 1)], "t")  # 17
    ledger.append(
        P,
        [
            f.review("i0", 1),
            f.review("i1", 2),
            f.review("i2", 1, "reject"),
            f.review("i4", 1),
            f.review("i5", 1),
            f.mask_deleted("i6", 1),
        ],
        "t",
    )  # 18..23
    return {"created": 17, "reviewed": 24}


def later_changes(ledger: Ledger) -> None:
    """Edits, reviews and deletions after a release."""
    ledger.append(
        P,
        [
            f.mask_edited("i0", 1, segmentation=f.box_rle(x0=1, y0=1, x1=30, y1=30)),
            f.review("i3", 1),
            f.mask_deleted("i4", 1),
            f.review("i2", 1, "accept"),
            f.mask_edited("i5", 1, category_id=1),
            f.mask_created("i7"),
            f.review("i7", 1),
        ],
        "t",
    )


def built(store: Store) -> Ledger:
    """A ledger on ``store`` holding the scenario."""
    led = make_ledger(store)
    scenario(led)
    return led


@pytest.fixture
def lg(store: Store) -> Ledger:
    return built(store)


def test_release_records_the_hash_of_its_export(lg: Ledger) -> None:
    made = create_release(lg, P, "v1", actor="alice", principal="t")
    assert made.tree_size == 24 and made.seq == 24
    data = export_bytes(export_release(lg.store, P, "v1"))
    assert hashlib.sha256(data).hexdigest() == made.sha256
    doc = json.loads(data)
    assert [a["instance_id"] for a in doc["annotations"]] == ["i0", "i1", "i4", "i5"]
    assert doc["info"]["release"] == "v1" and doc["info"]["tree_size"] == 24
    assert "sha256" not in json.dumps(doc["info"]["policy"])
    assert get_release(lg.store, P, "v1") == made
    assert list_releases(lg.store, P) == [made]


def test_release_survives_later_edits_byte_for_byte(lg: Ledger) -> None:
    made = create_release(lg, P, "v1", actor="alice", principal="t")
    first = export_bytes(export_release(lg.store, P, "v1"))
    later_changes(lg)
    again = export_bytes(export_release(lg.store, P, "v1"))
    assert again == first
    assert hashlib.sha256(again).hexdigest() == made.sha256
    # the current state differs, and the as-of state at the release's size equals it
    now = json.loads(export_bytes(export_state(lg.store, P, lg.head(P).size, ReleasePolicy())))
    assert [a["instance_id"] for a in now["annotations"]] != [
        a["instance_id"] for a in json.loads(first)["annotations"]
    ]
    states = [s for s in iter_instances(lg.store, P, made.tree_size) if selected(s, made.policy)]
    annotations = json.loads(first)["annotations"]
    assert [(s.annotation_id, s.instance_id, s.revision) for s in states] == [
        (a["id"], a["instance_id"], a["revision"]) for a in annotations
    ]
    assert [s.segmentation for s in states] == [a["segmentation"] for a in annotations]
    check = verify_release(lg.store, P, "v1")
    assert check.ok, check.problems
    assert check.rebuilt_sha256 == made.sha256


def test_export_is_rfc8785_canonical(lg: Ledger) -> None:
    data = export_bytes(export_state(lg.store, P, 24, ReleasePolicy(selection="all")))
    assert rfc8785.dumps(json.loads(data)) == data
    assert not data.endswith(b"\n")


def test_rebuild_from_log_equals_projection_export(lg: Ledger) -> None:
    later_changes(lg)
    for selection in ("accepted", "all"):
        for categories in (None, (2,)):
            policy = ReleasePolicy(selection=selection, categories=categories)
            for size in (11, 17, 24, lg.head(P).size):
                from_projections = export_bytes(export_state(lg.store, P, size, policy, "r"))
                from_log = export_bytes(rebuild_export(lg.store, P, size, policy, "r"))
                assert from_log == from_projections, (selection, categories, size)


def test_policy_selects_reviews_and_categories(lg: Ledger) -> None:
    all_ = create_release(lg, P, "all", actor="alice", principal="t", policy=parse_policy("all"))
    people = create_release(
        lg, P, "people", actor="alice", principal="t", policy=parse_policy("accepted", [2]), at=24
    )
    doc_all = json.loads(export_bytes(export_release(lg.store, P, "all")))
    doc_people = json.loads(export_bytes(export_release(lg.store, P, "people")))
    assert [a["instance_id"] for a in doc_all["annotations"]] == [
        "i0", "i1", "i2", "i3", "i4", "i5",
    ]  # fmt: skip
    assert [a["instance_id"] for a in doc_people["annotations"]] == ["i5"]
    assert [c["id"] for c in doc_people["categories"]] == [2]
    assert doc_people["info"]["policy"] == {"categories": [2], "selection": "accepted"}
    assert all_.tree_size == 24 and people.tree_size == 24


def test_release_names_are_unique(lg: Ledger) -> None:
    create_release(lg, P, "v1", actor="alice", principal="t")
    with pytest.raises(Conflict, match="release 'v1' already exists in proj"):
        create_release(lg, P, "v1", actor="alice", principal="t", at=10)


BAD_CREATE: list[tuple[dict[str, Any], str]] = [
    ({"at": 99}, r"at: tree size must be an integer from 1 to 24"),
    ({"at": 0}, r"tree size must be an integer from 1 to 24"),
    ({"name": "bad name"}, r"payload.name: String should match pattern"),
    ({"actor": "no actor"}, r"actor: String should match pattern"),
]


def test_create_refuses_bad_input(lg: Ledger) -> None:
    for kwargs, match in BAD_CREATE:
        args: dict[str, Any] = {"actor": "alice", "principal": "t", **kwargs}
        name = args.pop("name", "v1")
        with pytest.raises(InvalidInput, match=match):
            create_release(lg, P, name, **args)
    assert list_releases(lg.store, P) == []


def test_parse_policy_refuses_unknown_selection() -> None:
    with pytest.raises(
        InvalidInput, match=r"policy.selection: Input should be 'accepted' or 'all'"
    ):
        parse_policy("some")
    with pytest.raises(InvalidInput, match=r"policy.categories\[0\]: Input should be greater"):
        parse_policy("all", [0])


def test_unknown_release_and_project(lg: Ledger) -> None:
    with pytest.raises(NotFound, match="release 'nope' does not exist in proj"):
        export_release(lg.store, P, "nope")
    with pytest.raises(NotFound, match="release 'nope' does not exist in proj"):
        verify_release(lg.store, P, "nope")
    with pytest.raises(NotFound, match="project other does not exist"):
        list_releases(lg.store, "other")


def tamper(url: str, table: str, sql: str, params: tuple[object, ...]) -> None:
    """Run SQL as the owner with the append-only triggers of ``table`` off."""
    if url.startswith("sqlite"):
        lite = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            for (name,) in lite.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", (table,)
            ).fetchall():
                lite.execute(f"DROP TRIGGER {name}")
            lite.execute(sql, params)
            lite.commit()
        finally:
            lite.close()
    else:
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            pg.execute(sql.replace("?", "%s"), params)


def test_verify_detects_a_changed_entry(lg: Ledger, db_url: str) -> None:
    create_release(lg, P, "v1", actor="alice", principal="t")
    raw = dict(lg.store.iter_entries(P, 10, 11))[10]
    changed = raw.replace(b'"category_id":1', b'"category_id":2')
    assert changed != raw
    tamper(
        db_url,
        "entries",
        "UPDATE entries SET entry = ? WHERE project = ? AND seq = 10",
        (changed, P),
    )
    with pytest.raises(VerificationFailed, match="entry 11: does not link to the leaf hash"):
        verify_release(lg.store, P, "v1")


def test_verify_detects_a_rewritten_log_tail(lg: Ledger, db_url: str) -> None:
    """The last entry before the release size changed: no later link notices, the
    root and the export hash do."""
    made = create_release(lg, P, "v1", actor="alice", principal="t")
    raw = dict(lg.store.iter_entries(P, 23, 24))[23]
    changed = raw.replace(b'"instance_id":"i6"', b'"instance_id":"i0"')
    tamper(
        db_url,
        "entries",
        "UPDATE entries SET entry = ? WHERE project = ? AND seq = 23",
        (changed, P),
    )
    check = verify_release(lg.store, P, "v1")
    assert not check.ok
    assert check.rebuilt_sha256 != made.sha256
    assert any("differs from the stored tree hashes" in p for p in check.problems)
    assert any(f"the release event recorded {made.sha256}" in p for p in check.problems)


def test_export_detects_a_changed_projection(lg: Ledger, db_url: str) -> None:
    made = create_release(lg, P, "v1", actor="alice", principal="t")
    tamper(
        db_url,
        "revisions",
        "UPDATE revisions SET area = 1 WHERE project = ? AND instance_id = 'i0'",
        (P,),
    )
    written = write_to(export_release(lg.store, P, "v1"))
    assert written.sha256 != made.sha256
    # the log itself is intact: verification rebuilds the original bytes
    assert verify_release(lg.store, P, "v1").ok


def test_same_events_same_bytes_on_sqlite_and_postgresql(
    tmp_path: Path, pg_url_factory: Callable[[], str]
) -> None:
    events_a = base_events()
    events_b = [
        f.mask_created("a", segmentation=polygon()),
        f.mask_created("b", segmentation=f.box_rle(x0=3, y0=4, x1=50, y1=40)),
        f.mask_created("c", image_id="img-2", category_id=2, segmentation=f.box_rle(24, 32)),
    ]
    events_c = [f.review("a", 1), f.review("c", 1), f.mask_edited("b", 1)]
    outputs = []
    for url in (sqlite_url(tmp_path), pg_url_factory()):
        store = open_store(url, upgrade=url.startswith("sqlite"))
        try:
            led = make_ledger(store)
            for batch in (events_a, events_b, events_c):
                led.append(P, batch, "t")
            made = create_release(
                led, P, "v1", actor="alice", principal="t", policy=parse_policy("all")
            )
            data = export_bytes(export_release(store, P, "v1"))
            assert verify_release(store, P, "v1").ok
            outputs.append((made.sha256, data))
        finally:
            store.close()
    assert outputs[0] == outputs[1]
    assert hashlib.sha256(outputs[0][1]).hexdigest() == outputs[0][0]
