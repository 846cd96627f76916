"""Commands for this area (filled in as the area is built)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    pass
