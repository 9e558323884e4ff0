"""The ``assocmem`` command line. Each command group lives in its own module and
registers itself on :data:`app` when imported here."""

from assocmem.cli.app import app, main, run_main
from assocmem.cli import run as _run  # noqa: F401  run, check

__all__ = ["app", "main", "run_main"]
