"""The QA report: every check over one state, as reproducible canonical JSON.

The report is a JSON document written as RFC 8785 canonical bytes
(``ledger.canonical.canonical_bytes``) with every real number rounded to 6 decimals,
flags and tables in a fixed order, and nothing that depends on when or where it was
computed: the same state (project, tree size, selection), the same thresholds and the
same declared counts give the same bytes and so the same SHA-256, on SQLite and
PostgreSQL alike. How long each check took is returned beside the document
(:attr:`QAReport.timings`), never inside it.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledger.canonical import canonical_bytes
from ledger.errors import InvalidInput
from ledger.qa.agreement import AgreementResult, check_agreement
from ledger.qa.checks import (
    DeclaredCounts,
    check_counts,
    check_overlaps,
    check_review_consistency,
)
from ledger.qa.drift import check_drift
from ledger.qa.outliers import check_outliers
from ledger.qa.records import Flag, QAState
from ledger.qa.table import MaskTable, build_table
from ledger.qa.thresholds import CHECKS, Thresholds

__all__ = ["CHECKS", "REPORT_FORMAT", "QAReport", "run_qa"]

REPORT_FORMAT = "ledger.qa/1"


@dataclass(frozen=True)
class QAReport:
    """A computed report: the document, its canonical bytes and their SHA-256."""

    document: dict[str, Any]
    canonical: bytes
    sha256: str
    flags: tuple[Flag, ...]
    agreement: AgreementResult | None
    table: MaskTable
    #: seconds spent in each step (``prepare``, each check, ``serialize``); not part of
    #: the document, which must not change from one run to the next
    timings: dict[str, float] = field(default_factory=dict)

    def flags_by_image(self) -> dict[str, list[Flag]]:
        out: dict[str, list[Flag]] = {}
        for flag in self.flags:
            out.setdefault(flag.image_id, []).append(flag)
        return out


def run_qa(
    state: QAState,
    thresholds: Thresholds | None = None,
    declared: DeclaredCounts | None = None,
    checks: Iterable[str] | None = None,
) -> QAReport:
    """Run the checks (default: all; ``counts`` only with a declaration) over ``state``.

    Raises :class:`InvalidInput` for an unknown check name or a malformed mask."""
    thresholds = thresholds or Thresholds()
    wanted = set(CHECKS if checks is None else checks)
    unknown = wanted - set(CHECKS)
    if unknown:
        raise InvalidInput.field(
            "checks", f"unknown check {sorted(unknown)[0]!r}; known: {', '.join(CHECKS)}"
        )
    if declared is None:
        declared = state.declared  # a file given by the caller wins over the log's
    if declared is None:
        wanted.discard("counts")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    table = build_table(state, thresholds)
    timings["prepare"] = time.perf_counter() - start
    flags: list[Flag] = []
    agreement: AgreementResult | None = None
    ran: list[str] = []
    for name in CHECKS:
        if name not in wanted:
            continue
        ran.append(name)
        start = time.perf_counter()
        if name == "overlap":
            flags += check_overlaps(table, thresholds)
        elif name == "agreement":
            agreement = check_agreement(table, thresholds)
            flags += agreement.flags
        elif name == "counts" and declared is not None:
            flags += check_counts(table, declared, thresholds)
        elif name == "drift":
            flags += check_drift(table, thresholds)
        elif name == "outliers":
            flags += check_outliers(table, thresholds)
        elif name == "review":
            flags += check_review_consistency(table, list(flags))
        timings[name] = time.perf_counter() - start
    flags.sort(key=Flag.sort_key)

    start = time.perf_counter()
    document = _document(state, table, thresholds, declared, ran, flags, agreement)
    data = canonical_bytes(document)
    digest = hashlib.sha256(data).hexdigest()
    timings["serialize"] = time.perf_counter() - start
    return QAReport(document, data, digest, tuple(flags), agreement, table, timings)


def _document(
    state: QAState,
    table: MaskTable,
    thresholds: Thresholds,
    declared: DeclaredCounts | None,
    ran: list[str],
    flags: list[Flag],
    agreement: AgreementResult | None,
) -> dict[str, Any]:
    by_check = Counter(f.check for f in flags)
    by_code = Counter(f.code for f in flags)
    flagged_instances = {i for f in flags for i in f.instance_ids}
    return {
        "format": REPORT_FORMAT,
        "scope": state.scope(),
        "checks": ran,
        "thresholds": thresholds.as_json(),
        "declared_counts": (
            None
            if declared is None
            else {"sha256": declared.sha256, "entries": len(declared.counts)}
        ),
        "totals": {
            "images": len(table.images),
            "instances": len(table.instances),
            "crowd": sum(1 for r in table.instances if r.iscrowd),
            "annotators": len({r.annotator for r in table.instances}),
        },
        "summary": {
            "flags": len(flags),
            "by_check": {name: by_check.get(name, 0) for name in ran},
            "by_code": dict(sorted(by_code.items())),
            "flagged_images": len({f.image_id for f in flags}),
            "flagged_instances": len(flagged_instances),
        },
        "flags": [f.as_json() for f in flags],
        "agreement": agreement.as_json() if agreement is not None else None,
    }
