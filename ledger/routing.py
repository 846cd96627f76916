"""Review routing: the queue of revisions awaiting review, and rules that assign them.

The queue holds every live instance whose current revision has no review decision yet.
Each item carries its age (time since the revision was recorded) and a complexity
score computed from the ledger alone::

    score = w_shape    * log2(1 + shape)       polygon vertices, or runs of the RLE
          + w_area     * log10(1 + area)       pixels
          + w_overlap  * overlaps              other live instances of the image it touches
          + w_flag     * open_flags            QA flags naming the instance (ledger.qa)
          + w_rejection * rejections           earlier reject / needs_changes decisions

with weights 1, 1, 2, 3, 2 unless the rules file sets others (``[weights]``). The
components are reported beside the score, so a reviewer can see why an item is hard.
Open QA flags are the flags ``ledger.qa.run_qa`` raises on the current state with its
default thresholds; callers that have a QA report already pass ``open_flags``
(:func:`count_flags` of its flags), and ``open_flags={}`` skips the QA run.

Routing rules come from a TOML or JSON file (see docs/workflows.md). Rules are tried in
order; the first whose categories and complexity range match an instance decides who
may review it: actors with the review role and every skill the rule requires, never an
actor who drew any revision of the instance, and, when the rule says so, nobody of the
organization of the annotator of the current revision. Among the eligible, the reviewer
who was assigned an earlier revision of the same instance is kept; otherwise the one
with the fewest open assignments wins (ties by actor id). An instance no rule can place
stays unassigned, with the reason.

Every assignment and reassignment is a ``review.assigned`` event appended through
:meth:`ledger.service.Ledger.append`, so the log shows who was asked to judge what;
:func:`review_audit` shows each decision beside the assignee at that moment.
"""

from __future__ import annotations

import json
import math
import tomllib
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ledger import __version__
from ledger.entry import format_time, parse_time
from ledger.errors import Conflict, FieldError, InvalidInput, NotFound
from ledger.events import Identifier
from ledger.masks import RLE, iou_matrix, polygon_vertex_count, rle_run_count, to_rle
from ledger.service import Ledger, check_project_name
from ledger.store.base import Store

__all__ = [
    "Assignment",
    "Complexity",
    "ComplexityRange",
    "ComplexityWeights",
    "QueueItem",
    "QueueMetrics",
    "ReviewAudit",
    "RoutingPlan",
    "RoutingRules",
    "Rule",
    "Unassigned",
    "actor_organizations",
    "assign",
    "complexity_score",
    "count_flags",
    "group_by_organization",
    "load_rules",
    "open_assignment_counts",
    "open_flag_counts",
    "organization_summary",
    "parse_rules",
    "plan_routes",
    "queue_metrics",
    "review_audit",
    "review_queue",
    "route",
]

#: the envelope ``actor`` of routing events unless the caller names another
ROUTER_ACTOR = "router"
_TOOL = {"name": "ledger-router", "version": __version__}
#: decisions counted as earlier rejections in the complexity score
REJECTIONS = ("reject", "needs_changes")
#: upper bounds (seconds) of the age buckets in queue metrics
AGE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<1h", 3600.0),
    ("1h-1d", 86400.0),
    ("1d-7d", 7 * 86400.0),
    (">=7d", math.inf),
)
_IN_CHUNK = 500


# --- rules ---------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_Weight = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]


class ComplexityWeights(_Strict):
    shape: _Weight = 1.0
    area: _Weight = 1.0
    overlap: _Weight = 2.0
    flag: _Weight = 3.0
    rejection: _Weight = 2.0


