"""``ledger import cvat FILE``: a "CVAT for images 1.1" XML export as events."""

from __future__ import annotations

from pathlib import Path

import click

from ledger.commands.common import Context, cli_principal, pass_ctx
from ledger.errors import InvalidInput
from ledger.integrations.cvat import import_xml
from ledger.service import check_project_name

#: largest XML file read (bytes)
MAX_FILE = 512 * 1024 * 1024


@click.command("cvat")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--project", "-p", required=True, help="Project.")
@click.option("--actor", required=True, help="Annotator the shapes are attributed to.")
@click.option("--guideline", required=True, help="Published guideline version, ID@VERSION.")
@click.option(
    "--source", default="cvat", show_default=True, help="Name of the CVAT task, in instance ids."
)
@pass_ctx
def import_cvat(
    ctx: Context, file: Path, project: str, actor: str, guideline: str, source: str
) -> None:
    """Append the images, labels, polygons and masks of a CVAT for images 1.1 file.
    Importing the same file again appends nothing."""
    check_project_name(project, "--project")
    gid, sep, version = guideline.partition("@")
    if not sep or not gid or not version:
        raise InvalidInput.field("--guideline", "use ID@VERSION")
    if file.stat().st_size > MAX_FILE:
        raise InvalidInput.field("FILE", f"larger than {MAX_FILE} bytes")
    ledger = ctx.ledger()
    events = import_xml(
        ledger.store,
        project,
        file.read_bytes(),
        actor=actor,
        guideline={"id": gid, "version": version},
        source=source,
    )
    appended, size = 0, ledger.head(project).size
    step = ctx.settings.max_batch
    for start in range(0, len(events), step):
        result = ledger.append(project, events[start : start + step], cli_principal())
        appended, size = appended + result.appended, result.size
    masks = sum(1 for e in events if e["type"] == "mask.created")
    click.echo(
        f"imported {file.name} into {project}: {masks} new shapes; "
        f"appended {appended} events; log size {size}"
    )


def register(cli: click.Group) -> None:
    group = cli.commands.get("import")
    if not isinstance(group, click.Group):
        group = click.Group("import", help="Import data into a project.")
        cli.add_command(group)
    group.add_command(import_cvat)
