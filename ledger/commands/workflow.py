"""Review queue and routing, release materialization, outbound notifications.

``ledger queue``, ``ledger route``, ``ledger assign``; ``ledger release materialize`` and
``ledger release verify-files`` (in the ``release`` group when it exists, else in a
``workflow`` group); ``ledger notify subscribe | list | unsubscribe | deliveries |
deliver``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ledger.commands.common import Context, cli_principal, pass_ctx, progress_bar
from ledger.errors import InvalidInput
from ledger.materialize import EXPORTS, materialize_release, raise_failed, verify_materialized
from ledger.notify import (
    KINDS,
    deliver_pending,
    list_deliveries,
    list_subscribers,
    subscribe,
    unsubscribe,
)
from ledger.routing import assign, load_rules, queue_metrics, review_queue, route
from ledger.service import check_project_name


def register(cli: click.Group) -> None:
    cli.add_command(queue)
    cli.add_command(route_cmd)
    cli.add_command(assign_cmd)
    cli.add_command(notify)
    group = cli.commands.get("release")
    if not isinstance(group, click.Group):
        group = workflow
        cli.add_command(workflow)
    group.add_command(materialize_cmd)
    group.add_command(verify_files_cmd)


@click.group()
def workflow() -> None:
    """Export workflows of releases."""


_project = click.option("--project", "-p", required=True, help="Project.")
_format = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Aligned columns, or one JSON document.",
)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    text = [[str(h) for h in header]] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(header))]
    for r in text:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, loc: str = "--overdue-after") -> float:
    """Seconds of ``90``, ``90s``, ``15m``, ``24h``, ``2d`` or ``1w``."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidInput.field(loc, f"expected a duration such as 24h, 2d or 90m, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


# --- queue and routing -----------------------------------------------------------------


@click.command()
@_project
@click.option("--reviewer", "-r", default=None, help="Only what is assigned to this reviewer.")
@click.option("--summary", is_flag=True, help="Aging and overdue counts instead of the items.")
@click.option("--overdue-after", default="24h", show_default=True, help="Age that is overdue.")
@click.option("--no-qa", is_flag=True, help="Leave QA flags out of the score (faster).")
@_format
@pass_ctx
def queue(
    ctx: Context,
    project: str,
    reviewer: str | None,
    summary: bool,
    overdue_after: str,
    no_qa: bool,
    fmt: str,
) -> None:
    """Revisions awaiting review, oldest first, with complexity score and age."""
    check_project_name(project, "--project")
    store = ctx.store()
    limit = parse_duration(overdue_after)
    if summary:
        m = queue_metrics(store, project, limit)
        if fmt == "json":
            _json(m.to_json())
            return
        click.echo(
            f"{project}: {m.pending} awaiting review ({m.assigned} assigned, "
            f"{m.unassigned} unassigned), {m.overdue} overdue after {overdue_after}"
        )
        click.echo("age: " + ", ".join(f"{k} {v}" for k, v in m.age_buckets.items()))
        _table(
            ("ASSIGNEE", "OPEN", "OVERDUE", "OLDEST"),
            [
                (name, int(r["open"]), int(r["overdue"]), _age(r["oldest_age_seconds"]))
                for name, r in m.by_assignee.items()
            ],
        )
        return
    items = review_queue(store, project, reviewer=reviewer, open_flags={} if no_qa else None)
    if fmt == "json":
        _json([i.to_json() for i in items])
        return
    if not items:
        who = f" assigned to {reviewer}" if reviewer else ""
        click.echo(f"{project}: nothing awaits review{who}", err=True)
        return
    rows = []
    for i in items:
        c = i.complexity
        assert c is not None
        rows.append(
            (
                i.instance_id,
                i.revision,
                i.image_id,
                i.category_id,
                i.annotator,
                f"{c.score:.2f}",
                f"{c.shape_kind}:{c.shape}",
                c.area,
                c.overlaps,
                c.open_flags,
                c.rejections,
                _age(i.age_seconds),
                "OVERDUE" if i.age_seconds >= limit else "",
                i.assignee,
            )
        )
    _table(
        (
            "INSTANCE",
            "REV",
            "IMAGE",
            "CAT",
            "ANNOTATOR",
            "SCORE",
            "SHAPE",
            "AREA",
            "OVERLAPS",
            "FLAGS",
            "REJECTED",
            "AGE",
            "",
            "ASSIGNEE",
        ),
        rows,
    )


