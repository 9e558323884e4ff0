"""The typer application and the one place that turns errors into exit codes.

Exit status: 0 success, 1 a case failed its expectation, 2 bad input (the
message of the :class:`~assocmem.errors.AssocmemError`, no traceback).
"""

from __future__ import annotations

import sys

import click
import typer
from rich.console import Console
from rich.markup import escape

from assocmem.errors import AssocmemError

app = typer.Typer(
    name="assocmem",
    help="Associative-memory transformers: compile relation graphs, run them, look inside.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    try:
        # without standalone mode click returns a command's exit status instead of exiting
        rc = app(args=argv, prog_name="assocmem", standalone_mode=False)
    except AssocmemError as e:
        # the message is plain text: a token like "[/x]" must print as itself, not as markup
        err_console.print(
            f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True
        )
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        return 1
    return rc if isinstance(rc, int) else 0


def run_main() -> None:
    """Console-script entry point."""
    sys.exit(main())
