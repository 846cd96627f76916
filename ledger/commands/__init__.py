"""CLI commands, one module per area; each has ``register(cli)``."""

from __future__ import annotations

import click

from ledger.commands import admin, checkpoints, core, integrations, qa, releases, server, workflow


def register_all(cli: click.Group) -> None:
    # workflow adds subcommands to the release group, so it comes after releases
    for module in (core, checkpoints, releases, server, admin, qa, workflow, integrations):
        module.register(cli)
