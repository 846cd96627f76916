"""PNG pictures for people who would rather look than read.

* :func:`metrics_chart`: a metrics report over time (daily throughput of the project,
  daily instances created per group, first-pass acceptance and rejection rates, cost
  per instance when a rate card was given);
* :func:`flag_picture`: one flagged image with the masks of its flags outlined, each
  annotator in a colour, the rest of the image's masks in thin grey, and the reasons
  underneath; :func:`write_flag_pictures` does it for the most flagged images of a QA
  report.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot and no
global state, so it is safe inside a web worker) and saved without a timestamp, so the
same input gives the same PNG bytes with the same matplotlib.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ledger.errors import InvalidInput, NotFound
from ledger.qa.metrics import MetricsReport
from ledger.qa.records import Flag, ImageRecord, InstanceRecord
from ledger.qa.report import QAReport
from ledger.qa.rle import bitmap as rle_bitmap
from ledger.qa.rle import decode_runs

__all__ = [
    "flag_picture",
    "flagged_image_png",
    "metrics_chart",
    "metrics_chart_png",
    "write_flag_pictures",
]

#: colours of annotators in a picture (Okabe-Ito, readable with colour blindness)
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#D55E00", "#CC79A7", "#0072B2", "#F0E442")
#: checks whose flags are about masks that can be seen, drawn first
VISUAL_CHECKS = ("overlap", "agreement", "drift", "outliers")
_PNG_METADATA: dict[str, Any] = {"Software": None}


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_png(figure))
    except OSError as e:
        raise InvalidInput.field(str(path), f"cannot write the picture: {e.strerror}") from e
    return path


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata=_PNG_METADATA)
    return buffer.getvalue()


# --- metrics ------------------------------------------------------------------------------


def metrics_chart(report: MetricsReport, path: str | Path, top: int = 8) -> Path:
    """Draw ``report`` as a 2x2 PNG at ``path``; ``top`` groups (by instances created,
    then reviews) get a line of their own."""
    return _save(_metrics_figure(report, top), path)


def metrics_chart_png(report: MetricsReport, top: int = 8) -> bytes:
    """The PNG bytes of :func:`metrics_chart` (for an HTTP response)."""
    return _png(_metrics_figure(report, top))


def _metrics_figure(report: MetricsReport, top: int) -> Figure:
    doc = report.document
    figure = Figure(figsize=(13, 8.5), dpi=100, layout="constrained")
    period = doc["period"]
    span = f"{period['from'] or 'start'} to {period['to'] or 'now'}"
    figure.suptitle(f"Workforce metrics of {doc['project']}, {span}", fontsize=13)
    (ax_days, ax_groups), (ax_rates, ax_cost) = figure.subplots(2, 2)

    totals = doc["project_totals"]
    days = [d["day"] for d in totals["per_day"]]
    x = np.arange(len(days))
    bottom = np.zeros(len(days))
    for key, colour in (("created", PALETTE[0]), ("edited", PALETTE[1]), ("reviewed", PALETTE[2])):
        values = np.array([d[key] for d in totals["per_day"]], dtype=float)
        ax_days.bar(x, values, bottom=bottom, label=key, color=colour)
        bottom += values
    _day_axis(ax_days, days)
    ax_days.set_title("Project: events per day")
    ax_days.legend(loc="upper left")

    groups = sorted(doc["groups"], key=lambda g: (-g["created"], -g["reviewed"], g["name"]))[:top]
    for k, group in enumerate(groups):
        per = {d["day"]: d["created"] + d["reviewed"] for d in group["per_day"]}
        ax_groups.plot(
            x,
            [per.get(day, 0) for day in days],
            marker="o",
            color=PALETTE[k % len(PALETTE)],
            label=group["name"],
        )
    _day_axis(ax_groups, days)
    ax_groups.set_title(f"Instances created + reviewed per day, by {doc['by']}")
    if groups:
        ax_groups.legend(loc="upper left", fontsize=8)

    names = [g["name"] for g in groups]
    pos = np.arange(len(names))
    first_pass = [g["first_pass_acceptance"] or 0.0 for g in groups]
    rejection = [g["rejection_rate"] or 0.0 for g in groups]
    rework = [g["rework_rate"] or 0.0 for g in groups]
    ax_rates.bar(
        pos - 0.27, first_pass, width=0.27, label="first-pass acceptance", color=PALETTE[2]
    )
    ax_rates.bar(pos, rejection, width=0.27, label="rejection rate", color=PALETTE[3])
    ax_rates.bar(pos + 0.27, rework, width=0.27, label="rework rate", color=PALETTE[4])
    ax_rates.set_xticks(pos, names, rotation=30, ha="right", fontsize=8)
    ax_rates.set_ylim(0, 1.05)
    ax_rates.set_title("Review outcomes")
    ax_rates.legend(loc="upper right", fontsize=8)

    cost = [g["cost_per_instance"] or 0.0 for g in groups]
    currency = (doc.get("rate_card") or {}).get("currency") or ""
    if doc.get("rate_card") is not None:
        ax_cost.bar(pos, cost, color=PALETTE[5])
        ax_cost.set_title(f"Cost per instance {currency}".strip())
    else:
        hours = [g["hours"] for g in groups]
        ax_cost.bar(pos, hours, color=PALETTE[5])
        ax_cost.set_title("Hours of recorded activity (no rate card given)")
    ax_cost.set_xticks(pos, names, rotation=30, ha="right", fontsize=8)
    return figure


def _day_axis(ax: Any, days: Sequence[str]) -> None:
    step = max(1, len(days) // 10)
    ax.set_xticks(np.arange(len(days))[::step], list(days)[::step], rotation=30, ha="right")
    ax.set_ylabel("count")


# --- flagged images -------------------------------------------------------------------------


def _background(image: ImageRecord, image_root: Path | None) -> np.ndarray[Any, Any] | None:
    if image_root is None or not image.file_name:
        return None
    candidate = (image_root / image.file_name).resolve()
    root = image_root.resolve()
    if root not in candidate.parents or not candidate.is_file():
        return None
    from matplotlib import image as mpl_image

    try:
        pixels: np.ndarray[Any, Any] = mpl_image.imread(candidate)
    except (OSError, ValueError, SyntaxError):
        return None
    if pixels.shape[:2] != (image.height, image.width):
        return None
    return pixels


def flag_picture(
    image: ImageRecord,
    instances: Sequence[InstanceRecord],
    flags: Sequence[Flag],
    path: str | Path,
    image_root: str | Path | None = None,
) -> Path:
    """Draw ``image`` (see :func:`_flag_figure`) as a PNG at ``path``."""
    return _save(_flag_figure(image, instances, flags, image_root), path)


def flagged_image_png(
    report: QAReport, image_id: str, image_root: str | Path | None = None
) -> bytes:
    """The PNG bytes of one image of ``report`` with its flagged masks outlined (for an
    HTTP response). Raises NotFound for an image the report's state does not have."""
    table = report.table
    if image_id not in table.images:
        raise NotFound(f"image {image_id!r} is not in this report's state")
    flags = [f for f in report.flags if f.image_id == image_id and f.instance_ids]
    instances = [table.instances[i] for i in table.by_image.get(image_id, [])]
    return _png(_flag_figure(table.images[image_id], instances, flags, image_root))


