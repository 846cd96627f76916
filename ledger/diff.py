"""What changed between two releases, or two tree sizes: instances added, removed and
changed, with who made each change and when.

Each side is a tree size and a selection policy (a release's own, or "all current
revisions" for a bare tree size unless another is given). An instance is *added* when
the new side selects it and the old one did not, *removed* in the opposite case, and
*changed* when both select it and its mask, category, crowd flag or review status
differ (or only its revision number, for an edit that left everything as it was). The
entry held responsible is the latest revision or review of the instance on the new
side; for a deletion it is the ``mask.deleted`` entry.

Both states are streamed in annotation-id order and merged, so memory stays bounded
however large they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

from ledger.asof import InstanceState, check_size, iter_instances, selected
from ledger.errors import InvalidInput
from ledger.events import ReleasePolicy
from ledger.releases import get_release
from ledger.store.base import Store

Kind = Literal["added", "removed", "changed"]
_BATCH = 500


@dataclass(frozen=True)
class Side:
    """One side of a diff: a label for people, a tree size and a policy."""

    label: str
    tree_size: int
    policy: ReleasePolicy


@dataclass(frozen=True)
class Change:
    kind: Kind
    instance_id: str
    image_id: str
    #: what differs: "mask", "category", "iscrowd", "review", "revision"; for a
    #: removal "deleted" or "unselected"
    changes: tuple[str, ...]
    before: InstanceState | None
    after: InstanceState | None
    #: who made the change, the entry that made it and its server time
    actor: str | None
    seq: int | None
    recorded_at: str | None


def release_side(store: Store, project: str, name: str) -> Side:
    release = get_release(store, project, name)
    return Side(f"release {name}", release.tree_size, release.policy)


def size_side(store: Store, project: str, size: int, policy: ReleasePolicy | None = None) -> Side:
    check_size(store, project, size)
    return Side(f"tree size {size}", size, policy or ReleasePolicy(selection="all"))


def parse_side(
    store: Store, project: str, text: str, policy: ReleasePolicy | None = None, loc: str = "side"
) -> Side:
    """``@SIZE`` for a tree size, anything else a release name."""
    if text.startswith("@"):
        try:
            size = int(text[1:])
        except ValueError:
            raise InvalidInput.field(loc, f"{text!r}: expected @ and a tree size") from None
        check_size(store, project, size, loc)
        return size_side(store, project, size, policy)
    return release_side(store, project, text)


def _responsible(state: InstanceState) -> tuple[str, int]:
    if state.review_seq is not None and state.review_seq > state.seq and state.reviewer:
        return state.reviewer, state.review_seq
    return state.actor, state.seq


def _compare(before: InstanceState, after: InstanceState) -> tuple[str, ...]:
    changes = []
    if before.segmentation != after.segmentation:
        changes.append("mask")
    if before.category_id != after.category_id:
        changes.append("category")
    if before.iscrowd != after.iscrowd:
        changes.append("iscrowd")
    if before.review != after.review:
        changes.append("review")
    if not changes and before.revision != after.revision:
        changes.append("revision")
    return tuple(changes)


def _classify(
    before: InstanceState | None, after: InstanceState | None, old: Side, new: Side
) -> Change | None:
    was = before is not None and selected(before, old.policy)
    now = after is not None and selected(after, new.policy)
    if not was and not now:
        return None
    kind: Kind
    if was and now:
        assert before is not None and after is not None
        changes = _compare(before, after)
        if not changes:
            return None
        kind = "changed"
    elif now:
        kind, changes = "added", ()
    else:
        kind = "removed"
        changes = ("deleted",) if after is not None and after.deleted else ("unselected",)
    ref = after if after is not None else before
    assert ref is not None
    actor, seq = _responsible(after) if after is not None else (None, None)
    return Change(kind, ref.instance_id, ref.image_id, changes, before, after, actor, seq, None)


def _merged(
    a: Iterator[InstanceState], b: Iterator[InstanceState]
) -> Iterator[tuple[InstanceState | None, InstanceState | None]]:
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x.annotation_id < y.annotation_id):
            yield x, None
            x = next(a, None)
        elif x is None or y.annotation_id < x.annotation_id:
            yield None, y
            y = next(b, None)
        else:
            yield x, y
            x, y = next(a, None), next(b, None)


def _with_times(store: Store, project: str, changes: list[Change]) -> list[Change]:
    seqs = sorted({c.seq for c in changes if c.seq is not None})
    times: dict[int, str] = {}
    if seqs:
        marks = ",".join("?" * len(seqs))
        rows = store.query(
            f"SELECT seq, recorded_at FROM entries WHERE project = ? AND seq IN ({marks})",
            (project, *seqs),
        )
        times = {int(r["seq"]): str(r["recorded_at"]) for r in rows}
    return [
        replace(c, recorded_at=times.get(c.seq) if c.seq is not None else None) for c in changes
    ]


def diff(store: Store, project: str, old: Side, new: Side) -> Iterator[Change]:
    """Changes from ``old`` to ``new``, in annotation-id order, streamed."""
    before = iter_instances(store, project, old.tree_size, include_deleted=True)
    after = iter_instances(store, project, new.tree_size, include_deleted=True)
    pending: list[Change] = []
    for x, y in _merged(before, after):
        change = _classify(x, y, old, new)
        if change is not None:
            pending.append(change)
            if len(pending) >= _BATCH:
                yield from _with_times(store, project, pending)
                pending = []
    yield from _with_times(store, project, pending)


@dataclass(frozen=True)
class DiffSummary:
    added: int
    removed: int
    changed: int


def summarize(changes: list[Change]) -> DiffSummary:
    return DiffSummary(
        sum(c.kind == "added" for c in changes),
        sum(c.kind == "removed" for c in changes),
        sum(c.kind == "changed" for c in changes),
    )
