"""Core commands: db upgrade, db event-schema, append, log, verify, projects."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import click

from ledger.canonical import parse_json
from ledger.commands.common import Context, cli_principal, pass_ctx, progress_bar
from ledger.errors import FieldError, LedgerError, VerificationFailed
from ledger.service import check_project_name


def register(cli: click.Group) -> None:
    cli.add_command(db)
    cli.add_command(append)
    cli.add_command(log_cmd)
    cli.add_command(verify)
    cli.add_command(projects)


# --- db -------------------------------------------------------------------------------


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Apply pending schema migrations (schema/<dialect>/*.sql)."""
    store = ctx.store(upgrade=False)
    applied = store.upgrade()
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("schema is up to date")


@db.command("event-schema")
def db_event_schema() -> None:
    """Print the JSON Schema of events (the envelope, and one payload schema per type).

    schema/json/event.schema.json is this output; regenerate it after changing an
    event model: ledger db event-schema > schema/json/event.schema.json"""
    import json

    from ledger.events import event_json_schema

    click.echo(json.dumps(event_json_schema(), indent=2, sort_keys=True, ensure_ascii=False))


# --- append / log / verify ----------------------------------------------------------


def _read_jsonl(stream: TextIO) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, parse_json(line, loc=f"line {number}")


@click.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--project", "-p", required=True, help="Project to append to.")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Events per atomic batch.")
@pass_ctx
def append(ctx: Context, file: TextIO, project: str, batch_size: int | None) -> None:
    """Append events from FILE (JSON Lines, '-' for stdin), in atomic batches.

    Each batch commits whole or not at all. On an error, the batches before it stay
    committed; the message names the line and field.
    """
    check_project_name(project, "--project")
    ledger = ctx.ledger()
    size = batch_size or ctx.settings.max_batch
    principal = cli_principal()
    appended = duplicates = 0
    batch: list[Any] = []
    lines: list[int] = []

    def flush() -> None:
        nonlocal appended, duplicates
        try:
            result = ledger.append(project, batch, principal)
        except LedgerError as e:
            _relocate(e, lines)
            raise
        appended += result.appended
        duplicates += len(result.results) - result.appended
        bar.update(len(batch))
        batch.clear()
        lines.clear()

    with progress_bar(None, f"appending to {project}", "events") as bar:
        for number, event in _read_jsonl(file):
            batch.append(event)
            lines.append(number)
            if len(batch) >= size:
                flush()
        if batch:
            flush()
    head = ledger.head(project)
    click.echo(
        f"appended {appended} events to {project} ({duplicates} already present); "
        f"log size {head.size}"
    )


def _relocate(error: LedgerError, lines: list[int]) -> None:
    """Rewrite ``events[i]`` locations as input line numbers."""
    errors: list[FieldError] | None = getattr(error, "errors", None)
    if not errors:
        return

    def fix(text: str) -> str:
        text = re.sub(r"events\[(\d+)\]\.", lambda m: f"line {lines[int(m.group(1))]}: ", text)
        return re.sub(r"events\[(\d+)\]", lambda m: f"line {lines[int(m.group(1))]}", text)

    error.errors = [FieldError(fix(e.loc), e.message) for e in errors]  # type: ignore[attr-defined]
    error.message = fix(error.message)
    error.args = (error.message,)


@click.command("log")
@click.option("--project", "-p", required=True)
@click.option("--from", "start", type=click.IntRange(0), default=0, help="First sequence number.")
@click.option("--to", "end", type=click.IntRange(0), default=None, help="Stop before this one.")
@pass_ctx
def log_cmd(ctx: Context, project: str, start: int, end: int | None) -> None:
    """Print stored entries, one per line, exactly as hashed."""
    ledger = ctx.ledger()
    ledger.head(project)
    out = sys.stdout.buffer
    for _, raw in ledger.store.iter_entries(project, start, end):
        out.write(raw + b"\n")
    out.flush()


@click.command()
@click.option("--project", "-p", default=None, help="Project to verify (default: every project).")
@pass_ctx
def verify(ctx: Context, project: str | None) -> None:
    """Recompute every leaf, chain link and tree hash; exit 1 at the first bad entry."""
    from ledger.checkpoints import published_verifier_keys
    from ledger.verify import verify_log

    store = ctx.store()
    projects = [project] if project else [h.project for h in store.projects() if h.size]
    if project:
        ctx.ledger().head(project)
    failed = []
    for name in projects:
        head = store.head(name)
        with progress_bar(head.size if head else None, f"verifying {name}") as bar:

            def progress(done: int, total: int) -> None:
                bar.update(done - bar.n)

            # checkpoint signatures: the configured keys, else those the database published
            keys = published_verifier_keys(ctx.settings) or None
            report = verify_log(store, name, progress, verifiers=keys, workers=None)
        if report.ok:
            root = report.root.hex() if report.root else ""
            click.echo(f"{name}: OK, {report.checked} entries, root {root}")
        else:
            click.echo(f"{name}: FAILED at {report.first_failure}", err=True)
            failed.append(name)
    if failed:
        raise VerificationFailed(f"verification failed for {', '.join(failed)}")


@click.command()
@pass_ctx
def projects(ctx: Context) -> None:
    """List projects with their log sizes."""
    for head in ctx.store().projects():
        if head.size:
            click.echo(f"{head.project}\t{head.size}")
