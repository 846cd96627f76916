"""Workforce metrics over a period: throughput, review outcomes, rework, time and cost.

Everything is computed from the projections and the log: ``revisions`` (who created,
edited or deleted which instance, at which entry), ``reviews`` (who decided what on
which revision) and ``entries`` (when each entry was recorded, and the client time of
its event). The period is a half-open interval of server time, ``from <= recorded_at
< to``, so the numbers of a closed period never change.

Per group (an actor, or an organization) and for the whole project:

========================  ===============================================================
``created``               instances created in the period by the group
``edited`` / ``deleted``  mask edits and deletions in the period
``reviewed``              review decisions made in the period (``accepted``, ``rejected``
                          and ``needs_changes`` split them)
``first_reviewed``        instances created by the group whose first review came in the
                          period; ``first_pass_acceptance`` is the share of them whose
                          first review was an acceptance
``reviews_received``      decisions in the period on revisions the group wrote;
                          ``rejection_rate`` is the share that were reject or
                          needs_changes
``rework_edits``          edits in the period that follow a reject or needs_changes
                          decision on the instance; ``rework_rate`` is their share of
                          ``edited``
``review_latency_s``      median and mean seconds from an instance's creation to its
                          first review (server times), for first reviews in the period,
                          attributed to the instance's creator
``active_days``           UTC days with at least one entry of the group;
                          ``created_per_day`` and ``reviewed_per_day`` divide by them
``hours``                 recorded activity: the gaps between consecutive events of an
                          actor that are at most ``session_gap_minutes`` apart, summed
``cost``                  ``created x per_instance + reviewed x per_review + hours x
                          per_hour`` from the rate card; ``cost_per_instance`` divides by
                          ``created`` (both null without a rate card)
========================  ===============================================================

Hours use the client time of the events by default (when the person worked; a tool
that uploads a day's work in one batch has a single server time for all of it), or the
server time with ``"activity_clock": "recorded"`` in the rate card. Rates resolve per
actor: the actor's own, else its organization's, else the default.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ledger.canonical import canonical_bytes
from ledger.entry import format_time
from ledger.errors import InvalidInput, NotFound
from ledger.store.base import Store

__all__ = [
    "Activity",
    "MaskOp",
    "MetricsReport",
    "Rate",
    "RateCard",
    "ReviewOp",
    "compute_metrics",
    "load_rate_card",
    "parse_period_bound",
    "parse_rate_card",
    "read_activity",
    "workforce_metrics",
]

METRICS_FORMAT = "ledger.metrics/1"
REJECTIONS = frozenset({"reject", "needs_changes"})
NO_ORGANIZATION = "(none)"
#: what the daily series counts
DAY_KEYS = ("created", "edited", "deleted", "reviewed")


# --- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MaskOp:
    """A revision: created, edited or deleted, by whom, when (server time)."""

    seq: int
    instance_id: str
    revision: int
    op: str
    actor: str
    recorded_at: str


@dataclass(frozen=True, slots=True)
class ReviewOp:
    seq: int
    instance_id: str
    revision: int
    reviewer: str
    decision: str
    recorded_at: str


@dataclass(frozen=True)
class Activity:
    """What the metrics of a period read. ``ops`` and ``reviews`` hold the history up to
    the end of the period (earlier entries explain later ones: who created an instance
    reviewed in the period, whether an edit follows a rejection); ``events`` are the
    (actor, time) of every mask and review event in the period, for activity hours."""

    project: str
    start: str | None
    end: str | None
    ops: list[MaskOp]
    reviews: list[ReviewOp]
    events: list[tuple[str, str]]
    organizations: Mapping[str, str | None] = field(default_factory=dict)

    def in_period(self, recorded_at: str) -> bool:
        return (self.start is None or recorded_at >= self.start) and (
            self.end is None or recorded_at < self.end
        )


# --- rate card ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    per_instance: float = 0.0
    per_review: float = 0.0
    per_hour: float = 0.0

    def as_json(self) -> dict[str, float]:
        return {
            "per_instance": self.per_instance,
            "per_review": self.per_review,
            "per_hour": self.per_hour,
        }


@dataclass(frozen=True)
class RateCard:
    currency: str = ""
    default: Rate = Rate()
    organizations: Mapping[str, Rate] = field(default_factory=dict)
    actors: Mapping[str, Rate] = field(default_factory=dict)
    session_gap_minutes: float = 30.0
    activity_clock: str = "client"
    sha256: str = ""

    def rate(self, actor: str, organization: str | None) -> Rate:
        if actor in self.actors:
            return self.actors[actor]
        if organization is not None and organization in self.organizations:
            return self.organizations[organization]
        return self.default


def load_rate_card(path: str | Path) -> RateCard:
    """A rate card from a JSON or CSV file (by extension; see :func:`parse_rate_card`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidInput.field(str(path), f"cannot read the rate card: {e.strerror}") from e
    return parse_rate_card(data, "csv" if path.suffix.lower() == ".csv" else "json", path.name)


def _rate(value: Any, loc: str) -> Rate:
    if not isinstance(value, dict):
        raise InvalidInput.field(loc, "expected an object of per_instance, per_review, per_hour")
    unknown = set(value) - {"per_instance", "per_review", "per_hour"}
    if unknown:
        raise InvalidInput.field(f"{loc}.{sorted(unknown)[0]}", "unknown rate")
    numbers: dict[str, float] = {}
    for key, number in value.items():
        numbers[key] = _non_negative(number, f"{loc}.{key}")
    return Rate(**numbers)


def _non_negative(value: Any, loc: str) -> float:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        try:
            value = float(text)
        except ValueError:
            raise InvalidInput.field(loc, f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise InvalidInput.field(loc, f"expected a number >= 0, got {value!r}")
    if value == float("inf"):
        raise InvalidInput.field(loc, "expected a finite number")
    return float(value)


def parse_rate_card(data: bytes, kind: str = "json", source: str = "rate card") -> RateCard:
    """A rate card.

    JSON::

        {"currency": "EUR", "session_gap_minutes": 30, "activity_clock": "client",
         "default": {"per_instance": 0.05},
         "organizations": {"acme": {"per_hour": 18}},
         "actors": {"alice": {"per_hour": 22.5, "per_review": 0.01}}}

    CSV: columns ``scope,name,per_instance,per_review,per_hour`` with scope
    ``default`` (name empty), ``organization`` or ``actor``; empty cells are 0."""
    digest = hashlib.sha256(data).hexdigest()
    if kind == "csv":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InvalidInput.field(source, "expected UTF-8 text") from e
        reader = csv.DictReader(io.StringIO(text))
        missing = {"scope", "name"} - set(reader.fieldnames or [])
        if missing:
            raise InvalidInput.field(
                f"{source}:1", f"missing column(s) {', '.join(sorted(missing))}"
            )
        default = Rate()
        orgs: dict[str, Rate] = {}
        actors: dict[str, Rate] = {}
        for row in reader:
            loc = f"{source}:{reader.line_num}"
            values = {
                k: row.get(k) or "" for k in ("per_instance", "per_review", "per_hour") if k in row
            }
            rate = Rate(**{k: _non_negative(v, f"{loc}.{k}") for k, v in values.items()})
            scope, name = (row.get("scope") or "").strip(), (row.get("name") or "").strip()
            if scope == "default":
                default = rate
            elif scope in ("organization", "actor") and name:
                (orgs if scope == "organization" else actors)[name] = rate
            else:
                raise InvalidInput.field(
                    f"{loc}.scope", "expected default, organization or actor (with a name)"
                )
        return RateCard("", default, orgs, actors, sha256=digest)
    if kind != "json":
        raise InvalidInput.field(source, f"unknown format {kind!r} (expected json or csv)")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInput.field(source, f"not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise InvalidInput.field(source, "expected a JSON object")
    known = {
        "currency", "default", "organizations", "actors", "session_gap_minutes",
        "activity_clock",
    }  # fmt: skip
    unknown = set(value) - known
    if unknown:
        raise InvalidInput.field(f"{source}.{sorted(unknown)[0]}", "unknown field")
    currency = value.get("currency", "")
    if not isinstance(currency, str):
        raise InvalidInput.field(f"{source}.currency", "expected a string")
    clock = value.get("activity_clock", "client")
    if clock not in ("client", "recorded"):
        raise InvalidInput.field(f"{source}.activity_clock", "expected client or recorded")
    groups: dict[str, dict[str, Rate]] = {}
    for key in ("organizations", "actors"):
        items = value.get(key, {})
        if not isinstance(items, dict):
            raise InvalidInput.field(f"{source}.{key}", "expected an object of name -> rates")
        groups[key] = {name: _rate(rate, f"{source}.{key}.{name}") for name, rate in items.items()}
    return RateCard(
        currency,
        _rate(value.get("default", {}), f"{source}.default"),
        groups["organizations"],
        groups["actors"],
        _non_negative(value.get("session_gap_minutes", 30), f"{source}.session_gap_minutes"),
        clock,
        digest,
    )


# --- reading --------------------------------------------------------------------------------


def parse_period_bound(text: str, loc: str) -> str:
    """An ISO 8601 date or date-time (UTC when no offset is given) as the fixed-width
    server-time text the log stores, so that text order is time order."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput.field(
            loc, f"expected an ISO 8601 date or time such as 2026-11-01, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_time(moment)


_CLIENT_TIME = re.compile(rb'"client_time":"([^"\\]+)"')


def _client_time(entry: bytes, fallback: str) -> str:
    """The event's client time, normalized like server times. In the canonical entry the
    envelope's ``client_time`` is the first key of that name (``event`` sorts first, and
    within it ``actor`` (an identifier) is the only key before ``client_time``)."""
    found = _CLIENT_TIME.search(entry)
    if found is None:
        return fallback
    try:
        moment = datetime.fromisoformat(found.group(1).decode().replace("Z", "+00:00"))
    except ValueError:
        return fallback
    return format_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def read_activity(
    store: Store,
    project: str,
    start: str | None = None,
    end: str | None = None,
    *,
    clock: str = "client",
) -> Activity:
    """The inputs of :func:`compute_metrics` for ``start <= recorded_at < end`` (server
    time text as stored; None for an open end)."""
    head = store.head(project)
    if head is None or head.size == 0:
        raise NotFound(f"project {project} does not exist")
    until = end if end is not None else "~"  # sorts after every timestamp
    since = start if start is not None else ""
    ops = [
        MaskOp(int(r["seq"]), r["instance_id"], int(r["revision"]), r["op"], r["actor"],
               r["recorded_at"])
        for r in store.iter_query(
            "SELECT r.seq, r.instance_id, r.revision, r.op, r.actor, e.recorded_at"
            " FROM revisions r JOIN entries e ON e.project = r.project AND e.seq = r.seq"
            " WHERE r.project = ? AND e.recorded_at < ? ORDER BY r.seq",
            (project, until),
        )
    ]  # fmt: skip
    reviews = [
        ReviewOp(int(r["seq"]), r["instance_id"], int(r["revision"]), r["reviewer"],
                 r["decision"], r["recorded_at"])
        for r in store.iter_query(
            "SELECT v.seq, v.instance_id, v.revision, v.reviewer, v.decision, e.recorded_at"
            " FROM reviews v JOIN entries e ON e.project = v.project AND e.seq = v.seq"
            " WHERE v.project = ? AND e.recorded_at < ? ORDER BY v.seq",
            (project, until),
        )
    ]  # fmt: skip
    kinds = "('mask.created', 'mask.edited', 'mask.deleted', 'review.decided')"
    window = (project, since, until)
    events: list[tuple[str, str]] = []
    if clock == "client":
        for row in store.iter_query(
            "SELECT actor, recorded_at, entry FROM entries WHERE project = ?"
            f" AND recorded_at >= ? AND recorded_at < ? AND type IN {kinds} ORDER BY seq",
            window,
        ):
            events.append((row["actor"], _client_time(bytes(row["entry"]), row["recorded_at"])))
    else:
        for row in store.iter_query(
            "SELECT actor, recorded_at FROM entries WHERE project = ?"
            f" AND recorded_at >= ? AND recorded_at < ? AND type IN {kinds} ORDER BY seq",
            window,
        ):
            events.append((row["actor"], row["recorded_at"]))
    organizations = {
        r["actor_id"]: r["organization"]
        for r in store.query(
            "SELECT actor_id, organization FROM actors WHERE project = ?", (project,)
        )
    }
    return Activity(project, start, end, ops, reviews, events, organizations)


# --- computing ------------------------------------------------------------------------------


@dataclass
class _Tally:
    created: int = 0
    edited: int = 0
    deleted: int = 0
    reviewed: int = 0
    accepted: int = 0
    rejected: int = 0
    needs_changes: int = 0
    first_reviewed: int = 0
    first_pass_accepted: int = 0
    reviews_received: int = 0
    rejections_received: int = 0
    rework_edits: int = 0
    latencies: list[float] = field(default_factory=list)
    days: dict[str, dict[str, int]] = field(default_factory=dict)
    hours: float = 0.0
    cost: float = 0.0
    actors: set[str] = field(default_factory=set)

    def day(self, recorded_at: str, key: str) -> None:
        per = self.days.setdefault(recorded_at[:10], dict.fromkeys(DAY_KEYS, 0))
        per[key] += 1


@dataclass(frozen=True)
class MetricsReport:
    document: dict[str, Any]
    canonical: bytes
    sha256: str

    @property
    def groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.document["groups"]
        return groups

    @property
    def project_totals(self) -> dict[str, Any]:
        totals: dict[str, Any] = self.document["project_totals"]
        return totals


def _seconds(a: str, b: str) -> float:
    return (_parse(b) - _parse(a)).total_seconds()


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _hours(times: Iterable[str], gap_minutes: float) -> float:
    ordered = sorted(_parse(t) for t in times)
    limit = timedelta(minutes=gap_minutes)
    total = timedelta()
    for before, after in itertools.pairwise(ordered):
        if after - before <= limit:
            total += after - before
    return total.total_seconds() / 3600.0


def compute_metrics(
    activity: Activity, by: str = "actor", rate_card: RateCard | None = None
) -> MetricsReport:
    """Metrics per actor (or per organization) and for the project (see module doc)."""
    if by not in ("actor", "organization"):
        raise InvalidInput.field("by", "expected actor or organization")
    card = rate_card or RateCard()
    orgs = activity.organizations
    tallies: dict[str, _Tally] = {}

    def tally(actor: str) -> _Tally:
        t = tallies.setdefault(actor, _Tally())
        t.actors.add(actor)
        return t

    creator: dict[str, str] = {}
    created_at: dict[str, str] = {}
    author: dict[tuple[str, int], str] = {}
    last_review: dict[str, ReviewOp] = {}
    first_review_seen: set[str] = set()
    timeline = sorted(
        [(op.seq, op) for op in activity.ops] + [(rv.seq, rv) for rv in activity.reviews],
        key=lambda item: item[0],
    )
    for _, item in timeline:
        if isinstance(item, MaskOp):
            author[(item.instance_id, item.revision)] = item.actor
            if item.op == "created":
                creator[item.instance_id] = item.actor
                created_at[item.instance_id] = item.recorded_at
            if not activity.in_period(item.recorded_at):
                continue
            t = tally(item.actor)
            t.day(item.recorded_at, item.op)
            if item.op == "created":
                t.created += 1
            elif item.op == "edited":
                t.edited += 1
                previous = last_review.get(item.instance_id)
                if previous is not None and previous.decision in REJECTIONS:
                    t.rework_edits += 1
            else:
                t.deleted += 1
            continue
        rv = item
        first = rv.instance_id not in first_review_seen
        first_review_seen.add(rv.instance_id)
        last_review[rv.instance_id] = rv
        if not activity.in_period(rv.recorded_at):
            continue
        t = tally(rv.reviewer)
        t.day(rv.recorded_at, "reviewed")
        t.reviewed += 1
        if rv.decision == "accept":
            t.accepted += 1
        elif rv.decision == "reject":
            t.rejected += 1
        else:
            t.needs_changes += 1
        written_by = author.get((rv.instance_id, rv.revision))
        if written_by is not None:
            w = tally(written_by)
            w.reviews_received += 1
            w.rejections_received += int(rv.decision in REJECTIONS)
        owner = creator.get(rv.instance_id)
        if first and owner is not None:
            c = tally(owner)
            c.first_reviewed += 1
            c.first_pass_accepted += int(rv.decision == "accept")
            c.latencies.append(_seconds(created_at[rv.instance_id], rv.recorded_at))

    times: dict[str, list[str]] = {}
    for actor, moment in activity.events:
        times.setdefault(actor, []).append(moment)
    for actor, moments in times.items():
        tally(actor).hours = _hours(moments, card.session_gap_minutes)
    for actor, t in tallies.items():
        rate = card.rate(actor, orgs.get(actor))
        t.cost = (
            t.created * rate.per_instance + t.reviewed * rate.per_review + t.hours * rate.per_hour
        )

    if by == "organization":
        grouped: dict[str, _Tally] = {}
        for actor, t in tallies.items():
            name = orgs.get(actor) or NO_ORGANIZATION
            grouped[name] = _merge(grouped.get(name), t)
    else:
        grouped = tallies
    total: _Tally | None = None
    for t in tallies.values():
        total = _merge(total, t)
    groups = []
    for name in sorted(grouped):
        row = {"name": name, **_row(grouped[name], rate_card is not None)}
        if by == "actor":
            row["organization"] = orgs.get(name)
        groups.append(row)
    document: dict[str, Any] = {
        "format": METRICS_FORMAT,
        "project": activity.project,
        "period": {"from": activity.start, "to": activity.end},
        "by": by,
        "rate_card": (
            None
            if rate_card is None
            else {
                "sha256": card.sha256,
                "currency": card.currency,
                "session_gap_minutes": card.session_gap_minutes,
                "activity_clock": card.activity_clock,
            }
        ),
        "groups": groups,
        "project_totals": _row(total or _Tally(), rate_card is not None),
    }
    data = canonical_bytes(document)
    return MetricsReport(document, data, hashlib.sha256(data).hexdigest())


def _merge(into: _Tally | None, t: _Tally) -> _Tally:
    out = into or _Tally()
    for name in (
        "created", "edited", "deleted", "reviewed", "accepted", "rejected", "needs_changes",
        "first_reviewed", "first_pass_accepted", "reviews_received", "rejections_received",
        "rework_edits",
    ):  # fmt: skip
        setattr(out, name, getattr(out, name) + getattr(t, name))
    out.latencies = out.latencies + t.latencies
    out.hours += t.hours
    out.cost += t.cost
    out.actors |= t.actors
    for day, per in t.days.items():
        mine = out.days.setdefault(day, dict.fromkeys(DAY_KEYS, 0))
        for key, value in per.items():
            mine[key] += value
    return out


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


def _row(t: _Tally, priced: bool) -> dict[str, Any]:
    active = len(t.days)
    return {
        "actors": len(t.actors),
        "created": t.created,
        "edited": t.edited,
        "deleted": t.deleted,
        "reviewed": t.reviewed,
        "accepted": t.accepted,
        "rejected": t.rejected,
        "needs_changes": t.needs_changes,
        "first_reviewed": t.first_reviewed,
        "first_pass_acceptance": _ratio(t.first_pass_accepted, t.first_reviewed),
        "reviews_received": t.reviews_received,
        "rejection_rate": _ratio(t.rejections_received, t.reviews_received),
        "rework_edits": t.rework_edits,
        "rework_rate": _ratio(t.rework_edits, t.edited),
        "review_latency_s": {
            "median": round(statistics.median(t.latencies), 6) if t.latencies else None,
            "mean": round(statistics.fmean(t.latencies), 6) if t.latencies else None,
        },
        "active_days": active,
        "created_per_day": _ratio(t.created, active),
        "reviewed_per_day": _ratio(t.reviewed, active),
        "hours": round(t.hours, 6),
        "cost": round(t.cost, 6) if priced else None,
        "cost_per_instance": _ratio(t.cost, t.created) if priced else None,
        "per_day": [{"day": day, **t.days[day]} for day in sorted(t.days)],
    }


def workforce_metrics(
    store: Store,
    project: str,
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
    *,
    by: str = "actor",
    rate_card: RateCard | None = None,
) -> MetricsReport:
    """Read a period's activity from ``store`` and compute its metrics. ``start`` and
    ``end`` are ISO 8601 text, dates or aware date-times (UTC when naive)."""
    bounds = [_bound(value, name) for value, name in ((start, "from"), (end, "to"))]
    if bounds[0] is not None and bounds[1] is not None and bounds[0] >= bounds[1]:
        raise InvalidInput.field("to", "the period must end after it starts")
    clock = rate_card.activity_clock if rate_card is not None else "client"
    activity = read_activity(store, project, bounds[0], bounds[1], clock=clock)
    return compute_metrics(activity, by, rate_card)


def _bound(value: str | date | datetime | None, loc: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_time(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return format_time(datetime(value.year, value.month, value.day, tzinfo=UTC))
    return parse_period_bound(value, loc)
