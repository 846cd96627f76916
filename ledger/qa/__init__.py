"""Quality checks and workforce metrics, computed from the ledger, reproducibly.

The QA side reads a project's state as of a tree size (or a release), runs the checks
and returns a report whose canonical bytes and SHA-256 depend only on that state, the
thresholds and the declared counts::

    from ledger.qa import load_state, run_qa, Thresholds

    state = load_state(store, "demo", release="v7")
    report = run_qa(state, Thresholds().with_overrides({"overlap.min_ios": 0.2}))
    report.sha256, report.document["summary"], report.flags

The metrics side reads a period of activity and returns per-actor (or per-organization)
and project numbers::

    from ledger.qa import workforce_metrics, load_rate_card

    metrics = workforce_metrics(store, "demo", "2026-11-01", "2026-12-01",
                                rate_card=load_rate_card("rates.json"))

Both are plain library calls over a :class:`ledger.store.Store`, with no HTTP or CLI in
them; errors are :class:`ledger.errors.LedgerError` subclasses. The checks themselves
are pure functions over plain records (``ledger.qa.records``): see ``checks``,
``agreement``, ``drift`` and ``outliers``; ``charts`` draws PNGs of both reports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.qa.checks import DeclaredCounts
    from ledger.qa.metrics import (
        MetricsReport,
        RateCard,
        compute_metrics,
        load_rate_card,
        parse_rate_card,
        read_activity,
        workforce_metrics,
    )
    from ledger.qa.records import Flag, ImageRecord, InstanceRecord, QAState, ReviewRecord
    from ledger.qa.report import REPORT_FORMAT, QAReport, run_qa
    from ledger.qa.source import (
        load_declared_counts,
        load_state,
        parse_declared_counts,
        valid_instances,
    )
    from ledger.qa.thresholds import CHECKS, THRESHOLD_HELP, Thresholds, parse_threshold_options
    from ledger.store.base import Store

# Names are loaded on first use (PEP 562): the checks need scipy, which a command line
# that only reads the list of checks or thresholds should not pay for.
_EXPORTS = {
    "DeclaredCounts": "ledger.qa.checks",
    "MetricsReport": "ledger.qa.metrics",
    "RateCard": "ledger.qa.metrics",
    "compute_metrics": "ledger.qa.metrics",
    "load_rate_card": "ledger.qa.metrics",
    "parse_rate_card": "ledger.qa.metrics",
    "read_activity": "ledger.qa.metrics",
    "workforce_metrics": "ledger.qa.metrics",
    "Flag": "ledger.qa.records",
    "ImageRecord": "ledger.qa.records",
    "InstanceRecord": "ledger.qa.records",
    "QAState": "ledger.qa.records",
    "ReviewRecord": "ledger.qa.records",
    "REPORT_FORMAT": "ledger.qa.report",
    "QAReport": "ledger.qa.report",
    "run_qa": "ledger.qa.report",
    "load_declared_counts": "ledger.qa.source",
    "load_state": "ledger.qa.source",
    "parse_declared_counts": "ledger.qa.source",
    "valid_instances": "ledger.qa.source",
    "CHECKS": "ledger.qa.thresholds",
    "THRESHOLD_HELP": "ledger.qa.thresholds",
    "Thresholds": "ledger.qa.thresholds",
    "parse_threshold_options": "ledger.qa.thresholds",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ledger.qa' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "CHECKS",
    "REPORT_FORMAT",
    "THRESHOLD_HELP",
    "DeclaredCounts",
    "Flag",
    "ImageRecord",
    "InstanceRecord",
    "MetricsReport",
    "QAReport",
    "QAState",
    "RateCard",
    "ReviewRecord",
    "Thresholds",
    "compute_metrics",
    "load_declared_counts",
    "load_rate_card",
    "load_state",
    "parse_declared_counts",
    "parse_rate_card",
    "parse_threshold_options",
    "qa_report",
    "read_activity",
    "run_qa",
    "valid_instances",
    "workforce_metrics",
]


def qa_report(
    store: Store,
    project: str,
    *,
    tree_size: int | None = None,
    release: str | None = None,
    selection: str | None = None,
    categories: tuple[int, ...] | None = None,
    thresholds: Thresholds | None = None,
    declared: DeclaredCounts | None = None,
    checks: tuple[str, ...] | None = None,
) -> QAReport:
    """Load the state (see :func:`load_state`) and run the checks (see :func:`run_qa`)."""
    from ledger.qa.report import run_qa
    from ledger.qa.source import load_state

    state = load_state(
        store,
        project,
        tree_size=tree_size,
        release=release,
        selection=selection,
        categories=categories,
    )
    return run_qa(state, thresholds, declared, checks)
