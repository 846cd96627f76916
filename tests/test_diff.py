"""Diffs between releases and tree sizes: added, removed, changed, with who and when."""

from __future__ import annotations

import pytest

from ledger.diff import diff, parse_side, release_side, size_side, summarize
from ledger.errors import InvalidInput, NotFound
from ledger.events import ReleasePolicy
from ledger.releases import create_release
from ledger.service import Ledger
from ledger.store import Store
from tests.test_release import P, built, later_changes


@pytest.fixture
def lg(store: Store) -> Ledger:
    return built(store)


def test_diff_between_two_releases(lg: Ledger) -> None:
    create_release(lg, P, "v1", actor="alice", principal="t")
    later_changes(lg)
    create_release(lg, P, "v2", actor="alice", principal="t")
    changes = {
        c.instance_id: c
        for c in diff(lg.store, P, release_side(lg.store, P, "v1"), release_side(lg.store, P, "v2"))
    }
    assert {k: (c.kind, c.changes) for k, c in changes.items()} == {
        "i0": ("removed", ("unselected",)),  # edited: its accept no longer holds
        "i2": ("added", ()),  # rejected, then accepted
        "i3": ("added", ()),  # accepted for the first time
        "i4": ("removed", ("deleted",)),
        "i5": ("removed", ("unselected",)),  # its category edit cleared the review
        "i7": ("added", ()),
    }
    assert (changes["i4"].actor, changes["i4"].seq) == ("alice", 27)
    assert (changes["i3"].actor, changes["i3"].seq) == ("rita", 26)
    assert (changes["i0"].actor, changes["i0"].seq) == ("alice", 25)
    assert changes["i4"].recorded_at is not None and changes["i4"].recorded_at.startswith(
        "2026-11-02T08:06"
    )
    assert (changes["i7"].actor, changes["i7"].seq) == ("rita", 31)
    assert changes["i5"].before is not None and changes["i5"].after is not None
    assert (changes["i5"].before.category_id, changes["i5"].after.category_id) == (2, 1)
    counts = summarize(list(changes.values()))
    assert (counts.added, counts.removed, counts.changed) == (3, 3, 0)


def test_diff_between_tree_sizes(lg: Ledger) -> None:
    changes = list(diff(lg.store, P, size_side(lg.store, P, 17), size_side(lg.store, P, 24)))
    assert [(c.instance_id, c.kind, c.changes) for c in changes] == [
        ("i0", "changed", ("review",)),
        ("i1", "changed", ("mask", "review")),
        ("i2", "changed", ("review",)),
        ("i4", "changed", ("review",)),
        ("i5", "changed", ("review",)),
        ("i6", "removed", ("deleted",)),
    ]
    accepted = ReleasePolicy()
    only_accepted = list(
        diff(
            lg.store, P, size_side(lg.store, P, 17, accepted), size_side(lg.store, P, 24, accepted)
        )
    )
    assert [(c.instance_id, c.kind) for c in only_accepted] == [
        ("i0", "added"),
        ("i1", "added"),
        ("i4", "added"),
        ("i5", "added"),
    ]
    assert list(diff(lg.store, P, size_side(lg.store, P, 24), size_side(lg.store, P, 24))) == []
    backwards = list(diff(lg.store, P, size_side(lg.store, P, 12), size_side(lg.store, P, 11)))
    assert [(c.instance_id, c.kind, c.actor) for c in backwards] == [("i1", "removed", None)]


def test_an_edit_that_changes_nothing_visible(lg: Ledger) -> None:
    from tests import factory as f

    lg.append(P, [f.mask_edited("i3", 1, iscrowd=False)], "t")
    (change,) = diff(lg.store, P, size_side(lg.store, P, 24), size_side(lg.store, P, 25))
    assert (change.instance_id, change.changes, change.seq) == ("i3", ("revision",), 24)


def test_sides_from_text(lg: Ledger) -> None:
    create_release(lg, P, "v1", actor="alice", principal="t", at=20)
    assert parse_side(lg.store, P, "v1").tree_size == 20
    assert parse_side(lg.store, P, "@17").label == "tree size 17"
    with pytest.raises(InvalidInput, match=r"side: '@x': expected @ and a tree size"):
        parse_side(lg.store, P, "@x")
    with pytest.raises(InvalidInput, match=r"side: tree size must be an integer from 1 to 25"):
        parse_side(lg.store, P, "@99")
    with pytest.raises(NotFound, match="release 'v9' does not exist"):
        parse_side(lg.store, P, "v9")
