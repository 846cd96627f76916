"""Review queue, complexity, routing rules, assignment events, audit and queue metrics."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import Conflict, InvalidInput, NotFound
from ledger.qa import load_state, run_qa
from ledger.routing import (
    RoutingRules,
    actor_organizations,
    assign,
    complexity_score,
    count_flags,
    group_by_organization,
    load_rules,
    open_assignment_counts,
    organization_summary,
    parse_rules,
    plan_routes,
    queue_metrics,
    review_audit,
    review_queue,
    route,
)
from ledger.service import AppendResult, Ledger
from ledger.store import Store
from tests import factory as f

P = "proj"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lg(store: Store, clock: Clock) -> Ledger:
    """A ledger whose server clock the test moves."""
    ledger = Ledger(store, clock=clock)
    ledger.append(
        P,
        [
            f.project_created(),
            f.actor("alice", organization="acme"),
            f.actor("bob", organization="vendorx"),
            f.actor("rita", "reviewer", organization="acme", skills=["medical"]),
            f.actor("rob", "reviewer", organization="vendorx"),
            f.actor("sam", "reviewer", organization="inhouse", skills=["medical", "hard"]),
            f.guideline(),
            f.category(1, "car"),
            f.category(2, "lesion"),
            f.image("img-1"),
            f.image("img-2"),
        ],
        "t",
    )
    return ledger


def rules(*items: dict[str, Any], **extra: Any) -> RoutingRules:
    return parse_rules({"rules": list(items), **extra})


def assignments(store: Store) -> list[tuple[str, int, str, str | None]]:
    rows = store.query(
        "SELECT instance_id, revision, assignee, rule FROM assignments WHERE project = ? ORDER BY seq",
        (P,),
    )
    return [(r["instance_id"], r["revision"], r["assignee"], r["rule"]) for r in rows]


def test_queue_lists_pending_revisions_with_age_and_complexity(lg: Ledger, clock: Clock) -> None:
    lg.append(P, [f.mask_created("a", actor_id="alice")], "t")  # box 15x10 at (5, 5)
    clock.now = T0 + timedelta(hours=1)
    overlapping = f.box_rle(x0=10, y0=8, x1=30, y1=20)
    lg.append(P, [f.mask_created("b", actor_id="bob", segmentation=overlapping)], "t")
    polygon = [[40.0, 5.0, 60.0, 5.0, 60.0, 25.0, 40.0, 25.0, 50.0, 30.0]]
    lg.append(P, [f.mask_created("c", actor_id="bob", segmentation=polygon)], "t")
    lg.append(P, [f.mask_created("d", image_id="img-2", actor_id="alice")], "t")
    lg.append(P, [f.review("d", 1, "accept")], "t")  # decided: not in the queue

    items = review_queue(lg.store, P, now=T0 + timedelta(hours=3))
    assert [i.instance_id for i in items] == ["a", "b", "c"]  # oldest first
    a, b, c = items
    assert (a.annotator, a.organization, a.revision) == ("alice", "acme", 1)
    assert a.age_seconds == 3 * 3600 and b.age_seconds == 2 * 3600
    assert a.complexity is not None and b.complexity is not None and c.complexity is not None
    assert (a.complexity.overlaps, b.complexity.overlaps, c.complexity.overlaps) == (1, 1, 0)
    assert (a.complexity.shape_kind, a.complexity.area) == ("rle", 150)
    assert a.complexity.shape == 31  # 15 columns: a run of 0s and one of 1s each, and the tail
    assert (c.complexity.shape_kind, c.complexity.shape) == ("polygon", 5)
    # the QA overlap check flags a and b (by default the queue runs the QA checks)
    flags = count_flags(run_qa(load_state(lg.store, P)).flags)
    assert flags["a"] >= 1 and flags["b"] >= 1
    assert [i.complexity.open_flags for i in items if i.complexity] == [flags[k] for k in "abc"]
    assert a.complexity.score == complexity_score(31, 150, 1, flags["a"], 0)
    assert count_flags([{"instance_ids": ["a", "b", "a"]}, {"instance_ids": ["b"]}]) == {
        "a": 1,
        "b": 2,
    }
    skipped = review_queue(lg.store, P, now=T0, open_flags={})[0].complexity
    assert skipped is not None and skipped.open_flags == 0
    assert b.complexity.score > a.complexity.score  # bigger mask, same overlaps


def test_rejections_and_open_flags_raise_the_score(lg: Ledger) -> None:
    lg.append(P, [f.mask_created("a", actor_id="alice")], "t")
    before = review_queue(lg.store, P)[0].complexity
    lg.append(
        P,
        [
            f.review("a", 1, "reject"),
            f.mask_edited("a", 1, actor_id="alice", segmentation=f.box_rle()),
        ],
        "t",
    )
    lg.append(
        P,
        [
            f.review("a", 2, "needs_changes"),
            f.mask_edited("a", 2, actor_id="alice", segmentation=f.box_rle()),
        ],
        "t",
    )
    after = review_queue(lg.store, P, open_flags={"a": 2})[0]
    assert before is not None and after.complexity is not None
    assert after.revision == 3 and after.complexity.rejections == 2
    assert after.complexity.open_flags == 2
    assert after.complexity.score == pytest.approx(before.score + 2 * 2 + 3 * 2)


def test_routing_never_assigns_the_annotator(lg: Ledger, store: Store) -> None:
    # everybody annotates and reviews; each draws some masks
    people = ["alice", "bob", "rita", "rob", "sam"]
    lg.append(P, [f.actor(p, "annotator", roles=["annotate", "review"]) for p in people], "t")
    lg.append(
        P,
        [
            f.mask_created(f"m{k}", actor_id=people[k % 5], segmentation=f.box_rle(x0=k, x1=k + 3))
            for k in range(20)
        ],
        "t",
    )
    # bob re-draws m0 (alice's): neither may review it now
    lg.append(P, [f.mask_edited("m0", 1, actor_id="bob")], "t")
    plan = route(lg, P, rules({"id": "all"}), principal="t")
    assert len(plan.assignments) == 20 and not plan.unassigned
    drew = {
        r["instance_id"]: r["actor"]
        for r in store.query("SELECT instance_id, actor FROM revisions WHERE project = ?", (P,))
    }
    for inst, _rev, assignee, rule in assignments(store):
        assert assignee != drew[inst] and rule == "all"
    m0 = next(a for a in assignments(store) if a[0] == "m0")
    assert m0[1] == 2 and m0[2] not in {"alice", "bob"}
    load = Counter(a[2] for a in assignments(store))
    assert max(load.values()) - min(load.values()) <= 1  # balanced by open assignments
    assert open_assignment_counts(store, P) == load


def test_no_eligible_reviewer_leaves_it_unassigned_and_says_why(lg: Ledger, store: Store) -> None:
    lg.append(
        P,
        [f.actor("alice", organization="acme", skills=["medical"], roles=["annotate", "review"])],
        "t",
    )
    lg.append(P, [f.mask_created("a", actor_id="alice", category_id=2)], "t")
    plan = route(
        lg,
        P,
        rules(
            {
                "id": "lesions",
                "categories": [2],
                "skills": ["medical"],
                "reviewers": ["alice", "rob", "rita"],
                "exclude_organization": True,
            }
        ),
        principal="t",
    )
    assert plan.assignments == [] and assignments(store) == []
    (u,) = plan.unassigned
    assert (u.instance_id, u.rule) == ("a", "lesions")
    assert u.reason.startswith("rule lesions: no eligible reviewer among 4: ")
    assert "alice drew revision 1" in u.reason
    assert "rita is of the annotator's organization acme" in u.reason
    assert "rob lacks skill medical" in u.reason
    assert "sam is not among the rule's reviewers" in u.reason


def test_rules_match_by_category_and_complexity(lg: Ledger, store: Store) -> None:
    big = f.box_rle(x0=0, y0=0, x1=60, y1=45)
    lg.append(
        P,
        [
            f.mask_created("small", actor_id="alice"),
            f.mask_created("big", image_id="img-2", actor_id="alice", segmentation=big),
            f.mask_created(
                "lesion", actor_id="bob", category_id=2, segmentation=f.box_rle(x0=40, x1=50)
            ),
        ],
        "t",
    )
    scores = {i.instance_id: i.complexity.score for i in review_queue(store, P) if i.complexity}
    cut = (scores["small"] + scores["big"]) / 2
    plan = route(
        lg,
        P,
        rules(
            {"id": "hard-cars", "categories": [1], "complexity": {"min": cut}, "skills": ["hard"]},
            {
                "id": "easy-cars",
                "categories": [1],
                "complexity": {"max": cut},
                "reviewers": ["rob"],
            },
        ),
        principal="t",
    )
    assert sorted(assignments(store)) == [
        ("big", 1, "sam", "hard-cars"),
        ("small", 1, "rob", "easy-cars"),
    ]
    (u,) = plan.unassigned
    assert u.instance_id == "lesion" and u.rule is None
    assert u.reason == f"no rule matches category 2 with complexity {scores['lesion']:g}"


def test_exclude_organization_and_load_balancing(lg: Ledger, store: Store) -> None:
    lg.append(
        P,
        [
            f.mask_created(f"v{k}", actor_id="bob", segmentation=f.box_rle(x0=k, x1=k + 2))
            for k in range(4)
        ],
        "t",
    )
    plan = route(
        lg,
        P,
        rules({"id": "vendor-check", "exclude_organization": True, "reviewers": ["rob", "rita"]}),
        principal="t",
    )
    # rob is of bob's organization vendorx: everything goes to rita
    assert {a.assignee for a in plan.assignments} == {"rita"} and len(plan.assignments) == 4
    lg.append(
        P,
        [
            f.mask_created(
                f"w{k}", actor_id="alice", segmentation=f.box_rle(x0=k, x1=k + 2), image_id="img-2"
            )
            for k in range(6)
        ],
        "t",
    )
    route(lg, P, rules({"id": "any", "reviewers": ["rob", "rita"]}), principal="t")
    # rita had 4 open: rob takes the first 4 new ones, then they alternate
    assert open_assignment_counts(store, P) == Counter({"rita": 5, "rob": 5})
    assert [a[2] for a in assignments(store)[4:]] == ["rob", "rob", "rob", "rob", "rita", "rob"]


def test_max_open_caps_a_reviewer(lg: Ledger) -> None:
    lg.append(
        P,
        [
            f.mask_created(f"v{k}", actor_id="bob", segmentation=f.box_rle(x0=k, x1=k + 2))
            for k in range(3)
        ],
        "t",
    )
    plan = route(
        lg, P, rules({"id": "capped", "reviewers": ["rita"], "max_open": 2}), principal="t"
    )
    assert [a.assignee for a in plan.assignments] == ["rita", "rita"]
    (u,) = plan.unassigned
    assert u.instance_id == "v2" and "rita has 2 open assignments (max 2)" in u.reason


def test_dry_run_appends_nothing(lg: Ledger, store: Store) -> None:
    lg.append(P, [f.mask_created("a", actor_id="alice")], "t")
    size = store.head(P)
    plan = route(lg, P, rules({"id": "all"}), principal="t", dry_run=True)
    assert [(a.instance_id, a.assignee, a.seq) for a in plan.assignments] == [("a", "rita", None)]
    assert store.head(P) == size and assignments(store) == []


def test_reassignment_when_the_assignee_is_no_longer_eligible(lg: Ledger, store: Store) -> None:
    lg.append(P, [f.mask_created("a", actor_id="alice")], "t")
    route(lg, P, rules({"id": "plain", "reviewers": ["rob"]}), principal="t")
    stricter = rules({"id": "medical", "skills": ["medical"], "reviewers": ["rob", "sam"]})
    kept = route(lg, P, stricter, principal="t")  # without reassign: left alone
    assert kept.kept == 1 and kept.assignments == []
    plan = route(lg, P, stricter, principal="t", reassign=True)
    (a,) = plan.assignments
    assert (a.assignee, a.previous) == ("sam", "rob") and a.seq is not None
    assert a.reason.startswith("reassigned from rob (rob lacks skill medical); rule medical")
    assert assignments(store) == [("a", 1, "rob", "plain"), ("a", 1, "sam", "medical")]
    (item,) = review_queue(store, P, reviewer="sam")
    assert (item.instance_id, item.assignee, item.rule) == ("a", "sam", "medical")
    assert review_queue(store, P, reviewer="rob") == []
    entry = json.loads(dict(store.iter_entries(P))[a.seq])
    assert entry["event"]["type"] == "review.assigned"
    assert entry["event"]["payload"]["reason"] == a.reason


def test_the_earlier_reviewer_keeps_the_instance_after_an_edit(lg: Ledger, store: Store) -> None:
    lg.append(
        P,
        [
            f.mask_created("a", actor_id="alice"),
            f.mask_created("b", actor_id="alice", image_id="img-2"),
        ],
        "t",
    )
    route(lg, P, rules({"id": "r", "reviewers": ["rob", "sam"]}), principal="t")
    first = dict((a[0], a[2]) for a in assignments(store))
    assert sorted(first.values()) == ["rob", "sam"]
    lg.append(
        P,
        [
            f.review("a", 1, "needs_changes", actor_id=first["a"]),
            f.mask_edited("a", 1, actor_id="alice"),
        ],
        "t",
    )
    plan = route(lg, P, rules({"id": "r", "reviewers": ["rob", "sam"]}), principal="t")
    (again,) = plan.assignments
    assert (again.instance_id, again.revision, again.assignee) == ("a", 2, first["a"])
    assert "reviewed an earlier revision" in again.reason


def test_a_change_during_routing_skips_only_that_instance(lg: Ledger, store: Store) -> None:
    lg.append(
        P,
        [
            f.mask_created("a", actor_id="alice"),
            f.mask_created("b", actor_id="alice", image_id="img-2"),
        ],
        "t",
    )

    class Racing(Ledger):
        raced = False

        def append(self, project: str, events: Sequence[Any], principal: str) -> AppendResult:
            if not self.raced:
                self.raced = True
                super().append(project, [f.mask_edited("a", 1, actor_id="bob")], "other")
            return super().append(project, events, principal)

    plan = route(Racing(store), P, rules({"id": "r"}), principal="t")
    assert [a.instance_id for a in plan.assignments] == ["b"]
    (s,) = plan.skipped
    assert s.instance_id == "a" and "stale revision" in s.reason
    assert [a[0] for a in assignments(store)] == ["b"]


def test_manual_assignment(lg: Ledger, store: Store) -> None:
    lg.append(P, [f.mask_created("a", actor_id="alice")], "t")
    lg.append(P, [f.actor("alice", organization="acme", roles=["annotate", "review"])], "t")
    with pytest.raises(InvalidInput, match="actor 'alice' drew a revision of 'a'"):
        assign(lg, P, "a", "alice", principal="t")
    first = assign(lg, P, "a", "rita", principal="t")
    assert (first.assignee, first.previous, first.reason) == ("rita", None, "assigned by hand")
    with pytest.raises(Conflict, match="already assigned to rita"):
        assign(lg, P, "a", "rita", principal="t")
    second = assign(lg, P, "a", "rob", principal="t", reason="rita is away")
    assert second.reason == "reassigned from rita: rita is away"
    with pytest.raises(NotFound, match="instance 'zz' does not exist"):
        assign(lg, P, "zz", "rob", principal="t")
    lg.append(P, [f.review("a", 1, "accept", actor_id="rob")], "t")
    with pytest.raises(Conflict, match=r"revision 1 is already decided \(accept\)"):
        assign(lg, P, "a", "sam", principal="t")


def test_review_audit_shows_decisions_by_others_than_the_assignee(lg: Ledger, store: Store) -> None:
    lg.append(
        P,
        [
            f.mask_created("a", actor_id="alice"),
            f.mask_created("b", actor_id="alice", image_id="img-2"),
            f.mask_created("c", actor_id="bob", segmentation=f.box_rle(x0=30, x1=40)),
        ],
        "t",
    )
    assign(lg, P, "a", "rita", principal="t")
    assign(lg, P, "b", "rita", principal="t")
    lg.append(
        P,
        [
            f.review("a", 1, "accept", actor_id="rita"),
            f.review("b", 1, "accept", actor_id="rob"),
            f.review("c", 1, "reject", actor_id="sam"),
        ],
        "t",
    )
    audit = {r.instance_id: r for r in review_audit(store, P)}
    assert audit["a"].by_assignee and audit["a"].assignee == "rita"
    assert not audit["b"].by_assignee and (audit["b"].reviewer, audit["b"].assignee) == (
        "rob",
        "rita",
    )
    assert audit["c"].assignee is None
    off = review_audit(store, P, only_off_assignment=True)
    assert [r.instance_id for r in off] == ["b", "c"]
    assert off[0].to_json()["by_assignee"] is False


def test_queue_metrics_aging_and_overdue(lg: Ledger, store: Store, clock: Clock) -> None:
    lg.append(P, [f.mask_created("old", actor_id="alice")], "t")
    clock.now = T0 + timedelta(days=2)
    lg.append(P, [f.mask_created("mid", actor_id="alice", image_id="img-2")], "t")
    clock.now = T0 + timedelta(days=3, hours=12)
    lg.append(P, [f.mask_created("new", actor_id="bob", segmentation=f.box_rle(x0=30, x1=40))], "t")
    assign(lg, P, "old", "rob", principal="t")
    assign(lg, P, "new", "rita", principal="t")
    now = T0 + timedelta(days=4)
    m = queue_metrics(store, P, timedelta(days=1), now=now)
    assert (m.pending, m.assigned, m.unassigned) == (3, 2, 1)
    assert (m.overdue, m.overdue_assigned) == (2, 1)  # old (4 d) and mid (2 d)
    assert m.oldest_age_seconds == 4 * 86400 and m.median_age_seconds == 2 * 86400
    assert m.age_buckets == {"<1h": 0, "1h-1d": 1, "1d-7d": 2, ">=7d": 0}
    assert m.by_assignee == {
        "rita": {"open": 1, "overdue": 0, "oldest_age_seconds": 12 * 3600},
        "rob": {"open": 1, "overdue": 1, "oldest_age_seconds": 4 * 86400},
    }
    assert m.by_organization["acme"]["open"] == 1 and m.by_organization["vendorx"]["overdue"] == 1
    assert queue_metrics(store, P, 5 * 86400.0, now=now).overdue == 0
    with pytest.raises(InvalidInput, match="overdue_after: must be a non-negative duration"):
        queue_metrics(store, P, -1.0)
    with pytest.raises(NotFound, match="project nope does not exist"):
        queue_metrics(store, "nope", 60.0)


def test_grouping_by_organization(lg: Ledger, store: Store) -> None:
    lg.append(
        P,
        [
            f.mask_created("a", actor_id="alice"),
            f.mask_created("b", actor_id="bob", image_id="img-2"),
            f.mask_created("c", actor_id="bob", segmentation=f.box_rle(x0=30, x1=40)),
        ],
        "t",
    )
    lg.append(
        P,
        [
            f.review("a", 1, "accept", actor_id="rob"),
            f.review("b", 1, "reject"),
            f.review("c", 1, "accept", actor_id="sam"),
        ],
        "t",
    )
    orgs = actor_organizations(store, P)
    assert orgs["bob"] == "vendorx" and orgs["sam"] == "inhouse"
    grouped = group_by_organization(
        [
            {"actor": "alice", "masks": 3, "note": "x"},
            {"actor": "rita", "masks": 1},
            {"actor": "ghost", "masks": 2},
        ],
        orgs,
    )
    assert grouped == {"(none)": {"actors": 1, "masks": 2}, "acme": {"actors": 2, "masks": 4}}
    with pytest.raises(InvalidInput, match="metric row has no 'actor' field"):
        group_by_organization([{"who": "alice"}], orgs)
    summary = {row["organization"]: row for row in organization_summary(store, P)}
    assert summary["vendorx"]["revisions"] == 2
    assert (summary["vendorx"]["accepted"], summary["vendorx"]["rejected"]) == (1, 1)
    assert summary["vendorx"]["acceptance_rate"] == 0.5
    assert summary["acme"]["decisions_given"] == 1 and summary["inhouse"]["decisions_given"] == 1


def test_rules_files(tmp_path: Path) -> None:
    toml = tmp_path / "rules.toml"
    toml.write_text(
        '[weights]\noverlap = 5\n\n[[rules]]\nid = "medical"\ncategories = [2]\n'
        'skills = ["medical"]\nexclude_organization = true\ncomplexity = { min = 4.5 }\n\n'
        '[[rules]]\nid = "rest"\n'
    )
    loaded = load_rules(toml)
    assert [r.id for r in loaded.rules] == ["medical", "rest"] and loaded.weights.overlap == 5
    assert loaded.rules[0].matches(2, 5.0) and not loaded.rules[0].matches(2, 4.0)
    as_json = tmp_path / "rules.json"
    as_json.write_text(json.dumps(loaded.model_dump(mode="json")))
    assert load_rules(as_json) == loaded


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("r.yaml", "rules: []", r"r\.yaml: routing rules must be a \.toml or \.json file"),
        ("r.toml", "[[rules]\nid=1", "not valid TOML"),
        (
            "r.json",
            "{",
            "not valid JSON: Expecting property name enclosed in double quotes at line 1",
        ),
        ("r.json", "[]", "invalid routing rules in .*r.json: must be an object"),
        ("r.json", '{"rules": []}', r"rules: Tuple should have at least 1 item"),
        (
            "r.json",
            '{"rules": [{"id": "a", "colour": 1}]}',
            r"rules\[0\]\.colour: Extra inputs are not permitted",
        ),
        (
            "r.json",
            '{"rules": [{"id": "a", "complexity": {"min": 5, "max": 2}}]}',
            r"rules\[0\]\.complexity: min \(5\.0\) must be below max \(2\.0\)",
        ),
        ("r.json", '{"rules": [{"id": "a"}, {"id": "a"}]}', "rule id 'a' is used twice"),
        (
            "r.json",
            '{"rules": [{"id": "a", "categories": [0]}]}',
            r"rules\[0\]\.categories\[0\]: Input should be greater than or equal to 1",
        ),
        ("r.json", '{"rules": [{"id": "a", "max_open": 0}]}', r"rules\[0\]\.max_open"),
    ],
)
def test_malformed_rules_are_refused(tmp_path: Path, name: str, text: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidInput, match=match):
        load_rules(path)


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"routing rules file .*nope\.toml does not exist"):
        load_rules(tmp_path / "nope.toml")


def test_routing_an_unknown_project(store: Store) -> None:
    with pytest.raises(NotFound, match="project ghost does not exist"):
        plan_routes(store, "ghost", rules({"id": "r"}))
    with pytest.raises(InvalidInput, match="project names are 1-64 characters"):
        review_queue(store, "Bad Name")


# --- command line ---------------------------------------------------------------------------


def invoke_cli(db_url: str, tmp_path: Path, args: list[str]) -> tuple[int, str, str]:
    """Run the workflow commands as `ledger` would: (exit code, stdout, stderr)."""
    import click
    from click.testing import CliRunner

    from ledger.commands import register_all, workflow
    from ledger.commands.common import Context
    from ledger.config import Settings
    from ledger.errors import LedgerError

    @click.group()
    def cli() -> None:
        pass

    register_all(cli)
    workflow.register(cli)
    ctx = Context(Settings(database_url=db_url, data_dir=tmp_path / "data"))
    runner = CliRunner()
    try:
        result = runner.invoke(cli, args, obj=ctx, catch_exceptions=True)
    finally:
        if ctx._store is not None:
            ctx._store.close()
    code = result.exit_code
    err = result.stderr
    if isinstance(result.exception, LedgerError):
        code, err = result.exception.exit_code, err + f"error: {result.exception}\n"
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return code, result.stdout, err


def test_queue_route_and_assign_commands(lg: Ledger, db_url: str, tmp_path: Path) -> None:
    lg.append(
        P,
        [
            f.mask_created("a", actor_id="alice"),
            f.mask_created("b", actor_id="bob", image_id="img-2"),
        ],
        "t",
    )
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        '[[rules]]\nid = "outside"\nexclude_organization = true\nreviewers = ["rita", "rob"]\n'
    )
    code, out, _ = invoke_cli(db_url, tmp_path, ["queue", "-p", P])
    assert code == 0 and out.splitlines()[0].split()[:3] == ["INSTANCE", "REV", "IMAGE"]
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["a", "b"]
    code, out, err = invoke_cli(
        db_url, tmp_path, ["route", "-p", P, "--rules", str(rules_file), "--dry-run"]
    )
    assert code == 0 and "would assign a@1 to rob" in out and "would assign b@1 to rita" in out
    assert "2 would assign, 0 unassigned" in err
    code, out, _ = invoke_cli(
        db_url, tmp_path, ["route", "-p", P, "--rules", str(rules_file), "--format", "json"]
    )
    plan = json.loads(out)
    assert code == 0 and plan["dry_run"] is False
    assert [(a["instance_id"], a["assignee"]) for a in plan["assignments"]] == [
        ("a", "rob"),
        ("b", "rita"),
    ]
    code, out, _ = invoke_cli(
        db_url, tmp_path, ["queue", "-p", P, "--reviewer", "rob", "--format", "json"]
    )
    assert code == 0 and [i["instance_id"] for i in json.loads(out)] == ["a"]
    code, out, _ = invoke_cli(
        db_url, tmp_path, ["assign", "-p", P, "a", "sam", "--reason", "rob is away"]
    )
    assert code == 0 and "assigned a@1 to sam" in out and "reassigned from rob: rob is away" in out
    code, out, _ = invoke_cli(
        db_url, tmp_path, ["queue", "-p", P, "--summary", "--overdue-after", "0s"]
    )
    assert code == 0 and "2 awaiting review (2 assigned, 0 unassigned), 2 overdue after 0s" in out
    code, _, err = invoke_cli(db_url, tmp_path, ["assign", "-p", P, "a", "alice"])
    assert code == 2 and "actor 'alice' drew a revision of 'a'" in err
    code, _, err = invoke_cli(db_url, tmp_path, ["queue", "-p", P, "--overdue-after", "soon"])
    assert code == 2 and "expected a duration such as 24h" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [{"id": "x", "skils": ["a"]}]}')
    code, _, err = invoke_cli(db_url, tmp_path, ["route", "-p", P, "--rules", str(bad)])
    assert code == 2 and "rules[0].skils: Extra inputs are not permitted" in err
