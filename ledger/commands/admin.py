"""Token administration: ``ledger tokens create | list | revoke``."""

from __future__ import annotations

import click

from ledger.auth import ROLES, TokenStore
from ledger.commands.common import Context, cli_principal, pass_ctx


def register(cli: click.Group) -> None:
    cli.add_command(tokens)


@click.group()
def tokens() -> None:
    """API tokens (bearer tokens for the HTTP service)."""


@tokens.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the token may do.")
@click.option("--project", "-p", default=None, help="The one project it may act on (default: all).")
@click.option("--name", default=None, help="Its name; entries record `token:<name>`.")
@pass_ctx
def create(ctx: Context, role: str, project: str | None, name: str | None) -> None:
    """Create a token and print it as the last line (on stdout; the rest goes to stderr).

    The token is shown only now: the ledger stores only its SHA-256 hash.
    """
    token, secret = TokenStore(ctx.store()).create(
        role, project=project, name=name, created_by=cli_principal()
    )
    scope = f"project {token.project}" if token.project else "all projects"
    click.echo(
        f"created token {token.name} (id {token.id}, role {token.role}, {scope}); "
        f"entries it appends record principal {token.principal}",
        err=True,
    )
    click.echo("store it now: it is shown only this once", err=True)
    click.echo(secret)


@tokens.command("list")
@click.option("--active", is_flag=True, help="Leave out revoked tokens.")
@pass_ctx
def list_tokens(ctx: Context, active: bool) -> None:
    """List tokens (never their secrets): id, name, role, project, created, status."""
    found = TokenStore(ctx.store()).list(include_revoked=not active)
    if not found:
        click.echo("no tokens; create one with `ledger tokens create --role admin`", err=True)
        return
    rows = [("ID", "NAME", "ROLE", "PROJECT", "CREATED", "STATUS")]
    for t in found:
        status = f"revoked {t.revoked_at}" if t.revoked_at else "active"
        rows.append((t.id, t.name, t.role, t.project or "*", t.created_at, status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1])


@tokens.command("revoke")
@click.argument("token_id")
@pass_ctx
def revoke(ctx: Context, token_id: str) -> None:
    """Revoke the token with id TOKEN_ID (as `ledger tokens list` shows it)."""
    token = TokenStore(ctx.store()).revoke(token_id)
    click.echo(f"token {token.name} ({token.id}) revoked at {token.revoked_at}")
