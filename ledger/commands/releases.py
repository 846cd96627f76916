"""Releases, COCO export and import, lineage, history, as-of state, diffs and the
projection check."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import click

from ledger import asof as asof_mod
from ledger import audit
from ledger.coco import Written, export_state, write_to
from ledger.coco_import import import_coco
from ledger.commands.common import Context, cli_principal, pass_ctx, progress_bar
from ledger.diff import diff as diff_states
from ledger.diff import parse_side, summarize
from ledger.errors import InvalidInput, VerificationFailed
from ledger.events import ReleasePolicy
from ledger.lineage import lineage as read_lineage
from ledger.lineage import to_prov
from ledger.rebuild import check_projections
from ledger.releases import (
    create_release,
    export_release,
    get_release,
    list_releases,
    parse_policy,
    verify_release,
)
from ledger.service import check_project_name


def register(cli: click.Group) -> None:
    cli.add_command(release)
    cli.add_command(export_group)
    cli.add_command(import_group)
    cli.add_command(projections)
    cli.add_command(lineage_cmd)
    cli.add_command(history)
    cli.add_command(asof_cmd)
    cli.add_command(diff_cmd)


_project = click.option("--project", "-p", required=True, help="Project.")


def _json_line(value: Any) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _emit(values: Iterable[Any]) -> int:
    count = 0
    for value in values:
        click.echo(_json_line(value))
        count += 1
    return count


def _advance(bar: Any) -> Callable[[int], None]:
    """Progress callback: move the bar to ``done``."""

    def update(done: int) -> None:
        bar.update(done - bar.n)

    return update


def _advance2(bar: Any) -> Callable[[int, int], None]:
    def update(done: int, total: int) -> None:
        bar.update(done - bar.n)

    return update


def _policy(selection: str, categories: tuple[int, ...]) -> ReleasePolicy:
    return parse_policy(selection, list(categories) or None)


def _write_checked(
    chunks: Iterator[bytes], output: str, expected: str | None, what: str
) -> Written:
    """Write an export to ``output`` ('-' for stdout). A file is written beside its
    final name and moved there only when its hash is the expected one."""
    if output == "-":
        written = write_to(chunks, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        target = Path(output)
        partial = target.with_name(target.name + ".partial")
        try:
            with partial.open("wb") as out:
                written = write_to(chunks, out)
        except OSError as e:
            partial.unlink(missing_ok=True)
            raise InvalidInput.field("--output", f"cannot write {output}: {e.strerror}") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if expected is not None and written.sha256 != expected:
            partial.unlink(missing_ok=True)
            raise VerificationFailed(
                f"{what}: export has SHA-256 {written.sha256}, the release recorded {expected}; "
                "nothing was written (run `ledger projections check`)"
            )
        os.replace(partial, target)
    if expected is not None and written.sha256 != expected:
        raise VerificationFailed(
            f"{what}: export has SHA-256 {written.sha256}, the release recorded {expected}"
        )
    return written


# --- release ------------------------------------------------------------------------------


@click.group()
def release() -> None:
    """Dataset releases: pinned, hashed COCO exports."""


@release.command("create")
@_project
@click.option("--name", "-n", required=True, help="Release name, unique in the project.")
@click.option(
    "--policy",
    type=click.Choice(["accepted", "all"]),
    default="accepted",
    show_default=True,
    help="accepted: current revisions whose latest review is accept; all: every current one.",
)
@click.option("--category", "categories", type=int, multiple=True, help="Only this category.")
@click.option("--at", type=click.IntRange(1), default=None, help="Tree size (default: all).")
@click.option("--actor", default=None, help="Actor named in the event (default: the CLI user).")
@pass_ctx
def release_create(
    ctx: Context,
    project: str,
    name: str,
    policy: str,
    categories: tuple[int, ...],
    at: int | None,
    actor: str | None,
) -> None:
    """Export the state at a tree size, hash it and record a release.created event."""
    check_project_name(project, "--project")
    principal = cli_principal()
    with progress_bar(None, f"exporting {name}", "annotations") as bar:
        made = create_release(
            ctx.ledger(),
            project,
            name,
            actor=actor or principal,
            principal=principal,
            policy=_policy(policy, categories),
            at=at,
            progress=_advance(bar),
        )
    click.echo(
        f"release {made.name} of {project}: tree size {made.tree_size}, "
        f"sha256 {made.sha256}, entry {made.seq}"
    )
    # configured exports and subscriber notifications; never fails the release
    from ledger.materialize import on_release_created

    hook = on_release_created(ctx.ledger(), project, made.name, ctx.settings, principal=principal)
    for problem in hook.errors:
        click.echo(f"warning: {problem}", err=True)


@release.command("list")
@_project
@pass_ctx
def release_list(ctx: Context, project: str) -> None:
    """Releases of a project: name, tree size, policy, SHA-256, entry."""
    for r in list_releases(ctx.store(), project):
        policy = json.dumps(r.policy.model_dump(mode="json", exclude_none=True), sort_keys=True)
        click.echo(f"{r.name}\t{r.tree_size}\t{policy}\t{r.sha256}\t{r.seq}")


@release.command("export")
@_project
@click.option("--name", "-n", required=True)
@click.option("--output", "-o", required=True, help="File to write ('-' for stdout).")
@pass_ctx
def release_export(ctx: Context, project: str, name: str, output: str) -> None:
    """Write a release's COCO export, checked against the release's hash."""
    store = ctx.store()
    expected = get_release(store, project, name).sha256
    with progress_bar(None, f"exporting {name}", "annotations") as bar:
        chunks = export_release(store, project, name, _advance(bar))
        written = _write_checked(chunks, output, expected, f"release {name}")
    if output != "-":
        click.echo(f"wrote {output}: {written.size} bytes, sha256 {written.sha256} (matches)")


@release.command("verify")
@_project
@click.option("--name", "-n", required=True)
@pass_ctx
def release_verify(ctx: Context, project: str, name: str) -> None:
    """Rebuild a release from the log alone and check its hash; exit 1 if it differs."""
    store = ctx.store()
    size = asof_mod.log_size(store, project)
    with progress_bar(size, f"replaying {project}") as bar:
        check = verify_release(store, project, name, _advance2(bar))
    if not check.ok:
        for problem in check.problems:
            click.echo(f"{name}: {problem}", err=True)
        raise VerificationFailed(f"release {name} of {project} did not verify")
    click.echo(
        f"release {name} of {project}: OK, rebuilt from entries 0..{check.tree_size - 1} "
        f"(root {check.root_hash}), sha256 {check.rebuilt_sha256}"
    )


# --- export / import ----------------------------------------------------------------------


@click.group("export")
def export_group() -> None:
    """Export a state of a project."""


@export_group.command("coco")
@_project
@click.option("--at", type=click.IntRange(1), default=None, help="Tree size (default: all).")
@click.option("--time", "when", default=None, help="State as of this time (ISO 8601).")
@click.option("--policy", type=click.Choice(["accepted", "all"]), default="all", show_default=True)
@click.option("--category", "categories", type=int, multiple=True, help="Only this category.")
@click.option("--output", "-o", required=True, help="File to write ('-' for stdout).")
@pass_ctx
def export_coco(
    ctx: Context,
    project: str,
    at: int | None,
    when: str | None,
    policy: str,
    categories: tuple[int, ...],
    output: str,
) -> None:
    """Deterministic COCO export of the state at a tree size or time."""
    store = ctx.store()
    size = asof_mod.resolve_size(store, project, at, when)
    with progress_bar(None, f"exporting {project}@{size}", "annotations") as bar:
        chunks = export_state(
            store, project, size, _policy(policy, categories), None,
            _advance(bar),
        )  # fmt: skip
        written = _write_checked(chunks, output, None, f"{project} at {size}")
    if output != "-":
        click.echo(
            f"wrote {output}: tree size {size}, {written.size} bytes, sha256 {written.sha256}"
        )


@click.group("import")
def import_group() -> None:
    """Import data into a project."""


@import_group.command("coco")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_project
@click.option("--actor", required=True, help="Annotator the masks are attributed to.")
@click.option("--guideline", required=True, help="Guideline version, ID@VERSION.")
@click.option("--guideline-sha256", default=None, help="Document hash for a new guideline.")
@click.option("--prefix", default="coco-", show_default=True, help="Prefix of ledger ids.")
@click.option("--skip-invalid", is_flag=True, help="Leave out masks the ledger refuses.")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Events per batch.")
@pass_ctx
def import_coco_cmd(
    ctx: Context,
    file: Path,
    project: str,
    actor: str,
    guideline: str,
    guideline_sha256: str | None,
    prefix: str,
    skip_invalid: bool,
    batch_size: int | None,
) -> None:
    """Append a COCO file's images, categories and annotations as events."""
    check_project_name(project, "--project")
    with progress_bar(None, f"importing {file.name}", "events") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = import_coco(
            ctx.ledger(), project, file, actor=actor, guideline=guideline,
            principal=cli_principal(), prefix=prefix, guideline_sha256=guideline_sha256,
            skip_invalid=skip_invalid, batch_size=batch_size, progress=progress,
        )  # fmt: skip
    for problem in result.skipped[:20]:
        click.echo(f"skipped {problem}", err=True)
    if len(result.skipped) > 20:
        click.echo(f"skipped {len(result.skipped) - 20} more", err=True)
    click.echo(
        f"imported {file.name} into {project}: {result.images} images, {result.categories} "
        f"categories, {result.annotations} annotations; appended {result.appended} events "
        f"({result.already_present} already present, {len(result.skipped)} skipped); "
        f"log size {result.size}"
    )


