"""Audit queries: what an actor did, what a guideline version produced, what a reviewer
decided. Each streams its answer in sequence order with keyset pages.

Times are server times (``recorded_at``, the time the ledger wrote the entry): client
times come from the tools and may be wrong or skewed. A range is ``since`` inclusive,
``until`` exclusive; both need a timezone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.asof import PAGE, InstanceState, iter_instances, log_size, parse_time, resolve_size
from ledger.entry import MalformedEntry, format_time, parse_entry
from ledger.errors import InvalidInput, VerificationFailed
from ledger.store.base import Store


@dataclass(frozen=True)
class Activity:
    """One entry an actor made."""

    seq: int
    type: str
    event_id: str
    recorded_at: str
    client_time: str
    principal: str
    instance_id: str | None
    image_id: str | None
    guideline: str | None
    #: the revision an edit, deletion or review named, when there is one
    revision: int | None
    decision: str | None


@dataclass(frozen=True)
class Decision:
    """One review decision."""

    seq: int
    recorded_at: str
    reviewer: str
    instance_id: str
    revision: int
    decision: str
    reason: str | None


def _time(value: datetime | str | None, loc: str) -> str | None:
    if value is None:
        return None
    moment = parse_time(value, loc) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise InvalidInput.field(loc, "time has no timezone")
    return format_time(moment)


def _range(since: datetime | str | None, until: datetime | str | None) -> tuple[str, list[str]]:
    clause, params = "", []
    start, end = _time(since, "since"), _time(until, "until")
    if start is not None:
        clause += " AND e.recorded_at >= ?"
        params.append(start)
    if end is not None:
        clause += " AND e.recorded_at < ?"
        params.append(end)
    return clause, params


def _activity(seq: int, raw: bytes, row: dict[str, Any]) -> Activity:
    try:
        entry = parse_entry(raw)
        event = entry.event
        payload = event.get("payload", {})
        revision = payload.get("revision")
        return Activity(
            seq=seq,
            type=str(event["type"]),
            event_id=str(event["id"]),
            recorded_at=entry.recorded_at,
            client_time=str(event["client_time"]),
            principal=entry.principal,
            instance_id=row["instance_id"],
            image_id=row["image_id"],
            guideline=row["guideline"],
            revision=int(revision) if isinstance(revision, int) else None,
            decision=payload.get("decision"),
        )
    except (MalformedEntry, KeyError, TypeError, AttributeError) as e:
        raise VerificationFailed(f"entry {seq} cannot be read: {e}") from e


def actor_activity(
    store: Store,
    project: str,
    actor: str,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    page: int = PAGE,
) -> Iterator[Activity]:
    """Every entry whose event names ``actor``, in the time range, in log order."""
    log_size(store, project)
    clause, params = _range(since, until)
    after = -1
    while True:
        rows = store.query(
            "SELECT e.seq, e.entry, e.instance_id, e.image_id, e.guideline FROM entries e"
            f" WHERE e.project = ? AND e.actor = ? AND e.seq > ?{clause} ORDER BY e.seq LIMIT ?",
            (project, actor, after, *params, page),
        )
        for row in rows:
            yield _activity(int(row["seq"]), bytes(row["entry"]), row)
        if len(rows) < page:
            return
        after = int(rows[-1]["seq"])


def guideline_instances(
    store: Store, project: str, guideline: str, at: int | None = None, page: int = PAGE
) -> Iterator[InstanceState]:
    """Every live instance whose current revision (as of tree size ``at``, default now)
    was made under ``guideline`` ("id@version"), in annotation-id order."""
    if "@" not in guideline:
        raise InvalidInput.field("guideline", f"expected ID@VERSION, got {guideline!r}")
    size = resolve_size(store, project, at)
    return iter_instances(store, project, size, masks=False, guideline=guideline, page=page)


def reviewer_decisions(
    store: Store,
    project: str,
    reviewer: str,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    page: int = PAGE,
) -> Iterator[Decision]:
    """Every review decision of ``reviewer``, in the time range, in log order."""
    log_size(store, project)
    clause, params = _range(since, until)
    after = -1
    while True:
        rows = store.query(
            "SELECT v.seq, e.recorded_at, v.reviewer, v.instance_id, v.revision, v.decision,"
            " v.reason FROM entries e JOIN reviews v ON v.project = e.project AND v.seq = e.seq"
            " WHERE e.project = ? AND e.actor = ? AND e.type = 'review.decided' AND e.seq > ?"
            f"{clause} ORDER BY e.seq LIMIT ?",
            (project, reviewer, after, *params, page),
        )
        for r in rows:
            yield Decision(
                int(r["seq"]), str(r["recorded_at"]), r["reviewer"], r["instance_id"],
                int(r["revision"]), r["decision"], r["reason"],
            )  # fmt: skip
        if len(rows) < page:
            return
        after = int(rows[-1]["seq"])