@click.command("route")
@_project
@click.option(
    "--rules",
    "rules_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Routing rules, .toml or .json.",
)
@click.option("--dry-run", is_flag=True, help="Show the plan; append nothing.")
@click.option(
    "--reassign", is_flag=True, help="Also reassign revisions whose assignee no longer fits."
)
@click.option("--actor", default="router", show_default=True, help="Actor named in the events.")
@click.option("--no-qa", is_flag=True, help="Leave QA flags out of the score (faster).")
@_format
@pass_ctx
def route_cmd(
    ctx: Context,
    project: str,
    rules_file: Path,
    dry_run: bool,
    reassign: bool,
    actor: str,
    no_qa: bool,
    fmt: str,
) -> None:
    """Assign revisions awaiting review to reviewers by rules (review.assigned events)."""
    check_project_name(project, "--project")
    rules = load_rules(rules_file)
    plan = route(
        ctx.ledger(),
        project,
        rules,
        principal=cli_principal(),
        actor=actor,
        dry_run=dry_run,
        reassign=reassign,
        open_flags={} if no_qa else None,
    )
    if fmt == "json":
        _json({**plan.to_json(), "dry_run": dry_run})
        return
    verb = "would assign" if dry_run else "assigned"
    for a in plan.assignments:
        where = "" if a.seq is None else f" (entry {a.seq})"
        click.echo(f"{verb} {a.instance_id}@{a.revision} to {a.assignee}{where}: {a.reason}")
    for u in plan.unassigned:
        click.echo(f"unassigned {u.instance_id}@{u.revision}: {u.reason}")
    for s in plan.skipped:
        click.echo(f"skipped {s.instance_id}@{s.revision}: {s.reason}", err=True)
    click.echo(
        f"{project}: {len(plan.assignments)} {verb}, {len(plan.unassigned)} unassigned, "
        f"{plan.kept} kept, {len(plan.skipped)} skipped",
        err=True,
    )


@click.command("assign")
@_project
@click.argument("instance")
@click.argument("reviewer")
@click.option("--reason", default=None, help="Why (recorded in the event).")
@click.option("--actor", default=None, help="Actor named in the event (default: the CLI user).")
@pass_ctx
def assign_cmd(
    ctx: Context, project: str, instance: str, reviewer: str, reason: str | None, actor: str | None
) -> None:
    """Assign (or reassign) the current revision of INSTANCE to REVIEWER."""
    check_project_name(project, "--project")
    principal = cli_principal()
    done = assign(
        ctx.ledger(),
        project,
        instance,
        reviewer,
        principal=principal,
        actor=actor or principal,
        reason=reason,
    )
    click.echo(
        f"assigned {instance}@{done.revision} to {reviewer} (entry {done.seq}): {done.reason}"
    )


# --- materialize ---------------------------------------------------------------------------


def _exports(text: str) -> list[str]:
    return [e.strip() for e in text.split(",") if e.strip()]


@click.command("materialize")
@_project
@click.option("--name", "-n", required=True, help="Release name.")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Target folder (new or empty).",
)
@click.option(
    "--exports",
    default=",".join(EXPORTS),
    show_default=True,
    help="Comma-separated: coco, instance, semantic.",
)
@click.option("--overwrite", is_flag=True, help="Replace an earlier materialization there.")
@click.option("--no-record", is_flag=True, help="Do not append release.materialized.")
@click.option("--actor", default="exporter", show_default=True, help="Actor named in the event.")
@pass_ctx
def materialize_cmd(
    ctx: Context,
    project: str,
    name: str,
    output: Path,
    exports: str,
    overwrite: bool,
    no_record: bool,
    actor: str,
) -> None:
    """Write a release as COCO JSON, instance and semantic PNG masks and a manifest, and
    record the manifest's SHA-256 in a release.materialized event."""
    check_project_name(project, "--project")
    with progress_bar(None, f"materializing {name}", "images") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        done = materialize_release(
            ctx.ledger(),
            project,
            name,
            output,
            principal=cli_principal(),
            actor=actor,
            exports=_exports(exports),
            overwrite=overwrite,
            record=not no_record,
            progress=progress,
        )
    where = "not recorded" if done.seq is None else f"recorded in entry {done.seq}"
    click.echo(
        f"materialized release {name} of {project} into {done.directory}: {done.files} files, "
        f"manifest sha256 {done.manifest_sha256} ({where})"
    )