# --- projections --------------------------------------------------------------------------


@click.group()
def projections() -> None:
    """Projections derived from the log."""


@projections.command("check")
@_project
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@pass_ctx
def projections_check(ctx: Context, project: str, limit: int) -> None:
    """Rebuild every projection from the log and compare it with the stored one."""
    store = ctx.store()
    size = asof_mod.log_size(store, project)
    with progress_bar(size, f"replaying {project}") as bar:
        report = check_projections(store, project, _advance2(bar), limit=limit)
    if not report.ok:
        for difference in report.differences:
            click.echo(str(difference), err=True)
        raise VerificationFailed(
            f"{project}: {report.total} projection rows differ from the log; first: {report.first}"
        )
    rows = sum(report.rows.values())
    click.echo(f"{project}: OK, {rows} projection rows match the {size} entries of the log")


# --- reads --------------------------------------------------------------------------------


@click.command("lineage")
@click.argument("instance")
@_project
@click.option("--prov", is_flag=True, help="W3C PROV-JSON instead of the ledger's JSON.")
@pass_ctx
def lineage_cmd(ctx: Context, instance: str, project: str, prov: bool) -> None:
    """Every revision and review of INSTANCE, with each entry's seq and leaf hash."""
    found = read_lineage(ctx.store(), project, instance)
    doc = to_prov(found) if prov else dataclasses.asdict(found)
    click.echo(json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True))


