"""Views of a run: figures (PNG, SVG), a self-contained HTML report, a live explorer.

The views only display traces (:class:`assocmem.trace.Trace`); every read they show
was computed by the model through :func:`assocmem.primitive.mem`.

- :func:`write_figures` — ``assocmem run FILE --png DIR``
- :func:`write_html` — ``assocmem run FILE --html report.html``
- :class:`Drawings` — one run's figures, drawn once for both
- :mod:`assocmem.views.server` — ``assocmem serve [FILE]``
"""

from assocmem.views.figures import (
    Drawings,
    graph_figure,
    logit_lens_figure,
    weights_figure,
    write_figures,
)
from assocmem.views.report import render_html, write_html

__all__ = [
    "Drawings",
    "graph_figure",
    "logit_lens_figure",
    "render_html",
    "weights_figure",
    "write_figures",
    "write_html",
]