def _flag_figure(
    image: ImageRecord,
    instances: Sequence[InstanceRecord],
    flags: Sequence[Flag],
    image_root: str | Path | None,
) -> Figure:
    """Draw ``image`` with the masks named by ``flags`` filled and outlined, one colour
    per mask, and every other mask of ``instances`` in thin grey: the whole image on the
    left, a close-up of the flagged masks on the right (labeled with instance id and
    annotator), the reasons underneath. The image file (``image_root / file_name``) is
    the background when it can be read and has the registered size; otherwise a
    neutral canvas stands in."""
    flagged_ids = sorted({i for f in flags for i in f.instance_ids})
    flagged = [r for r in instances if r.instance_id in flagged_ids]
    colour = {r.instance_id: PALETTE[k % len(PALETTE)] for k, r in enumerate(flagged)}
    lines: list[str] = []
    for flag in sorted(flags, key=Flag.sort_key)[:8]:
        lines.extend(textwrap.wrap(f"[{flag.code}] {flag.reason}", 150))
    if len(flags) > 8:
        lines.append(f"... and {len(flags) - 8} more")
    aspect = image.height / max(1, image.width)
    notes_height = 0.25 + 0.16 * len(lines)
    figure = Figure(figsize=(14, 8.4 * aspect + notes_height + 0.6), dpi=100, layout="constrained")
    grid = figure.add_gridspec(
        2, 2, width_ratios=[3, 2], height_ratios=[8.4 * aspect, notes_height]
    )
    whole, close, notes = (
        figure.add_subplot(grid[0, 0]),
        figure.add_subplot(grid[0, 1]),
        figure.add_subplot(grid[1, :]),
    )
    figure.suptitle(
        f"{image.image_id} ({image.width}x{image.height}): {len(flags)} "
        f"flag{'s' * (len(flags) != 1)} on {len(flagged)} mask{'s' * (len(flagged) != 1)}",
        fontsize=12,
    )
    background = _background(image, Path(image_root) if image_root is not None else None)
    bitmaps: dict[str, np.ndarray[Any, Any]] = {}
    for record in instances:
        height, width = record.rle["size"]
        runs = decode_runs([record.rle["counts"]], [height], [width])
        bitmaps[record.instance_id] = rle_bitmap(runs, 0)
    for ax in (whole, close):
        if background is None:
            ax.imshow(np.full((image.height, image.width), 0.92), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(background)
        for record in instances:
            if record.instance_id not in colour:
                ax.contour(bitmaps[record.instance_id], levels=[0.5], colors=["#808080"],
                           linewidths=0.6)  # fmt: skip
        for record in flagged:
            c = colour[record.instance_id]
            ax.contourf(bitmaps[record.instance_id], levels=[0.5, 1.5], colors=[c], alpha=0.3)
            ax.contour(bitmaps[record.instance_id], levels=[0.5], colors=[c], linewidths=2.0)
        ax.set_xticks([])
        ax.set_yticks([])
    whole.set_xlim(-0.5, image.width - 0.5)
    whole.set_ylim(image.height - 0.5, -0.5)
    whole.set_title("whole image", fontsize=9)
    boxes = [np.nonzero(bitmaps[r.instance_id]) for r in flagged]
    ys = np.concatenate([b[0] for b in boxes]) if boxes else np.array([0, image.height - 1])
    xs = np.concatenate([b[1] for b in boxes]) if boxes else np.array([0, image.width - 1])
    margin = max(8, int(0.15 * max(np.ptp(xs), np.ptp(ys))))
    close.set_xlim(max(xs.min() - margin, 0) - 0.5, min(xs.max() + margin, image.width - 1) + 0.5)
    close.set_ylim(min(ys.max() + margin, image.height - 1) + 0.5, max(ys.min() - margin, 0) - 0.5)
    close.set_title("close-up of the flagged masks", fontsize=9)
    for k, record in enumerate(flagged):
        rows, cols = np.nonzero(bitmaps[record.instance_id])
        if not len(cols):
            continue
        top = k % 2 == 0  # alternate above and below, so that neighbours' labels part
        close.annotate(
            f"{record.instance_id} ({record.annotator})",
            (float(cols.mean()), float(rows.min() if top else rows.max())),
            xytext=(0, 6 if top else -6),
            textcoords="offset points",
            fontsize=8,
            ha="center",
            va="bottom" if top else "top",
            bbox={"boxstyle": "round,pad=0.2", "fc": colour[record.instance_id], "alpha": 0.85,
                  "lw": 0},
        )  # fmt: skip
    notes.axis("off")
    notes.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=8, family="monospace")
    return figure


def write_flag_pictures(
    report: QAReport,
    directory: str | Path,
    image_root: str | Path | None = None,
    limit: int = 50,
) -> list[Path]:
    """Pictures of up to ``limit`` flagged images of ``report``: images with overlap or
    agreement flags first, then the other visual checks, most flags first; one PNG per
    image named after it (``<image id>.png``, ``/`` replaced by ``_``)."""
    table = report.table
    by_image: dict[str, list[Flag]] = {}
    for flag in report.flags:
        if flag.check in VISUAL_CHECKS and flag.instance_ids:
            by_image.setdefault(flag.image_id, []).append(flag)

    def priority(item: tuple[str, list[Flag]]) -> tuple[int, int, str]:
        image_id, flags = item
        rank = min(VISUAL_CHECKS.index(f.check) for f in flags)
        return (min(rank, 2), -len(flags), image_id)

    out: list[Path] = []
    directory = Path(directory)
    for image_id, flags in sorted(by_image.items(), key=priority)[:limit]:
        indexes = table.by_image.get(image_id, [])
        name = image_id.replace("/", "_") + ".png"
        out.append(
            flag_picture(
                table.images[image_id],
                [table.instances[i] for i in indexes],
                flags,
                directory / name,
                image_root,
            )
        )
    return out