@click.command("verify-files")
@_project
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", "-n", default=None, help="Release name (default: the manifest's).")
@click.option(
    "--notify/--no-notify",
    default=True,
    show_default=True,
    help="Queue a verification.failed notification on failure.",
)
@pass_ctx
def verify_files_cmd(
    ctx: Context, project: str, directory: Path, name: str | None, notify: bool
) -> None:
    """Re-hash a materialized release's files; exit 1 naming any changed, missing or
    unlisted file, or a manifest the ledger did not record."""
    store = ctx.store()
    check = verify_materialized(store, project, directory, name)
    if not check.ok:
        for problem in check.problems:
            click.echo(f"{directory}: {problem}", err=True)
        raise_failed(store, check, notify=notify)
    click.echo(
        f"{directory}: OK, {check.files} files match manifest sha256 {check.manifest_sha256}, "
        f"recorded for release {check.name} in entry {check.recorded_seq}"
    )


# --- notifications ---------------------------------------------------------------------------


@click.group()
def notify() -> None:
    """Outbound notifications (signed webhooks) and their deliveries."""


@notify.command("subscribe")
@click.option("--url", required=True, help="http(s) URL that receives POSTs.")
@click.option("--project", "-p", default=None, help="Only this project (default: all).")
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(KINDS),
    multiple=True,
    help="Notification kind (repeat; default: all).",
)
@click.option(
    "--secret-file",
    type=click.File("r"),
    default=None,
    help="Read the HMAC secret from this file (default: generate one).",
)
@click.option("--description", default=None)
@pass_ctx
def notify_subscribe(
    ctx: Context,
    url: str,
    project: str | None,
    kinds: tuple[str, ...],
    secret_file: Any,
    description: str | None,
) -> None:
    """Add a subscriber; print its secret as the last line (shown only now)."""
    secret = secret_file.read().strip() if secret_file is not None else None
    sub, secret = subscribe(
        ctx.store(),
        url,
        created_by=cli_principal(),
        project=project,
        kinds=kinds or None,
        secret=secret,
        description=description,
    )
    scope = f"project {sub.project}" if sub.project else "all projects"
    click.echo(
        f"subscriber {sub.id}: {sub.url} ({scope}; {', '.join(sub.kinds)}); bodies are signed "
        "with HMAC-SHA256 in X-Ledger-Signature-256 using this secret:",
        err=True,
    )
    click.echo(secret)


@notify.command("list")
@click.option("--project", "-p", default=None, help="Only subscribers that hear of this project.")
@click.option("--all", "include_inactive", is_flag=True, help="Include unsubscribed ones.")
@_format
@pass_ctx
def notify_list(ctx: Context, project: str | None, include_inactive: bool, fmt: str) -> None:
    """Subscribers (never their secrets)."""
    subs = list_subscribers(ctx.store(), project=project, include_inactive=include_inactive)
    if fmt == "json":
        _json([s.to_json() for s in subs])
        return
    _table(
        ("ID", "URL", "PROJECT", "KINDS", "STATUS", "CREATED"),
        [
            (
                s.id,
                s.url,
                s.project or "*",
                ",".join(s.kinds),
                "active" if s.active else f"removed {s.disabled_at}",
                s.created_at,
            )
            for s in subs
        ],
    )


@notify.command("unsubscribe")
@click.argument("subscriber_id")
@pass_ctx
def notify_unsubscribe(ctx: Context, subscriber_id: str) -> None:
    """Deactivate a subscriber; its pending deliveries are not sent."""
    unsubscribe(ctx.store(), subscriber_id)
    click.echo(f"subscriber {subscriber_id} removed")


@notify.command("deliveries")
@click.option("--project", "-p", default=None)
@click.option("--subscriber", default=None, help="Subscriber id.")
@click.option("--status", type=click.Choice(["pending", "delivered", "failed"]), default=None)
@click.option("--attempts", is_flag=True, help="Show every attempt.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@_format
@pass_ctx
def notify_deliveries(
    ctx: Context,
    project: str | None,
    subscriber: str | None,
    status: str | None,
    attempts: bool,
    limit: int,
    fmt: str,
) -> None:
    """Deliveries, newest first, with their attempts (admins)."""
    found = list_deliveries(
        ctx.store(),
        project=project,
        subscriber_id=subscriber,
        status=status,
        with_attempts=attempts,
        limit=limit,
    )
    if fmt == "json":
        _json([d.to_json() for d in found])
        return
    _table(
        ("DELIVERY", "PROJECT", "KIND", "SUBJECT", "STATUS", "TRIES", "NEXT", "LAST ERROR"),
        [
            (
                d.id,
                d.project,
                d.kind,
                d.subject,
                d.status,
                d.attempts,
                d.next_attempt_at if d.status == "pending" else "",
                d.last_error,
            )
            for d in found
        ],
    )
    for d in found:
        for a in d.history:
            click.echo(
                f"  {d.id} attempt {a.attempt} at {a.started_at}: {a.outcome}, "
                f"HTTP {a.status_code or '-'}, {a.duration_ms} ms"
                + (f", {a.error}" if a.error else "")
            )


@notify.command("deliver")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@pass_ctx
def notify_deliver(ctx: Context, limit: int) -> None:
    """Send the deliveries that are due (one attempt each); for cron or a timer."""
    report = deliver_pending(ctx.store(), limit=limit)
    click.echo(
        f"{report.attempted} attempted: {report.delivered} delivered, "
        f"{report.retrying} to retry, {report.failed} failed"
    )
