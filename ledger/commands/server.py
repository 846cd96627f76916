"""``ledger serve``: the HTTP service on this machine, set up on first run."""

from __future__ import annotations

import os
import sys

import click

from ledger.auth import TokenStore
from ledger.commands.common import Context, cli_principal, pass_ctx
from ledger.errors import ConfigError

GUNICORN_CONFIG = "python:api.gunicorn_config"

POSTGRES_HINT = """\
To move to PostgreSQL: create the roles and database (deploy/postgres-roles.sql), run
  LEDGER_DATABASE_URL=postgresql://ledger_owner@HOST/ledger ledger db upgrade
then serve with LEDGER_DATABASE_URL=postgresql://ledger_app@HOST/ledger and
  gunicorn -c deploy/gunicorn.conf.py api.wsgi:app
(deploy/OPERATIONS.md). Logs are not copied between databases: every entry keeps the
time and principal it was recorded with, so start real projects where they will stay."""


def register(cli: click.Group) -> None:
    cli.add_command(serve)


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


@click.command()
@click.option("--host", default=None, help="Address to listen on (default LEDGER_HOST).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="Port (default LEDGER_PORT)."
)
@click.option("--workers", type=click.IntRange(1), default=None, help="gunicorn workers.")
@pass_ctx
def serve(ctx: Context, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the HTTP service with gunicorn, setting up what is missing first.

    On the SQLite default the first run creates the data folder (LEDGER_DATA_DIR,
    ./ledger-data) with the database, a signing key (mode 0600) and a first admin
    token, which is printed this once. With PostgreSQL the schema must have been
    migrated by its owner (`ledger db upgrade`).
    """
    from ledger.checkpoints import ensure_signing_key

    settings = ctx.settings
    host = host or settings.host
    port = settings.port if port is None else port
    store = ctx.store()  # the SQLite default migrates itself here
    if not settings.effective_database_url.startswith("sqlite:"):
        pending = store.pending_migrations()
        if pending:
            raise ConfigError(
                f"the database schema is not up to date (pending: {', '.join(pending)}); "
                "run `ledger db upgrade` as the schema owner first"
            )
    key_path = settings.effective_signing_key_file
    key_existed = key_path.exists()
    signer = ensure_signing_key(settings)
    tokens = TokenStore(store)
    first = None
    if not tokens.list():
        first = tokens.create("admin", name="admin", created_by=cli_principal())

    say = click.echo
    say("Annotation ledger")
    if settings.effective_database_url.startswith("sqlite:"):
        say(f"  data:         {settings.data_dir.resolve()}")
        say(f"  database:     {settings.effective_database_url}")
    else:
        say(f"  database:     PostgreSQL ({store.dialect}, LEDGER_DATABASE_URL)")
    state = "created now, mode 0600" if not key_existed else "mode 0600"
    say(f"  signing key:  {key_path.resolve()} ({state}; keep it secret, back it up)")
    say(f"  verifier key: {signer.verifier().key_string()}")
    if first is not None:
        token, secret = first
        say(f"  admin token:  shown only this once, store it now (principal {token.principal}):")
        say(f"    {secret}")
    else:
        say(f"  tokens:       {tokens.count_active()} active (`ledger tokens list`)")
    say(f"  serving:      http://{_bind(host, port)}  (API document: /v1/openapi.json)")
    say("")
    if settings.effective_database_url.startswith("sqlite:"):
        say(POSTGRES_HINT)
    sys.stdout.flush()
    store.close()

    argv = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG, "--bind", _bind(host, port)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    argv.append("api.wsgi:app")
    try:
        os.execv(sys.executable, argv)
    except OSError as e:
        raise ConfigError(f"cannot start gunicorn: {e.strerror}") from e
