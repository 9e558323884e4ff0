"""The typer application and the one place that turns errors into exit codes.

Exit status: 0 success, 1 a case failed its expectation, 2 bad input (the
message of the :class:`~assocmem.errors.AssocmemError`, no traceback) or a usage
error (an unknown command or option, a missing argument: the usage line and the
error, as typer prints them).
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

import assocmem
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


def package_version() -> str:
    """The installed distribution's version (the source's when not installed)."""
    try:
        return version("assocmem")
    except PackageNotFoundError:
        return assocmem.__version__


def _print_version(value: bool) -> None:
    if value:
        console.print(f"assocmem {package_version()}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Associative-memory transformers: compile relation graphs, run them, look inside."""


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Typer runs in standalone mode: it prints its own usage errors and exits, whichever
    click it is built on (typer >= 0.26 vendors its own, whose exceptions are not the
    ``click`` package's), so only the exit is caught here, and assocmem's own errors.
    """
    try:
        app(args=argv, prog_name="assocmem", standalone_mode=True)
    except AssocmemError as e:
        # the message is plain text: a token like "[/x]" must print as itself, not as markup
        err_console.print(
            f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True
        )
        return 2
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)  # sys.exit("message"): Python's own convention
        return 1
    return 0


def run_main() -> None:
    """Console-script entry point."""
    sys.exit(main())
