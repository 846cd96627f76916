"""CLI commands, one module per area; each has ``register(cli)``."""

from __future__ import annotations

import click

from ledger.commands import admin, checkpoints, core, releases, server


def register_all(cli: click.Group) -> None:
    for module in (core, checkpoints, releases, server, admin):
        module.register(cli)
