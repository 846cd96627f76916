"""What every command module shares: the settings and store context, progress bars."""

from __future__ import annotations

import getpass
import sys
from dataclasses import dataclass, field
from typing import Any

import click
from tqdm import tqdm

from ledger.config import Settings
from ledger.service import Ledger
from ledger.store import Store, open_store


@dataclass
class Context:
    settings: Settings
    _store: Store | None = field(default=None)

    def store(self, *, upgrade: bool | None = None) -> Store:
        if self._store is None:
            # The embedded default migrates itself on first use; PostgreSQL is
            # migrated explicitly with `ledger db upgrade` (by the schema owner).
            auto = self.settings.effective_database_url.startswith("sqlite:")
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
