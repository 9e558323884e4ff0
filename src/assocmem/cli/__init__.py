"""The ``assocmem`` command line. Each command group lives in its own module and
registers itself on :data:`app` when imported here."""

from assocmem.cli import bilateral as _bilateral  # noqa: F401  bilateral
from assocmem.cli import knn as _knn  # noqa: F401  knn build, knn eval
from assocmem.cli import run as _run  # noqa: F401  run, check
from assocmem.cli import sae as _sae  # noqa: F401  sae train, sae inspect
from assocmem.cli import serve as _serve  # noqa: F401  serve
from assocmem.cli import sweep as _sweep  # noqa: F401  sweep
from assocmem.cli import train as _train  # noqa: F401  train, sample, inspect
from assocmem.cli import winograd as _winograd  # noqa: F401  winograd
from assocmem.cli.app import app, main, run_main

__all__ = ["app", "main", "run_main"]
