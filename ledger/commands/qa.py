"""Quality checks and workforce metrics: ``ledger qa`` and ``ledger metrics``."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ledger.commands.common import Context, pass_ctx
from ledger.errors import InvalidInput
from ledger.qa.thresholds import CHECKS
from ledger.service import check_project_name

if TYPE_CHECKING:  # the checks need scipy: imported when a command runs, not at start
    from ledger.qa.report import QAReport

__all__ = ["metrics_cmd", "qa_cmd", "register"]


def register(cli: click.Group) -> None:
    cli.add_command(qa_cmd)
    cli.add_command(metrics_cmd)


_FORMATS = click.Choice(["table", "json", "csv"])


def _write_bytes(data: bytes) -> None:
    out = sys.stdout.buffer
    out.write(data + b"\n")
    out.flush()


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain aligned columns; the last column is left free (it holds sentences)."""
    text_rows = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in header]
    for row in text_rows:
        for k, value in enumerate(row[:-1]):
            widths[k] = max(widths[k], len(value))
    lines = []
    for row in [list(header), *text_rows]:
        cells = [value.ljust(widths[k]) for k, value in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


# --- ledger qa -----------------------------------------------------------------------------


@click.command("qa")
@click.option("--project", "-p", required=True, help="Project to check.")
@click.option(
    "--at",
    "tree_size",
    type=click.IntRange(1),
    default=None,
    help="Tree size to check (default: the whole log).",
)
@click.option("--release", default=None, help="Check a release: its tree size and selection.")
@click.option(
    "--selection",
    type=click.Choice(["all", "accepted"]),
    default=None,
    help="With --at: every valid instance (default) or only accepted ones, as a "
    "release policy would select them.",
)
@click.option(
    "--category",
    "categories",
    type=click.IntRange(1),
    multiple=True,
    help="With --at: only these categories (repeatable).",
)
@click.option("--format", "fmt", type=_FORMATS, default="table", show_default=True)
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="NAME=VALUE",
    help="Change a threshold, e.g. overlap.min_ios=0.2 (repeatable; see docs/qa.md).",
)
@click.option(
    "--counts",
    "counts_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=(
        "Declared counts per image and category (JSON or CSV); "
        "default: the log's counts.declared events."
    ),
)
@click.option(
    "--check",
    "checks",
    type=click.Choice(CHECKS),
    multiple=True,
    help="Run only these checks (repeatable; default: all).",
)
@click.option(
    "--png",
    "png_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write pictures of flagged images to this folder.",
)
@click.option(
    "--png-limit",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="Most pictures to write.",
)
@click.option(
    "--images",
    "image_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the image files, drawn behind the masks.",
)
@click.option("--timings", is_flag=True, help="Print the time of each check to stderr.")
@pass_ctx
def qa_cmd(
    ctx: Context,
    project: str,
    tree_size: int | None,
    release: str | None,
    selection: str | None,
    categories: tuple[int, ...],
    fmt: str,
    thresholds: tuple[str, ...],
    counts_file: Path | None,
    checks: tuple[str, ...],
    png_dir: Path | None,
    png_limit: int,
    image_root: Path | None,
    timings: bool,
) -> None:
    """Quality checks of a project as of a tree size or a release.

    Flags overlapping masks, disagreeing annotators, wrong counts, drift along tracks,
    outlier and broken masks, and inconsistent reviews, each with its reason. The JSON
    output is the report's canonical bytes (plus a newline): the same state, thresholds
    and counts always give the same bytes; its SHA-256 is printed to stderr.
    """
    from ledger.qa import Thresholds, load_declared_counts, load_state, parse_threshold_options
    from ledger.qa import run_qa as run

    check_project_name(project, "--project")
    if release is not None and (tree_size is not None or selection or categories):
        raise InvalidInput.field(
            "--release",
            "a release fixes the tree size, selection and categories: "
            "leave out --at, --selection and --category",
        )
    limits = Thresholds().with_overrides(parse_threshold_options(thresholds))
    declared = load_declared_counts(counts_file) if counts_file is not None else None
    state = load_state(
        ctx.store(),
        project,
        tree_size=tree_size,
        release=release,
        selection=selection,
        categories=categories or None,
    )
    report = run(state, limits, declared, checks or None)
    if fmt == "json":
        _write_bytes(report.canonical)
    elif fmt == "csv":
        click.echo(_qa_csv(report), nl=False)
    else:
        click.echo(_qa_table(report))  # the table names the SHA-256 itself
    if fmt != "table":
        click.echo(f"sha256 {report.sha256}", err=True)
    if timings:
        for step, seconds in report.timings.items():
            click.echo(f"time {step:<10} {seconds:8.3f} s", err=True)
    if png_dir is not None:
        from ledger.qa.charts import write_flag_pictures

        written = write_flag_pictures(report, png_dir, image_root, png_limit)
        click.echo(f"wrote {len(written)} picture(s) to {png_dir}", err=True)


def _qa_csv(report: QAReport) -> str:
    rows = [
        [
            f.check,
            f.code,
            f.image_id,
            " ".join(f.instance_ids),
            " ".join(f.actors),
            "" if f.value is None else round(f.value, 6),
            "" if f.threshold is None else round(f.threshold, 6),
            f.reason,
        ]
        for f in report.flags
    ]
    header = ["check", "code", "image_id", "instance_ids", "actors", "value", "threshold", "reason"]
    return _csv_text(header, rows)


