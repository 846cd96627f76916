"""The ``ledger`` command line: a thin layer over the library.

Every command raises ``LedgerError`` on failure; ``main`` catches it once, prints the
message to stderr and exits with the error's documented code:

    0 success            1 verification failed     2 invalid input or usage
    3 conflict           4 not found               5 storage error
    6 configuration error
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import click
from tqdm import tqdm

from ledger.canonical import parse_json
from ledger.config import Settings, load_settings
from ledger.errors import FieldError, LedgerError, VerificationFailed
from ledger.service import Ledger, check_project_name
from ledger.store import Store, open_store


@dataclass
class Context:
    settings: Settings
    _store: Store | None = field(default=None)

    def store(self, *, upgrade: bool | None = None) -> Store:
        if self._store is None:
            # The embedded default migrates itself on first use; PostgreSQL is
            # migrated explicitly with `ledger db upgrade` (by the schema owner).
            auto = self.settings.uses_default_sqlite or self.settings.effective_database_url.startswith(
                "sqlite:"
            )
            self._store = open_store(
                self.settings.effective_database_url,
                upgrade=auto if upgrade is None else upgrade,
                sqlite_busy_timeout=self.settings.sqlite_busy_timeout,
            )
        return self._store

    def ledger(self) -> Ledger:
        return Ledger(self.store(), max_batch=self.settings.max_batch)


pass_ctx = click.make_pass_decorator(Context)


def cli_principal() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def progress_bar(total: int | None, desc: str, unit: str = "entries") -> tqdm[Any]:
    """Progress on stderr; quiet when stderr is not a terminal unless the job is big."""
    return tqdm(
        total=total,
        desc=desc,
        unit=f" {unit}",
        file=sys.stderr,
        disable=None if total is None or total < 100_000 else False,
        mininterval=0.5,
        leave=False,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="annotation-ledger", prog_name="ledger")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Append-only audit and lineage ledger for instance-segmentation annotation."""
    ctx.obj = Context(load_settings())


# --- db -------------------------------------------------------------------------------


@cli.group()
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


# --- append / log / verify ----------------------------------------------------------


def _read_jsonl(stream: TextIO) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, parse_json(line, loc=f"line {number}")


@cli.command()
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
    import re

    def fix(text: str) -> str:
        text = re.sub(r"events\[(\d+)\]\.", lambda m: f"line {lines[int(m.group(1))]}: ", text)
        return re.sub(r"events\[(\d+)\]", lambda m: f"line {lines[int(m.group(1))]}", text)

    error.errors = [FieldError(fix(e.loc), e.message) for e in errors]  # type: ignore[attr-defined]
    error.message = fix(error.message)
    error.args = (error.message,)


@cli.command("log")
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


@cli.command()
@click.option("--project", "-p", default=None, help="Project to verify (default: every project).")
@pass_ctx
def verify(ctx: Context, project: str | None) -> None:
    """Recompute every leaf, chain link and tree hash; exit 1 at the first bad entry."""
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

            report = verify_log(store, name, progress)
        if report.ok:
            root = report.root.hex() if report.root else ""
            click.echo(f"{name}: OK, {report.checked} entries, root {root}")
        else:
            click.echo(f"{name}: FAILED at {report.first_failure}", err=True)
            failed.append(name)
    if failed:
        raise VerificationFailed(f"verification failed for {', '.join(failed)}")


@cli.command()
@pass_ctx
def projects(ctx: Context) -> None:
    """List projects with their log sizes."""
    for head in ctx.store().projects():
        if head.size:
            click.echo(f"{head.project}\t{head.size}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning a LedgerError into its exit code."""
    try:
        cli.main(args=argv, prog_name="ledger", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(2)
    except LedgerError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
