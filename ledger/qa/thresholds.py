"""The thresholds of every QA check, by dotted name, with their defaults.

A report records the thresholds it was computed with, so the same state and the same
thresholds always give the same report. ``--threshold name=value`` on the command line
and :meth:`Thresholds.with_overrides` in code change one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ledger.errors import InvalidInput

__all__ = ["CHECKS", "THRESHOLD_HELP", "Thresholds", "parse_threshold_options"]

#: every check, in the order a report runs them (review consistency reads the others'
#: flags); the first part of each threshold's name is one of them
CHECKS = ("overlap", "agreement", "counts", "drift", "outliers", "review")

#: name -> what it means (for --help and docs/qa.md)
THRESHOLD_HELP: dict[str, str] = {
    "overlap.min_ios": "flag two instances whose intersection over the smaller mask exceeds this",
    "agreement.match_iou": "IoU from which two annotators' instances count as matched",
    "agreement.min_f1": "flag an image whose F1 at IoU 0.5 between two annotators is below this",
    "agreement.min_mean_iou": "flag an image whose mean matched IoU is below this",
    "counts.tolerance": "allowed difference between declared and actual instance counts",
    "drift.min_iou": "flag a track whose IoU between consecutive frames is below this",
    "drift.max_area_ratio": "flag a track whose area changes by more than this factor",
    "drift.max_gap": "flag a track missing from more than this many registered frames",
    "outliers.z": (
        "flag a mask whose robust z-score of log area, log aspect or fragments exceeds this"
    ),
    "outliers.min_samples": "fewest masks of a category for its z-scores to be computed",
    "outliers.min_hole_area": "smallest hole (pixels) that is flagged",
    "outliers.tiny_area": "a fragment of at most this many pixels is tiny",
    "outliers.max_tiny": "flag a mask with more tiny fragments than this",
}


@dataclass(frozen=True)
class Thresholds:
    overlap_min_ios: float = 0.1
    agreement_match_iou: float = 0.5
    agreement_min_f1: float = 0.8
    agreement_min_mean_iou: float = 0.7
    counts_tolerance: float = 0.0
    drift_min_iou: float = 0.5
    drift_max_area_ratio: float = 2.0
    drift_max_gap: float = 0.0
    outliers_z: float = 3.5
    outliers_min_samples: float = 10.0
    outliers_min_hole_area: float = 1.0
    outliers_tiny_area: float = 16.0
    outliers_max_tiny: float = 2.0

    def as_json(self) -> dict[str, float]:
        """Dotted name -> value, in name order (part of every report)."""
        values = asdict(self)
        return {_dotted(k): float(values[k]) for k in sorted(values)}

    def with_overrides(self, overrides: Mapping[str, float]) -> Thresholds:
        """A copy with some thresholds changed, by dotted name."""
        changes: dict[str, Any] = {}
        known = {_dotted(f.name): f.name for f in fields(self)}
        for name, value in overrides.items():
            loc = f"--threshold {name}"
            if name not in known:
                raise InvalidInput.field(
                    loc, f"unknown threshold; known: {', '.join(sorted(known))}"
                )
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InvalidInput.field(loc, f"expected a finite number >= 0, got {value!r}")
            changes[known[name]] = float(value)
        return replace(self, **changes)


def _dotted(attribute: str) -> str:
    check, _, rest = attribute.partition("_")
    return f"{check}.{rest}"


def parse_threshold_options(options: Iterable[str]) -> dict[str, float]:
    """``["overlap.min_ios=0.2", ...]`` -> ``{"overlap.min_ios": 0.2}``."""
    out: dict[str, float] = {}
    for option in options:
        name, sep, text = option.partition("=")
        if not sep:
            raise InvalidInput.field(
                f"--threshold {option}", "expected name=value, e.g. overlap.min_ios=0.2"
            )
        try:
            out[name.strip()] = float(text)
        except ValueError:
            raise InvalidInput.field(
                f"--threshold {name.strip()}", f"expected a number, got {text!r}"
            ) from None
    return out
