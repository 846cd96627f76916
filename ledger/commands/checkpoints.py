"""Keys, checkpoints, signed notes, proofs and audit bundles.

ledger keys generate --name NAME --out FILE
ledger keys show | ledger keys list
ledger checkpoint --project P [--size N | --list]
ledger note verify --key VERIFIER_KEY FILE
ledger proof inclusion --project P --index I [--size N]
ledger proof consistency --project P --from M [--to N]
ledger bundle export --project P -o DIR
ledger bundle verify DIR --key VERIFIER_KEY [--since OLD_CHECKPOINT_FILE]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, BinaryIO

import click
from tqdm import tqdm

from ledger.commands.common import Context, pass_ctx, progress_bar
from ledger.errors import InvalidInput, NoteError, VerificationFailed
from ledger.keys import load_verifier_keys, write_signer_key
from ledger.note import Verifier, generate_signer, open_note, parse_verifier_key
from ledger.service import check_project_name
from ledger.verify import Progress


def register(cli: click.Group) -> None:
    cli.add_command(keys)
    cli.add_command(checkpoint)
    cli.add_command(note)
    cli.add_command(proof)
    cli.add_command(bundle)


def _verifiers(key_strings: tuple[str, ...], keys_file: Path | None) -> list[Verifier]:
    out = []
    for i, s in enumerate(key_strings, start=1):
        try:
            out.append(parse_verifier_key(s.strip()))
        except NoteError as e:
            raise InvalidInput.field(f"--key ({i})", str(e)) from e
    if keys_file is not None:
        out.extend(load_verifier_keys(keys_file))
    if not out:
        raise InvalidInput.field("--key", "give at least one verifier key")
    return out


def _advance(bar: tqdm[Any]) -> Progress:
    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    return progress


# --- keys -----------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """Ed25519 signing keys and published verifier keys."""


@keys.command("generate")
@click.option("--name", required=True, help="Key name, e.g. the log's host name.")
@click.option(
    "--out", "out", required=True, type=click.Path(path_type=Path), help="New private key file."
)
def keys_generate(name: str, out: Path) -> None:
    """Write a new signing key to FILE (mode 0600); print its verifier key last."""
    try:
        signer = generate_signer(name)
    except NoteError as e:
        raise InvalidInput.field("--name", str(e)) from e
    write_signer_key(out, signer)
    click.echo(f"wrote the private key to {out} (keep it secret); its verifier key:", err=True)
    click.echo(signer.verifier().key_string())


@keys.command("show")
@pass_ctx
def keys_show(ctx: Context) -> None:
    """Print the verifier key of the current signing key (created on first run)."""
    from ledger.checkpoints import ensure_signing_key

    click.echo(ensure_signing_key(ctx.settings).verifier().key_string())


@keys.command("list")
@pass_ctx
def keys_list(ctx: Context) -> None:
    """Print every published verifier key: configured ones, then those in the database."""
    from ledger.checkpoints import published_verifier_keys, stored_verifier_keys

    seen = set()
    for source, found in (
        ("config", published_verifier_keys(ctx.settings)),
        ("database", stored_verifier_keys(ctx.store())),
    ):
        for v in found:
            if v.key_string() not in seen:
                seen.add(v.key_string())
                click.echo(f"{v.key_string()}\t{source}")


# --- checkpoints ----------------------------------------------------------------------


@click.command()
@click.option("--project", "-p", required=True)
@click.option("--size", type=click.IntRange(1), default=None, help="Print the one at this size.")
@click.option("--list", "list_", is_flag=True, help="List stored checkpoints instead.")
@pass_ctx
def checkpoint(ctx: Context, project: str, size: int | None, list_: bool) -> None:
    """Sign a checkpoint of the project's log now and print the signed note.

    If the log has not grown since the latest checkpoint, that one is printed.
    """
    from ledger.checkpoints import CheckpointService, get_checkpoint, list_checkpoints

    check_project_name(project, "--project")
    store = ctx.store()
    if list_:
        after = 0
        while page := list_checkpoints(store, project, after=after, limit=1000):
            for cp in page:
                click.echo(f"{cp.size}\t{cp.root.hex()}\t{cp.key_name}\t{cp.created_at}")
            after = page[-1].size
        return
    if size is not None:
        cp = get_checkpoint(store, project, size)
    else:
        cp = CheckpointService.from_settings(store, ctx.settings).issue(project)
    sys.stdout.write(cp.text)
    sys.stdout.flush()


# --- notes ----------------------------------------------------------------------------


@click.group()
def note() -> None:
    """C2SP signed notes."""


@note.command("verify")
@click.option("--key", "key_strings", multiple=True, required=True, help="Verifier key.")
@click.argument("file", type=click.File("rb"))
def note_verify(key_strings: tuple[str, ...], file: BinaryIO) -> None:
    """Exit 0 only if the note in FILE ('-' for stdin) carries a valid signature by
    one of the keys; print the note's text."""
    verifiers = _verifiers(key_strings, None)
    opened = open_note(file.read(), verifiers)
    for sig in opened.sigs:
        click.echo(f"verified: signed by {sig.name}+{sig.key_id.hex()}", err=True)
    sys.stdout.write(opened.text)
    sys.stdout.flush()


