"""Workforce metrics: pure computation over activity records, then read from real stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import InvalidInput, NotFound
from ledger.qa.metrics import (
    Activity,
    MaskOp,
    Rate,
    RateCard,
    ReviewOp,
    compute_metrics,
    load_rate_card,
    parse_period_bound,
    parse_rate_card,
    workforce_metrics,
)
from ledger.service import Ledger
from tests import factory as f


def t(day: int, hhmm: str) -> str:
    return f"2026-11-0{day}T{hhmm}:00.000000Z"


OPS = [
    MaskOp(10, "i1", 1, "created", "alice", t(1, "09:00")),
    MaskOp(11, "i2", 1, "created", "alice", t(1, "09:10")),
    MaskOp(12, "j1", 1, "created", "bob", t(1, "11:00")),
    MaskOp(16, "i2", 2, "edited", "alice", t(2, "09:00")),
    MaskOp(18, "i3", 1, "created", "alice", t(2, "10:00")),
    MaskOp(19, "j1", 2, "edited", "bob", t(2, "11:00")),
    MaskOp(20, "i1", 2, "edited", "alice", t(2, "12:00")),
]
REVIEWS = [
    ReviewOp(13, "i1", 1, "rita", "accept", t(1, "12:00")),
    ReviewOp(14, "i2", 1, "rita", "reject", t(1, "12:05")),
    ReviewOp(15, "j1", 1, "rita", "needs_changes", t(1, "12:10")),
    ReviewOp(17, "i2", 2, "rita", "accept", t(2, "09:30")),
]


def activity(start: str | None = None, end: str | None = None) -> Activity:
    events = [(op.actor, op.recorded_at) for op in OPS] + [
        (r.reviewer, r.recorded_at) for r in REVIEWS
    ]
    inside = [
        (a, m) for a, m in events if (start is None or m >= start) and (end is None or m < end)
    ]
    orgs = {"alice": "acme", "bob": "acme", "rita": None}
    return Activity("demo", start, end, OPS, REVIEWS, inside, orgs)


def group(report: Any, name: str) -> dict[str, Any]:
    return next(g for g in report.groups if g["name"] == name)


def test_counts_rates_and_latency_per_actor() -> None:
    report = compute_metrics(activity())
    alice, bob, rita = (group(report, n) for n in ("alice", "bob", "rita"))
    assert (alice["created"], alice["edited"], alice["rework_edits"]) == (3, 2, 1)
    assert alice["rework_rate"] == 0.5  # the edit of i1 followed an acceptance, not rework
    assert (alice["first_reviewed"], alice["first_pass_acceptance"]) == (2, 0.5)
    assert (alice["reviews_received"], alice["rejection_rate"]) == (
        3,
        pytest.approx(1 / 3, abs=1e-6),
    )
    assert alice["review_latency_s"] == {"median": 10650.0, "mean": 10650.0}
    assert alice["active_days"] == 2 and alice["created_per_day"] == 1.5
    assert alice["organization"] == "acme"
    assert alice["cost"] is None and alice["cost_per_instance"] is None  # no rate card
    assert (bob["first_pass_acceptance"], bob["rejection_rate"], bob["rework_rate"]) == (
        0.0,
        1.0,
        1.0,
    )
    assert bob["review_latency_s"]["median"] == 4200.0
    assert (rita["reviewed"], rita["accepted"], rita["rejected"], rita["needs_changes"]) == (
        4,
        2,
        1,
        1,
    )
    assert rita["created"] == 0 and rita["first_pass_acceptance"] is None
    assert rita["per_day"] == [
        {"day": "2026-11-01", "created": 0, "edited": 0, "deleted": 0, "reviewed": 3},
        {"day": "2026-11-02", "created": 0, "edited": 0, "deleted": 0, "reviewed": 1},
    ]
    total = report.project_totals
    assert (total["created"], total["edited"], total["reviewed"], total["actors"]) == (4, 3, 4, 3)
    assert total["first_pass_acceptance"] == pytest.approx(1 / 3, abs=1e-6)
    assert total["rejection_rate"] == 0.5 and total["rework_rate"] == pytest.approx(2 / 3, abs=1e-6)


def test_a_period_counts_its_own_events_and_reads_history_before_it() -> None:
    report = compute_metrics(activity(t(2, "00:00"), t(3, "00:00")))
    alice = group(report, "alice")
    assert (alice["created"], alice["edited"], alice["rework_edits"]) == (1, 2, 1)
    assert alice["first_reviewed"] == 0 and alice["first_pass_acceptance"] is None
    assert group(report, "rita")["reviewed"] == 1
    assert report.document["period"] == {"from": t(2, "00:00"), "to": t(3, "00:00")}


def test_hours_and_cost_from_a_rate_card() -> None:
    card = RateCard(
        "EUR",
        Rate(per_instance=0.5),
        actors={"alice": Rate(per_hour=30.0), "rita": Rate(per_review=0.1)},
    )
    report = compute_metrics(activity(), rate_card=card)
    alice = group(report, "alice")
    # 09:00 -> 09:10 on day 1 is the only gap under 30 minutes
    assert alice["hours"] == pytest.approx(10 / 60, abs=1e-6)
    assert alice["cost"] == pytest.approx(5.0, abs=1e-6)
    assert group(report, "bob")["cost"] == 0.5 and group(report, "rita")["cost"] == pytest.approx(
        0.4
    )
    assert report.project_totals["cost_per_instance"] == pytest.approx(5.9 / 4, abs=1e-6)
    longer = RateCard("EUR", Rate(per_instance=0.5), session_gap_minutes=90)
    assert group(compute_metrics(activity(), rate_card=longer), "alice")["hours"] == pytest.approx(
        70 / 60, abs=1e-6
    )


def test_by_organization_and_reproducible_bytes() -> None:
    report = compute_metrics(activity(), by="organization")
    assert [g["name"] for g in report.groups] == ["(none)", "acme"]
    assert group(report, "acme")["created"] == 4 and group(report, "acme")["actors"] == 2
    assert report.canonical == compute_metrics(activity(), by="organization").canonical
    assert json.loads(report.canonical) == report.document
    with pytest.raises(InvalidInput, match="by: expected actor or organization"):
        compute_metrics(activity(), by="team")


def test_rate_cards_from_json_and_csv(tmp_path: Path) -> None:
    path = tmp_path / "rates.json"
    path.write_text(json.dumps({
        "currency": "EUR", "session_gap_minutes": 45, "activity_clock": "recorded",
        "default": {"per_instance": 0.05}, "organizations": {"acme": {"per_hour": 18}},
        "actors": {"alice": {"per_hour": 22.5, "per_review": 0.01}},
    }))  # fmt: skip
    card = load_rate_card(path)
    assert card.rate("alice", "acme") == Rate(0.0, 0.01, 22.5)
    assert card.rate("bob", "acme") == Rate(per_hour=18.0)
    assert card.rate("carol", None) == Rate(per_instance=0.05)
    assert (card.session_gap_minutes, card.activity_clock, len(card.sha256)) == (
        45.0,
        "recorded",
        64,
    )
    table = tmp_path / "rates.csv"
    table.write_text(
        "scope,name,per_instance,per_review,per_hour\ndefault,,0.05,,\nactor,alice,,0.01,22.5\n"
    )
    from_csv = load_rate_card(table)
    assert from_csv.rate("alice", None) == Rate(0.0, 0.01, 22.5)
    assert from_csv.default == Rate(per_instance=0.05)


@pytest.mark.parametrize(
    ("data", "kind", "match"),
    [
        (b'{"default": {"per_minute": 1}}', "json", r"r\.default\.per_minute: unknown rate"),
        (
            b'{"actors": {"a": {"per_hour": -1}}}',
            "json",
            r"r\.actors\.a\.per_hour: expected a number >= 0",
        ),
        (b'{"activity_clock": "wall"}', "json", r"r\.activity_clock: expected client or recorded"),
        (b'{"bonus": 1}', "json", r"r\.bonus: unknown field"),
        (b"[]", "json", "r: expected a JSON object"),
        (
            b"scope,name,per_hour\nteam,x,1\n",
            "csv",
            r"r:2\.scope: expected default, organization or actor",
        ),
        (
            b"scope,name,per_hour\nactor,x,lots\n",
            "csv",
            r"r:2\.per_hour: expected a number, got 'lots'",
        ),
    ],
)
def test_rate_card_errors_name_the_place(data: bytes, kind: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        parse_rate_card(data, kind, "r")


def test_period_bounds() -> None:
    assert parse_period_bound("2026-11-01", "--from") == "2026-11-01T00:00:00.000000Z"
    assert parse_period_bound("2026-11-01T10:30:00+01:00", "--to") == "2026-11-01T09:30:00.000000Z"
    with pytest.raises(InvalidInput, match="--from: expected an ISO 8601 date or time"):
        parse_period_bound("yesterday", "--from")


# --- from a real store -------------------------------------------------------------------------


def test_metrics_read_from_the_store(store: Any) -> None:
    times = iter(
        [datetime(2026, 11, 1, 9, 0, tzinfo=UTC)] * 2  # setup, first mask
        + [datetime(2026, 11, 1, 9, 30, tzinfo=UTC), datetime(2026, 11, 2, 8, 0, tzinfo=UTC),
           datetime(2026, 11, 2, 8, 5, tzinfo=UTC), datetime(2026, 11, 3, 8, 0, tzinfo=UTC)]
    )  # fmt: skip
    ledger = Ledger(store, clock=lambda: next(times))
    ledger.append("demo", [*f.setup_events(), f.actor("bob", organization="acme")], "t")

    def at(event: dict[str, Any], client: str) -> dict[str, Any]:
        return {**event, "client_time": client}

    ledger.append(
        "demo",
        [at(f.mask_created("m1"), "2026-11-01T08:00:00Z"),
         at(f.mask_created("m2"), "2026-11-01T08:20:00Z")],
        "t",
    )  # fmt: skip
    ledger.append("demo", [at(f.review("m1", 1), "2026-11-01T09:29:00Z")], "t")
    ledger.append("demo", [at(f.review("m2", 1, "reject"), "2026-11-02T07:59:00Z")], "t")
    ledger.append("demo", [at(f.mask_edited("m2", 1), "2026-11-02T08:04:00Z")], "t")
    ledger.append("demo", [at(f.mask_created("m3", actor_id="bob"), "2026-11-03T07:00:00Z")], "t")

    card = parse_rate_card(b'{"currency": "EUR", "default": {"per_instance": 1.0}}')
    report = workforce_metrics(store, "demo", rate_card=card)
    alice = group(report, "alice")
    assert (alice["created"], alice["edited"], alice["rework_edits"]) == (2, 1, 1)
    assert (alice["first_reviewed"], alice["first_pass_acceptance"]) == (2, 0.5)
    # server times: m1 09:00 -> 09:30 and m2 09:00 -> next day 08:00
    assert alice["review_latency_s"] == {"median": (1800 + 82800) / 2, "mean": (1800 + 82800) / 2}
    assert alice["hours"] == pytest.approx(20 / 60, abs=1e-6)  # client times 08:00 -> 08:20
    assert alice["cost"] == 2.0 and report.project_totals["cost_per_instance"] == 1.0
    assert group(report, "bob")["organization"] == "acme"

    day_two = workforce_metrics(store, "demo", "2026-11-02", "2026-11-03")
    assert [g["name"] for g in day_two.groups] == ["alice", "rita"]
    assert group(day_two, "alice")["rework_edits"] == 1 and group(day_two, "alice")["created"] == 0
    by_org = workforce_metrics(store, "demo", by="organization")
    assert [g["name"] for g in by_org.groups] == ["(none)", "acme"]
    with pytest.raises(InvalidInput, match="to: the period must end after it starts"):
        workforce_metrics(store, "demo", "2026-11-03", "2026-11-02")
    with pytest.raises(NotFound, match="project other does not exist"):
        workforce_metrics(store, "other")