class ComplexityRange(_Strict):
    """``min <= score < max``; either bound may be left out."""

    min: Annotated[float, Field(allow_inf_nan=False)] | None = None
    max: Annotated[float, Field(allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ComplexityRange:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self

    def contains(self, score: float) -> bool:
        return (self.min is None or score >= self.min) and (self.max is None or score < self.max)

    def describe(self) -> str:
        low = "-inf" if self.min is None else f"{self.min:g}"
        high = "inf" if self.max is None else f"{self.max:g}"
        return f"[{low}, {high})"


class Rule(_Strict):
    """One routing rule. Without ``categories`` or ``complexity`` it matches everything."""

    id: Identifier
    categories: (
        Annotated[tuple[Annotated[int, Field(ge=1, strict=True)], ...], Field(min_length=1)] | None
    ) = None
    complexity: ComplexityRange | None = None
    #: skills a reviewer must all have (``actor.registered`` ``skills``)
    skills: tuple[Identifier, ...] = ()
    #: also exclude reviewers of the annotator's organization
    exclude_organization: bool = False
    #: only these reviewers may be chosen (default: every actor with the review role)
    reviewers: tuple[Identifier, ...] | None = None
    #: a reviewer with this many open assignments gets no more from this rule
    max_open: Annotated[int, Field(ge=1, strict=True)] | None = None

    def matches(self, category_id: int, score: float) -> bool:
        if self.categories is not None and category_id not in self.categories:
            return False
        return self.complexity is None or self.complexity.contains(score)


class RoutingRules(_Strict):
    rules: Annotated[tuple[Rule, ...], Field(min_length=1)]
    weights: ComplexityWeights = ComplexityWeights()

    @model_validator(mode="after")
    def _unique_ids(self) -> RoutingRules:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self


def parse_rules(data: Any, source: str = "rules") -> RoutingRules:
    """Validate parsed TOML or JSON; InvalidInput names every bad field."""
    if not isinstance(data, dict):
        raise InvalidInput(
            f"invalid routing rules in {source}", [FieldError("", "must be an object")]
        )
    try:
        return RoutingRules.model_validate(data)
    except ValidationError as e:
        errors = []
        for err in e.errors(include_url=False):
            loc = ""
            for part in err["loc"]:
                loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
            errors.append(FieldError(loc, str(err["msg"]).removeprefix("Value error, ")))
        raise InvalidInput(f"invalid routing rules in {source}", errors) from e


def load_rules(path: str | Path) -> RoutingRules:
    """Read routing rules from a ``.toml`` or ``.json`` file."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise InvalidInput.field(str(p), "routing rules must be a .toml or .json file")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise NotFound(f"routing rules file {p} does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput.field(str(p), f"cannot read: {e}") from e
    try:
        data = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidInput.field(str(p), f"not valid TOML: {e}") from e
    except json.JSONDecodeError as e:
        raise InvalidInput.field(str(p), f"not valid JSON: {e.msg} at line {e.lineno}") from e
    return parse_rules(data, str(p))


# --- the queue -----------------------------------------------------------------------


@dataclass(frozen=True)
class Complexity:
    #: polygon vertices, or runs of the RLE
    shape: int
    shape_kind: str
    area: int
    overlaps: int
    open_flags: int
    rejections: int
    score: float


@dataclass(frozen=True)
class QueueItem:
    instance_id: str
    image_id: str
    category_id: int
    revision: int
    #: the actor who drew the current revision, and their organization
    annotator: str
    organization: str | None
    #: sequence number and server time of the current revision
    seq: int
    since: str
    age_seconds: float
    assignee: str | None = None
    assigned_seq: int | None = None
    rule: str | None = None
    complexity: Complexity | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Pending:
    item: QueueItem
    segmentation: str
    area: int
    authors: set[str] = field(default_factory=set)
    #: assignee of an earlier revision of the same instance
    previous_assignee: str | None = None


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), _IN_CHUNK):
        yield values[i : i + _IN_CHUNK]


def _project(store: Store, project: str) -> None:
    check_project_name(project)
    if store.head(project) is None:
        raise NotFound(f"project {project} does not exist")


def actor_organizations(store: Store, project: str) -> dict[str, str | None]:
    """Organization of every registered actor (None for actors that name none)."""
    rows = store.query(
        "SELECT actor_id, organization FROM actors WHERE project = ? ORDER BY actor_id",
        (project,),
    )
    return {r["actor_id"]: r["organization"] for r in rows}


def _pending(store: Store, project: str, now: datetime) -> dict[str, _Pending]:
    """Live instances whose current revision has no decision, oldest first, with their
    current assignment."""
    orgs = actor_organizations(store, project)
    rows = store.iter_query(
        "SELECT i.instance_id, i.image_id, i.category_id, i.revision, r.seq, r.actor,"
        " r.segmentation, r.area, e.recorded_at"
        " FROM instances i"
        " JOIN revisions r ON r.project = i.project AND r.instance_id = i.instance_id"
        "  AND r.revision = i.revision"
        " JOIN entries e ON e.project = r.project AND e.seq = r.seq"
        " WHERE i.project = ? AND i.deleted = 0 AND i.review IS NULL"
        " ORDER BY r.seq",
        (project,),
    )
    out: dict[str, _Pending] = {}
    for r in rows:
        since = str(r["recorded_at"])
        item = QueueItem(
            instance_id=r["instance_id"],
            image_id=r["image_id"],
            category_id=int(r["category_id"]),
            revision=int(r["revision"]),
            annotator=r["actor"],
            organization=orgs.get(r["actor"]),
            seq=int(r["seq"]),
            since=since,
            age_seconds=max(0.0, round((now - parse_time(since)).total_seconds(), 3)),
        )
        out[item.instance_id] = _Pending(item, r["segmentation"], int(r["area"]))
    if not out:
        return out
    for a in store.iter_query(
        "SELECT seq, instance_id, revision, assignee, rule FROM assignments"
        " WHERE project = ? ORDER BY seq",
        (project,),
    ):
        p = out.get(a["instance_id"])
        if p is None:
            continue
        if int(a["revision"]) == p.item.revision:
            p.item = replace(
                p.item, assignee=a["assignee"], assigned_seq=int(a["seq"]), rule=a["rule"]
            )
        else:
            p.previous_assignee = a["assignee"]
    for ids in _chunks(sorted(out)):
        marks = ",".join("?" * len(ids))
        for row in store.query(
            f"SELECT DISTINCT instance_id, actor FROM revisions"
            f" WHERE project = ? AND instance_id IN ({marks})",
            (project, *ids),
        ):
            out[row["instance_id"]].authors.add(row["actor"])
    return out


def _rejections(store: Store, project: str, ids: Sequence[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for chunk in _chunks(sorted(ids)):
        marks = ",".join("?" * len(chunk))
        for row in store.query(
            "SELECT instance_id, COUNT(*) AS n FROM reviews WHERE project = ?"
            f" AND decision IN ('reject', 'needs_changes') AND instance_id IN ({marks})"
            " GROUP BY instance_id",
            (project, *chunk),
        ):
            counts[row["instance_id"]] = int(row["n"])
    return counts


def _shape(segmentation: Any, rle_counts: str) -> tuple[int, str]:
    if isinstance(segmentation, list):
        return polygon_vertex_count(segmentation), "polygon"
    return rle_run_count(rle_counts), "rle"


def _overlaps(
    store: Store, project: str, pending: Mapping[str, _Pending]
) -> tuple[dict[str, int], dict[str, RLE]]:
    """Number of other live instances of the same image each pending mask touches, and
    the canonical RLE of each pending mask."""
    images = sorted({p.item.image_id for p in pending.values()})
    overlaps: dict[str, int] = {}
    rles: dict[str, RLE] = {}
    for chunk in _chunks(images):
        marks = ",".join("?" * len(chunk))
        sizes = {
            r["image_id"]: (int(r["height"]), int(r["width"]))
            for r in store.query(
                "SELECT image_id, width, height FROM images"
                f" WHERE project = ? AND image_id IN ({marks})",
                (project, *chunk),
            )
        }
        by_image: dict[str, list[tuple[str, RLE]]] = defaultdict(list)
        for r in store.query(
            "SELECT i.instance_id, i.image_id, r.segmentation FROM instances i"
            " JOIN revisions r ON r.project = i.project AND r.instance_id = i.instance_id"
            "  AND r.revision = i.revision"
            f" WHERE i.project = ? AND i.deleted = 0 AND i.image_id IN ({marks})"
            " ORDER BY i.instance_id",
            (project, *chunk),
        ):
            h, w = sizes[r["image_id"]]
            rle = to_rle(json.loads(r["segmentation"]), h, w)
            by_image[r["image_id"]].append((r["instance_id"], rle))
            if r["instance_id"] in pending:
                rles[r["instance_id"]] = rle
        for members in by_image.values():
            mine = [(k, rle) for k, rle in members if k in pending]
            if not mine:
                continue
            everyone = [rle for _, rle in members]
            # each mask touches itself once: subtract it
            touching = (iou_matrix([rle for _, rle in mine], everyone) > 0).sum(axis=1) - 1
            for (instance_id, _), n in zip(mine, touching, strict=True):
                overlaps[instance_id] = int(n)
    return overlaps, rles


def count_flags(flags: Iterable[Any]) -> Counter[str]:
    """Flags per instance, from QA flags (``ledger.qa.Flag`` objects or their JSON
    form): each flag counts once for every instance it names."""
    counts: Counter[str] = Counter()
    for flag in flags:
        ids = flag["instance_ids"] if isinstance(flag, Mapping) else flag.instance_ids
        counts.update(set(ids))
    return counts


def open_flag_counts(store: Store, project: str) -> Counter[str]:
    """Open QA flags per instance: the flags the QA checks (``ledger.qa.run_qa`` with its
    default thresholds) raise on the current state of every instance."""
    from ledger.qa import load_state, run_qa

    return count_flags(run_qa(load_state(store, project)).flags)


def complexity_score(
    shape: int,
    area: int,
    overlaps: int,
    open_flags: int,
    rejections: int,
    weights: ComplexityWeights | None = None,
) -> float:
    """The documented score (see the module docstring), rounded to 2 decimals."""
    w = weights or ComplexityWeights()
    score = (
        w.shape * math.log2(1 + shape)
        + w.area * math.log10(1 + area)
        + w.overlap * overlaps
        + w.flag * open_flags
        + w.rejection * rejections
    )
    return round(score, 2)


def _with_complexity(
    store: Store,
    project: str,
    pending: dict[str, _Pending],
    weights: ComplexityWeights,
    open_flags: Mapping[str, int] | None,
) -> None:
    if not pending:
        return
    rejections = _rejections(store, project, list(pending))
    overlaps, rles = _overlaps(store, project, pending)
    flags = open_flag_counts(store, project) if open_flags is None else open_flags
    for instance_id, p in pending.items():
        shape, kind = _shape(json.loads(p.segmentation), rles[instance_id]["counts"])
        c = Complexity(
            shape=shape,
            shape_kind=kind,
            area=p.area,
            overlaps=overlaps.get(instance_id, 0),
            open_flags=int(flags.get(instance_id, 0)),
            rejections=rejections[instance_id],
            score=0.0,
        )
        score = complexity_score(c.shape, c.area, c.overlaps, c.open_flags, c.rejections, weights)
        p.item = replace(p.item, complexity=replace(c, score=score))


def review_queue(
    store: Store,
    project: str,
    *,
    reviewer: str | None = None,
    now: datetime | None = None,
    weights: ComplexityWeights | None = None,
    open_flags: Mapping[str, int] | None = None,
    with_complexity: bool = True,
) -> list[QueueItem]:
    """Revisions awaiting review, oldest first; with ``reviewer``, only those assigned
    to that reviewer (a reviewer's own queue). ``open_flags`` (instance id -> count)
    replaces the QA run; ``with_complexity=False`` skips the score altogether."""
    _project(store, project)
    pending = _pending(store, project, _now(now))
    if reviewer is not None:
        pending = {k: p for k, p in pending.items() if p.item.assignee == reviewer}
    if with_complexity:
        _with_complexity(store, project, pending, weights or ComplexityWeights(), open_flags)
    return [p.item for p in pending.values()]


# --- load, eligibility, routing ------------------------------------------------------


def open_assignment_counts(store: Store, project: str) -> Counter[str]:
    """Open assignments per reviewer: the latest assignment of a live instance's current
    revision that has no decision yet."""
    pending = _pending(store, project, datetime.now(UTC))
    return Counter(p.item.assignee for p in pending.values() if p.item.assignee is not None)


@dataclass(frozen=True)
class _Reviewer:
    actor_id: str
    kind: str
    skills: frozenset[str]
    organization: str | None


def _reviewers(store: Store, project: str) -> list[_Reviewer]:
    out = []
    for r in store.query(
        "SELECT actor_id, kind, roles, skills, organization FROM actors"
        " WHERE project = ? ORDER BY actor_id",
        (project,),
    ):
        if "review" in json.loads(r["roles"]):
            out.append(
                _Reviewer(
                    r["actor_id"], r["kind"], frozenset(json.loads(r["skills"])), r["organization"]
                )
            )
    return out


def _exclusion(reviewer: _Reviewer, p: _Pending, rule: Rule, load: Counter[str]) -> str | None:
    """Why ``reviewer`` may not take ``p`` under ``rule``, or None if they may."""
    if reviewer.actor_id in p.authors:
        if reviewer.actor_id == p.item.annotator:
            return f"{reviewer.actor_id} drew revision {p.item.revision}"
        return f"{reviewer.actor_id} drew an earlier revision"
    if rule.reviewers is not None and reviewer.actor_id not in rule.reviewers:
        return f"{reviewer.actor_id} is not among the rule's reviewers"
    missing = sorted(set(rule.skills) - reviewer.skills)
    if missing:
        return f"{reviewer.actor_id} lacks skill {', '.join(missing)}"
    if (
        rule.exclude_organization
        and p.item.organization is not None
        and reviewer.organization == p.item.organization
    ):
        return f"{reviewer.actor_id} is of the annotator's organization {p.item.organization}"
    if rule.max_open is not None and load[reviewer.actor_id] >= rule.max_open:
        n = load[reviewer.actor_id]
        return f"{reviewer.actor_id} has {n} open assignments (max {rule.max_open})"
    return None


@dataclass(frozen=True)
class Assignment:
    instance_id: str
    revision: int
    assignee: str
    rule: str | None
    reason: str
    #: the assignee this replaces (a reassignment), if any
    previous: str | None = None
    #: sequence number of the ``review.assigned`` entry, once appended
    seq: int | None = None


@dataclass(frozen=True)
class Unassigned:
    instance_id: str
    revision: int
    rule: str | None
    reason: str


@dataclass
class RoutingPlan:
    project: str
    assignments: list[Assignment] = field(default_factory=list)
    unassigned: list[Unassigned] = field(default_factory=list)
    #: assignments that could not be appended (the instance changed meanwhile)
    skipped: list[Unassigned] = field(default_factory=list)
    #: instances left with their current, still eligible, assignee
    kept: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "assignments": [asdict(a) for a in self.assignments],
            "unassigned": [asdict(u) for u in self.unassigned],
            "skipped": [asdict(s) for s in self.skipped],
            "kept": self.kept,
        }


def _summarize(reasons: list[str], limit: int = 8) -> str:
    shown = "; ".join(reasons[:limit])
    return shown + (f"; and {len(reasons) - limit} more" if len(reasons) > limit else "")


def plan_routes(
    store: Store,
    project: str,
    rules: RoutingRules,
    *,
    reassign: bool = False,
    now: datetime | None = None,
    open_flags: Mapping[str, int] | None = None,
) -> RoutingPlan:
    """Decide, without writing anything, who should review each unassigned revision.

    With ``reassign``, an assigned revision whose assignee is no longer eligible under
    the first matching rule is reassigned too."""
    _project(store, project)
    pending = _pending(store, project, _now(now))
    _with_complexity(store, project, pending, rules.weights, open_flags)
    reviewers = _reviewers(store, project)
    load: Counter[str] = Counter(
        p.item.assignee for p in pending.values() if p.item.assignee is not None
    )
    plan = RoutingPlan(project)
    for p in pending.values():
        item = p.item
        assert item.complexity is not None
        score = item.complexity.score
        rule = next((r for r in rules.rules if r.matches(item.category_id, score)), None)
        current = item.assignee
        if rule is None:
            if current is None:
                plan.unassigned.append(
                    Unassigned(
                        item.instance_id,
                        item.revision,
                        None,
                        f"no rule matches category {item.category_id} with complexity {score:g}",
                    )
                )
            else:
                plan.kept += 1
            continue
        if current is not None:
            if not reassign:
                plan.kept += 1
                continue
            holder = next((r for r in reviewers if r.actor_id == current), None)
            # the current assignee's own assignment does not count against their cap
            own = Counter(load)
            own[current] -= 1
            why = (
                f"{current} no longer has the review role"
                if holder is None
                else _exclusion(holder, p, rule, own)
            )
            if why is None:
                plan.kept += 1
                continue
            load[current] -= 1
        excluded: list[str] = []
        eligible: list[_Reviewer] = []
        for r in reviewers:
            why_not = _exclusion(r, p, rule, load)
            if why_not is None:
                eligible.append(r)
            else:
                excluded.append(why_not)
        if current is not None:
            eligible = [r for r in eligible if r.actor_id != current]
        if not eligible:
            if not reviewers:
                reason = f"rule {rule.id}: no eligible reviewer: no actor has the review role"
            else:
                reason = (
                    f"rule {rule.id}: no eligible reviewer among {len(reviewers)}: "
                    + _summarize(excluded)
                )
            if current is not None:
                reason += f" (left with {current})"
                plan.kept += 1
                load[current] += 1
            plan.unassigned.append(Unassigned(item.instance_id, item.revision, rule.id, reason))
            continue
        names = {r.actor_id for r in eligible}
        if p.previous_assignee in names:
            chosen = p.previous_assignee
            why_chosen = "reviewed an earlier revision"
        else:
            best = min(eligible, key=lambda r: (load[r.actor_id], r.actor_id))
            chosen = best.actor_id
            why_chosen = f"fewest open assignments ({load[chosen]})"
        assert chosen is not None
        load[chosen] += 1
        reason = f"rule {rule.id}: {why_chosen}"
        if current is not None:
            reason = f"reassigned from {current} ({why}); {reason}"
        plan.assignments.append(
            Assignment(item.instance_id, item.revision, chosen, rule.id, reason, current)
        )
    return plan


def _assignment_event(
    instance_id: str, revision: int, assignee: str, rule: str | None, reason: str | None, actor: str
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "instance_id": instance_id,
        "revision": revision,
        "assignee": assignee,
    }
    if rule is not None:
        payload["rule"] = rule
    if reason:
        payload["reason"] = reason[:2000]
    return {
        "id": str(uuid.uuid4()),
        "type": "review.assigned",
        "actor": actor,
        "client_time": format_time(datetime.now(UTC)),
        "tool": dict(_TOOL),
        "payload": payload,
    }


def route(
    ledger: Ledger,
    project: str,
    rules: RoutingRules,
    *,
    principal: str,
    actor: str = ROUTER_ACTOR,
    dry_run: bool = False,
    reassign: bool = False,
    now: datetime | None = None,
    open_flags: Mapping[str, int] | None = None,
) -> RoutingPlan:
    """Plan the routes and append one ``review.assigned`` event per assignment.

    Events go in batches; if a batch is refused because an instance changed meanwhile
    (a stale revision), its events are appended one by one and the refused ones are
    reported in ``skipped``."""
    plan = plan_routes(
        ledger.store, project, rules, reassign=reassign, now=now, open_flags=open_flags
    )
    if dry_run or not plan.assignments:
        return plan
    done: list[Assignment] = []
    step = max(1, ledger.max_batch)
    for start in range(0, len(plan.assignments), step):
        batch = plan.assignments[start : start + step]
        events = [
            _assignment_event(a.instance_id, a.revision, a.assignee, a.rule, a.reason, actor)
            for a in batch
        ]
        try:
            result = ledger.append(project, events, principal)
        except (Conflict, InvalidInput):
            for a, ev in zip(batch, events, strict=True):
                try:
                    one = ledger.append(project, [ev], principal)
                except (Conflict, InvalidInput) as e:
                    plan.skipped.append(Unassigned(a.instance_id, a.revision, a.rule, str(e)))
                    continue
                done.append(replace(a, seq=one.results[0].seq))
            continue
        done.extend(replace(a, seq=r.seq) for a, r in zip(batch, result.results, strict=True))
    plan.assignments = done
    return plan


def assign(
    ledger: Ledger,
    project: str,
    instance_id: str,
    assignee: str,
    *,
    principal: str,
    actor: str = ROUTER_ACTOR,
    reason: str | None = None,
) -> Assignment:
    """Assign (or reassign) the current revision of one instance by hand.

    Refuses anyone who drew any revision of the instance, and anyone without the review
    role (the latter is also refused by the ledger itself)."""
    store = ledger.store
    _project(store, project)
    pending = _pending(store, project, datetime.now(UTC))
    p = pending.get(instance_id)
    if p is None:
        rows = store.query(
            "SELECT deleted, review, revision FROM instances WHERE project = ? AND instance_id = ?",
            (project, instance_id),
        )
        if not rows:
            raise NotFound(f"instance {instance_id!r} does not exist in {project}")
        r = rows[0]
        state = "deleted" if r["deleted"] else f"already decided ({r['review']})"
        raise Conflict(f"instance {instance_id!r} revision {r['revision']} is {state}")
    if assignee in p.authors:
        raise InvalidInput.field(
            "assignee",
            f"actor {assignee!r} drew a revision of {instance_id!r} and may not review it",
        )
    previous = p.item.assignee
    if previous == assignee:
        raise Conflict(
            f"{instance_id!r} revision {p.item.revision} is already assigned to {assignee}"
        )
    text = reason or ("reassigned by hand" if previous else "assigned by hand")
    if previous is not None and not text.startswith("reassigned"):
        text = f"reassigned from {previous}: {text}"
    ev = _assignment_event(instance_id, p.item.revision, assignee, None, text, actor)
    result = ledger.append(project, [ev], principal)
    return Assignment(
        instance_id, p.item.revision, assignee, None, text, previous, result.results[0].seq
    )


# --- audit and metrics ------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewAudit:
    seq: int
    instance_id: str
    revision: int
    reviewer: str
    decision: str
    #: the assignee of that revision when the decision was recorded, if any
    assignee: str | None

    @property
    def by_assignee(self) -> bool:
        return self.assignee == self.reviewer

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "by_assignee": self.by_assignee}


def review_audit(
    store: Store, project: str, *, only_off_assignment: bool = False
) -> list[ReviewAudit]:
    """Every review decision beside the assignee of its revision at that moment; with
    ``only_off_assignment``, only decisions by someone other than the assignee (or on
    an unassigned revision)."""
    _project(store, project)
    assigned: dict[tuple[str, int], list[tuple[int, str]]] = defaultdict(list)
    for a in store.iter_query(
        "SELECT seq, instance_id, revision, assignee FROM assignments"
        " WHERE project = ? ORDER BY seq",
        (project,),
    ):
        assigned[(a["instance_id"], int(a["revision"]))].append((int(a["seq"]), a["assignee"]))
    out: list[ReviewAudit] = []
    for r in store.iter_query(
        "SELECT seq, instance_id, revision, reviewer, decision FROM reviews"
        " WHERE project = ? ORDER BY seq",
        (project,),
    ):
        seq = int(r["seq"])
        before = [
            name for s, name in assigned.get((r["instance_id"], int(r["revision"])), []) if s < seq
        ]
        audit = ReviewAudit(
            seq,
            r["instance_id"],
            int(r["revision"]),
            r["reviewer"],
            r["decision"],
            before[-1] if before else None,
        )
        if not only_off_assignment or not audit.by_assignee:
            out.append(audit)
    return out


@dataclass(frozen=True)
class QueueMetrics:
    project: str
    overdue_after_seconds: float
    pending: int
    assigned: int
    unassigned: int
    overdue: int
    overdue_assigned: int
    oldest_age_seconds: float | None
    median_age_seconds: float | None
    #: count of pending revisions per age bucket (``AGE_BUCKETS``)
    age_buckets: dict[str, int]
    #: per assignee: open, overdue, oldest_age_seconds
    by_assignee: dict[str, dict[str, float]]
    #: the same summed per organization of the assignee ("(none)" without one)
    by_organization: dict[str, dict[str, float]]
    #: decisions recorded by someone other than the assignee of the revision
    off_assignment_reviews: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


NO_ORGANIZATION = "(none)"


def queue_metrics(
    store: Store,
    project: str,
    overdue_after: timedelta | float,
    *,
    now: datetime | None = None,
) -> QueueMetrics:
    """Aging and overdue counts of the review queue. ``overdue_after`` is a timedelta or
    seconds; an item is overdue when its age is at least that."""
    limit = (
        overdue_after.total_seconds()
        if isinstance(overdue_after, timedelta)
        else float(overdue_after)
    )
    if not math.isfinite(limit) or limit < 0:
        raise InvalidInput.field("overdue_after", f"must be a non-negative duration, got {limit}")
    _project(store, project)
    items = [p.item for p in _pending(store, project, _now(now)).values()]
    ages = sorted(i.age_seconds for i in items)
    buckets = dict.fromkeys((name for name, _ in AGE_BUCKETS), 0)
    for age in ages:
        name = next(n for n, upper in AGE_BUCKETS if age < upper)
        buckets[name] += 1
    by_assignee: dict[str, dict[str, float]] = {}
    for i in items:
        if i.assignee is None:
            continue
        row = by_assignee.setdefault(
            i.assignee, {"open": 0, "overdue": 0, "oldest_age_seconds": 0.0}
        )
        row["open"] += 1
        row["overdue"] += int(i.age_seconds >= limit)
        row["oldest_age_seconds"] = max(row["oldest_age_seconds"], i.age_seconds)
    orgs = actor_organizations(store, project)
    by_org: dict[str, dict[str, float]] = {}
    for name, row in sorted(by_assignee.items()):
        org = orgs.get(name) or NO_ORGANIZATION
        agg = by_org.setdefault(org, {"open": 0, "overdue": 0, "oldest_age_seconds": 0.0})
        agg["open"] += row["open"]
        agg["overdue"] += row["overdue"]
        agg["oldest_age_seconds"] = max(agg["oldest_age_seconds"], row["oldest_age_seconds"])
    median = None
    if ages:
        mid = len(ages) // 2
        median = ages[mid] if len(ages) % 2 else (ages[mid - 1] + ages[mid]) / 2
    return QueueMetrics(
        project=project,
        overdue_after_seconds=limit,
        pending=len(items),
        assigned=sum(1 for i in items if i.assignee is not None),
        unassigned=sum(1 for i in items if i.assignee is None),
        overdue=sum(1 for i in items if i.age_seconds >= limit),
        overdue_assigned=sum(1 for i in items if i.assignee is not None and i.age_seconds >= limit),
        oldest_age_seconds=ages[-1] if ages else None,
        median_age_seconds=median,
        age_buckets=buckets,
        by_assignee=dict(sorted(by_assignee.items())),
        by_organization=by_org,
        off_assignment_reviews=len(review_audit(store, project, only_off_assignment=True)),
    )


def group_by_organization(
    rows: Iterable[Mapping[str, Any]],
    organizations: Mapping[str, str | None],
    *,
    actor_key: str = "actor",
) -> dict[str, dict[str, float]]:
    """Sum the numeric fields of per-actor metric rows per organization.

    Each result row also counts ``actors``; actors without an organization (or not
    registered) are grouped under ``"(none)"``. Non-numeric fields are dropped."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if actor_key not in row:
            raise InvalidInput.field(
                actor_key, f"metric row has no {actor_key!r} field: {dict(row)!r}"
            )
        org = organizations.get(str(row[actor_key])) or NO_ORGANIZATION
        agg = out.setdefault(org, {"actors": 0})
        agg["actors"] += 1
        for key, value in row.items():
            if key == actor_key or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            agg[key] = agg.get(key, 0) + value
    return dict(sorted(out.items()))


def organization_summary(store: Store, project: str) -> list[dict[str, Any]]:
    """Work per organization: actors, revisions drawn, decisions received on them
    (accepted, rejected incl. needs_changes, acceptance rate), decisions given, and open
    review assignments."""
    _project(store, project)
    orgs = actor_organizations(store, project)
    per_actor: dict[str, dict[str, float]] = {a: {} for a in orgs}

    def bump(actor: str, key: str, n: float = 1) -> None:
        row = per_actor.setdefault(actor, {})
        row[key] = row.get(key, 0) + n

    for actor in per_actor:
        for key in ("revisions", "accepted", "rejected", "decisions_given", "open_assignments"):
            per_actor[actor][key] = 0
    for r in store.query(
        "SELECT actor, COUNT(*) AS n FROM revisions WHERE project = ? GROUP BY actor", (project,)
    ):
        bump(r["actor"], "revisions", int(r["n"]))
    for r in store.query(
        "SELECT v.actor, d.decision, COUNT(*) AS n FROM reviews d"
        " JOIN revisions v ON v.project = d.project AND v.instance_id = d.instance_id"
        "  AND v.revision = d.revision"
        " WHERE d.project = ? GROUP BY v.actor, d.decision",
        (project,),
    ):
        bump(r["actor"], "accepted" if r["decision"] == "accept" else "rejected", int(r["n"]))
    for r in store.query(
        "SELECT reviewer, COUNT(*) AS n FROM reviews WHERE project = ? GROUP BY reviewer",
        (project,),
    ):
        bump(r["reviewer"], "decisions_given", int(r["n"]))
    for name, n in open_assignment_counts(store, project).items():
        bump(name, "open_assignments", n)
    grouped = group_by_organization(({"actor": a, **m} for a, m in sorted(per_actor.items())), orgs)
    out = []
    for org, m in grouped.items():
        judged = m.get("accepted", 0) + m.get("rejected", 0)
        out.append(
            {
                "organization": org,
                **{k: int(v) for k, v in m.items()},
                "acceptance_rate": round(m.get("accepted", 0) / judged, 4) if judged else None,
            }
        )
    return out