# --- proofs ---------------------------------------------------------------------------


@click.group()
def proof() -> None:
    """RFC 9162 inclusion and consistency proofs, as JSON."""


@proof.command("inclusion")
@click.option("--project", "-p", required=True)
@click.option("--index", type=click.IntRange(0), required=True, help="Sequence number.")
@click.option("--size", type=click.IntRange(1), default=None, help="Tree size (default: all).")
@pass_ctx
def proof_inclusion(ctx: Context, project: str, index: int, size: int | None) -> None:
    """Prove that entry INDEX is in the tree of SIZE entries."""
    from ledger.proofs import inclusion_proof

    check_project_name(project, "--project")
    p = inclusion_proof(ctx.store(), project, index, size)
    click.echo(json.dumps(p.to_json(), indent=2))


@proof.command("consistency")
@click.option("--project", "-p", required=True)
@click.option("--from", "old", type=click.IntRange(1), required=True, help="Older tree size.")
@click.option("--to", "new", type=click.IntRange(1), default=None, help="Newer (default: all).")
@pass_ctx
def proof_consistency(ctx: Context, project: str, old: int, new: int | None) -> None:
    """Prove that the tree of size --to extends the tree of size --from."""
    from ledger.proofs import consistency_proof

    check_project_name(project, "--project")
    p = consistency_proof(ctx.store(), project, old, new)
    click.echo(json.dumps(p.to_json(), indent=2))


# --- bundles --------------------------------------------------------------------------


@click.group()
def bundle() -> None:
    """Audit bundles, verifiable offline."""


@bundle.command("export")
@click.option("--project", "-p", required=True)
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path))
@pass_ctx
def bundle_export(ctx: Context, project: str, out: Path) -> None:
    """Write the project's audit bundle to a new folder, ending at a fresh checkpoint."""
    from ledger.bundle import export_bundle
    from ledger.checkpoints import (
        CheckpointService,
        ensure_signing_key,
        published_verifier_keys,
        stored_verifier_keys,
    )

    check_project_name(project, "--project")
    store = ctx.store()
    head = ctx.ledger().head(project)
    signer = ensure_signing_key(ctx.settings)
    service = CheckpointService.from_settings(store, ctx.settings, signer)
    keys = {v.key_string(): v for v in published_verifier_keys(ctx.settings, signer)}
    for v in stored_verifier_keys(store):
        keys.setdefault(v.key_string(), v)
    with progress_bar(head.size, f"exporting {project}") as bar:
        result = export_bundle(
            store,
            project,
            out,
            service,
            list(keys.values()),
            _advance(bar),
        )
    click.echo(
        f"exported {result.size} entries and {result.checkpoints} checkpoints of {project} "
        f"to {result.directory}; root {result.root.hex()}"
    )


def _bundle_size(directory: Path) -> int | None:
    """The manifest's tree size, for the progress bar only (verification trusts none)."""
    try:
        size = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))["tree_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return size if isinstance(size, int) else None


@bundle.command("verify")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--key", "key_strings", multiple=True, help="Verifier key (repeat for old keys).")
@click.option(
    "--keys-file", type=click.Path(path_type=Path), default=None, help="Verifier keys, one a line."
)
@click.option(
    "--since",
    type=click.Path(path_type=Path),
    default=None,
    help="An older signed checkpoint (or older bundle folder) this log must extend.",
)
@click.option("--deep", is_flag=True, help="Also parse every entry as JSON.")
def bundle_verify(
    directory: Path,
    key_strings: tuple[str, ...],
    keys_file: Path | None,
    since: Path | None,
    deep: bool,
) -> None:
    """Verify an audit bundle offline, trusting only the given keys."""
    from ledger.bundle import verify_bundle

    verifiers = _verifiers(key_strings, keys_file)
    with progress_bar(_bundle_size(directory), f"verifying {directory}") as bar:
        report = verify_bundle(
            directory,
            verifiers,
            since=since,
            deep=deep,
            progress=_advance(bar),
        )
    if not report.ok:
        click.echo(f"{report.project}: FAILED at {report.first_failure}", err=True)
        raise VerificationFailed(f"audit bundle {directory} does not verify")
    root = report.root.hex() if report.root else ""
    click.echo(
        f"{report.project}: OK, {report.size} entries, {report.checkpoints} checkpoints, "
        f"root {root}"
    )
    if report.since is not None:
        click.echo(
            f"{report.project}: the log extends your checkpoint at size {report.since} "
            f"(now {report.size} entries)"
        )