@click.command()
@_project
@click.option("--actor", default=None, help="Everything this actor did.")
@click.option("--reviewer", default=None, help="Every decision of this reviewer.")
@click.option("--guideline", default=None, help="Instances whose current revision used ID@VERSION.")
@click.option("--since", default=None, help="From this server time (ISO 8601, inclusive).")
@click.option("--until", default=None, help="Up to this server time (exclusive).")
@click.option("--at", type=click.IntRange(1), default=None, help="Tree size, for --guideline.")
@pass_ctx
def history(
    ctx: Context,
    project: str,
    actor: str | None,
    reviewer: str | None,
    guideline: str | None,
    since: str | None,
    until: str | None,
    at: int | None,
) -> None:
    """Audit queries, one JSON object per line."""
    chosen = [x for x in (actor, reviewer, guideline) if x is not None]
    if len(chosen) != 1:
        raise InvalidInput.field("history", "give exactly one of --actor, --reviewer, --guideline")
    store = ctx.store()
    if actor is not None:
        _emit(audit.actor_activity(store, project, actor, since, until))
    elif reviewer is not None:
        _emit(audit.reviewer_decisions(store, project, reviewer, since, until))
    else:
        assert guideline is not None
        _emit(audit.guideline_instances(store, project, guideline, at))


@click.command("asof")
@_project
@click.option("--at", type=click.IntRange(1), default=None, help="Tree size (default: all).")
@click.option("--time", "when", default=None, help="State as of this time (ISO 8601).")
@click.option("--image", default=None, help="Only the instances of this image.")
@click.option("--masks", is_flag=True, help="Include each instance's segmentation.")
@click.option("--deleted", is_flag=True, help="Include deleted instances.")
@pass_ctx
def asof_cmd(
    ctx: Context,
    project: str,
    at: int | None,
    when: str | None,
    image: str | None,
    masks: bool,
    deleted: bool,
) -> None:
    """Instances as of a tree size or time, one JSON object per line."""
    store = ctx.store()
    size = asof_mod.resolve_size(store, project, at, when)
    click.echo(f"# {project} as of tree size {size}", err=True)
    if image is not None:
        states: Iterable[Any] = asof_mod.image_instances(
            store, project, image, size, masks=masks, include_deleted=deleted
        )
    else:
        states = asof_mod.iter_instances(store, project, size, masks=masks, include_deleted=deleted)
    _emit(_drop_masks(states) if not masks else states)


def _drop_masks(states: Iterable[asof_mod.InstanceState]) -> Iterator[dict[str, Any]]:
    for state in states:
        out = dataclasses.asdict(state)
        out.pop("segmentation")
        yield out


@click.command("diff")
@_project
@click.argument("old")
@click.argument("new")
@click.option(
    "--policy",
    type=click.Choice(["accepted", "all"]),
    default="all",
    show_default=True,
    help="Selection for a side given as @SIZE (a release uses its own).",
)
@click.option("--summary", is_flag=True, help="Only the counts.")
@pass_ctx
def diff_cmd(ctx: Context, project: str, old: str, new: str, policy: str, summary: bool) -> None:
    """Changes between OLD and NEW: release names, or @SIZE for a tree size."""
    store = ctx.store()
    chosen = parse_policy(policy)
    a = parse_side(store, project, old, chosen, "OLD")
    b = parse_side(store, project, new, chosen, "NEW")
    changes = diff_states(store, project, a, b)
    if summary:
        counts = summarize(list(changes))
        click.echo(f"{a.label} -> {b.label}: {_json_line(counts)}")
        return
    out: IO[str] = sys.stdout
    for change in changes:
        row = {
            "kind": change.kind,
            "instance_id": change.instance_id,
            "image_id": change.image_id,
            "changes": list(change.changes),
            "actor": change.actor,
            "seq": change.seq,
            "recorded_at": change.recorded_at,
            "before_revision": change.before.revision if change.before else None,
            "after_revision": change.after.revision if change.after else None,
        }
        out.write(_json_line(row) + "\n")