def _qa_table(report: QAReport) -> str:
    doc = report.document
    scope, totals, summary = doc["scope"], doc["totals"], doc["summary"]
    lines = [
        f"QA report of {scope['project']} at tree size {scope['tree_size']} "
        f"(selection {scope['selection']}"
        + (f", categories {scope['categories']}" if scope["categories"] else "")
        + ")",
        f"{totals['images']} images, {totals['instances']} instances "
        f"({totals['crowd']} crowd), {totals['annotators']} annotators; "
        f"checks: {', '.join(doc['checks'])}",
        f"{summary['flags']} flags on {summary['flagged_images']} images "
        f"and {summary['flagged_instances']} instances",
        f"sha256 {report.sha256}",
        "",
    ]
    if summary["by_code"]:
        lines.append(_table(["code", "flags"], list(summary["by_code"].items())))
        lines.append("")
    if report.flags:
        lines.append(
            _table(
                ["code", "image", "instances", "reason"],
                [
                    (f.code, f.image_id, ",".join(f.instance_ids) or "-", f.reason)
                    for f in report.flags
                ],
            )
        )
        lines.append("")
    agreement = doc.get("agreement")
    if agreement and agreement["annotators"]:
        lines.append("inter-annotator agreement, per annotator:")
        lines.append(
            _table(
                ["annotator", "images", "instances", "matched", "unmatched", "mean_iou", "f1_50",
                 "f1_75"],
                [
                    (a["annotator"], a["images"], a["instances"], a["matched"], a["unmatched"],
                     a["mean_iou"], a["f1_50"], a["f1_75"])
                    for a in agreement["annotators"]
                ],
            )
        )  # fmt: skip
    return "\n".join(lines).rstrip()


# --- ledger metrics ------------------------------------------------------------------------

_METRIC_COLUMNS = (
    "created", "edited", "deleted", "reviewed", "accepted", "rejected", "needs_changes",
    "first_reviewed", "first_pass_acceptance", "reviews_received", "rejection_rate",
    "rework_edits", "rework_rate", "active_days", "created_per_day", "reviewed_per_day",
    "hours", "cost", "cost_per_instance",
)  # fmt: skip


@click.command("metrics")
@click.option("--project", "-p", required=True, help="Project.")
@click.option("--from", "start", default=None, help="Start of the period (ISO date or time, UTC).")
@click.option("--to", "end", default=None, help="End of the period, excluded.")
@click.option(
    "--by", type=click.Choice(["actor", "organization"]), default="actor", show_default=True
)
@click.option(
    "--rate-card",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Rates per instance, review or hour (JSON or CSV) for costs.",
)
@click.option("--format", "fmt", type=_FORMATS, default="table", show_default=True)
@click.option(
    "--png",
    "png_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw the metrics over time to this PNG file.",
)
@pass_ctx
def metrics_cmd(
    ctx: Context,
    project: str,
    start: str | None,
    end: str | None,
    by: str,
    rate_card: Path | None,
    fmt: str,
    png_file: Path | None,
) -> None:
    """Workforce metrics over a period: throughput, review outcomes, rework, review
    latency, hours of activity and cost, per actor or organization and for the project.
    """
    from ledger.qa.metrics import load_rate_card, parse_period_bound, workforce_metrics

    check_project_name(project, "--project")
    card = load_rate_card(rate_card) if rate_card is not None else None
    report = workforce_metrics(
        ctx.store(),
        project,
        parse_period_bound(start, "--from") if start else None,
        parse_period_bound(end, "--to") if end else None,
        by=by,
        rate_card=card,
    )
    rows = [[g["name"], *(g[c] for c in _METRIC_COLUMNS), g["review_latency_s"]["median"]]
            for g in report.groups]  # fmt: skip
    totals = report.project_totals
    rows.append(["(project)", *(totals[c] for c in _METRIC_COLUMNS),
                 totals["review_latency_s"]["median"]])  # fmt: skip
    header = [by, *_METRIC_COLUMNS, "review_latency_median_s"]
    if fmt == "json":
        _write_bytes(report.canonical)
    elif fmt == "csv":
        click.echo(_csv_text(header, [["" if v is None else v for v in r] for r in rows]), nl=False)
    else:
        period = report.document["period"]
        click.echo(
            f"metrics of {project} from {period['from'] or 'the start'} "
            f"to {period['to'] or 'now'}, by {by}"
        )
        short = [by, "created", "edited", "reviewed", "first_pass", "rejection", "rework",
                 "latency_h", "per_day", "hours", "cost", "cost/inst"]  # fmt: skip
        table_rows = [
            [r[0], r[1], r[2], r[4], r[9], r[11], r[13], _hours(r[-1]), r[15], r[17], r[18], r[19]]
            for r in rows
        ]
        click.echo(_table(short, table_rows))
    if png_file is not None:
        from ledger.qa.charts import metrics_chart

        metrics_chart(report, png_file)
        click.echo(f"wrote {png_file}", err=True)


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600.0
