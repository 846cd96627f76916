"""The ``ledger`` command line: a thin layer over the library.

Commands live in ``ledger.commands``, one module per area. Every command raises
``LedgerError`` on failure; ``main`` catches it once, prints the message to stderr and
exits with the error's documented code:

    0 success            1 verification failed     2 invalid input or usage
    3 conflict           4 not found               5 storage error
    6 configuration error
"""

from __future__ import annotations

import sys

import click

from ledger.commands import register_all
from ledger.commands.common import Context
from ledger.config import load_settings
from ledger.errors import LedgerError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="annotation-ledger", prog_name="ledger")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Append-only audit and lineage ledger for instance-segmentation annotation."""
    ctx.obj = Context(load_settings())


register_all(cli)


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
