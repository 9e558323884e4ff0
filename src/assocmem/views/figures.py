"""Figures of a run: read-weight heat maps, the probe's logit lens, the relation graph.

Every figure is a :class:`matplotlib.figure.Figure` drawn on the Agg canvas directly
(no pyplot: no global state, so the explorer may draw from worker threads). The
figures only display a :class:`~assocmem.trace.Trace`; they compute no reads.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Arc, FancyArrowPatch, Patch

from assocmem.errors import InputError, write_atomic
from assocmem.experiment import CaseResult, Experiment
from assocmem.graph import Graph
from assocmem.trace import Trace

__all__ = [
    "CMAP",
    "MASKED",
    "weights_figure",
    "logit_lens_figure",
    "graph_figure",
    "figure_bytes",
    "save_figure",
    "case_slugs",
    "case_title",
    "CASE_FIGURES",
    "case_figure",
    "Drawings",
    "write_figures",
]

CMAP = "viridis"  # perceptually uniform and colour-blind safe
MASKED = "#d9d9d9"  # unreadable cells: light grey and hatched, never a colour of the map
HATCH = "#8c8c8c"
# Okabe-Ito: distinguishable under the common colour-vision deficiencies
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
BANK_WHAT = {
    "assoc": "slots",
    "context": "earlier positions",
    "mlp": "slots, swapped",
    "joint": "slots + positions",
}
_ANNOTATE_CELLS = 400  # write the values into the cells of panels up to this size
_MAX_TICKS = 80  # label rows and columns up to this many
MAX_INCHES = 40.0  # the largest side of a figure
_MAX_ARROWS = 400  # the most arrows the graph drawing draws
_OTHER_LINES = 40  # grey lines of the logit lens beyond the top tokens


def _canvas(fig: Figure) -> Figure:
    FigureCanvasAgg(fig)  # the Agg backend, for this figure only
    return fig


def _mask(trace: Trace, bank: str, n: int, m: int) -> np.ndarray:
    """``True`` where position i may not read column j (the causal mask of the context)."""
    mask = np.ones((n, m), dtype=bool)
    for i in range(n):
        mask[i, trace.readable(bank, i)] = False
    return mask


def _short(label: str, most: int = 40) -> str:
    """``label`` cut to ``most`` characters: a slot of a thousand tokens is one tick label,
    and a label wider than the figure collapses its axes."""
    return label if len(label) <= most else label[: most - 1] + "…"


def weights_figure(trace: Trace, title: str = "") -> Figure:
    """Heat maps of the read weights of every layer (rows of panels) and bank (columns).

    In a panel, row i is the reading position (its token), column j what it reads (a
    slot or an earlier position). Cells it may not read are hatched grey, distinct
    from a weight of 0.
    """
    layers, banks = trace.layers, trace.banks
    n = len(trace.tokens)
    widths = [len(trace.columns(b)) for b in banks]
    fig = _canvas(
        Figure(
            figsize=(  # capped: a 200-slot graph must not ask for a 100-inch figure
                min(MAX_INCHES, max(6.0, 0.5 * sum(widths) + 1.2 * len(banks) + 2.5)),
                min(MAX_INCHES, max(3.0, (0.36 * n + 0.9) * len(layers) + 3.0)),
            ),
            layout="constrained",
        )
    )
    grid = fig.add_gridspec(len(layers), len(banks), width_ratios=widths)
    cmap = colormaps[CMAP].with_extremes(bad=(0, 0, 0, 0))
    norm = Normalize(0.0, 1.0)
    image = None
    small = n * max(widths) <= _ANNOTATE_CELLS
    for r, layer in enumerate(layers):
        for c, bank in enumerate(banks):
            ax = fig.add_subplot(grid[r, c])
            w = trace.weights(layer, bank).double().cpu().numpy()  # (n, columns)
            cols = trace.columns(bank)
            masked = _mask(trace, bank, *w.shape)
            # masked cells are transparent: the hatched grey background shows through
            ax.patch.set_facecolor(MASKED)
            ax.patch.set_edgecolor(HATCH)
            ax.patch.set_hatch("///")
            ax.patch.set_linewidth(0)
            image = ax.imshow(
                np.ma.masked_array(w, masked),
                cmap=cmap,
                norm=norm,
                aspect="auto",
                interpolation="nearest",
            )
            if small:
                # weights that round to 0.00 stay blank: the dark cell already says so
                for i, j in zip(*np.nonzero(~masked & (w >= 0.005)), strict=True):
                    v = w[i, j]
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if v > 0.55 else "white",
                        in_layout=False,  # inside the cell: no need to measure it for layout
                    )
            ax.set_title(f"layer {layer} · {bank} ({BANK_WHAT.get(bank, '')})", fontsize=9)
            if n <= _MAX_TICKS:
                ax.set_yticks(
                    range(n), [_short(t) for t in trace.tokens] if c == 0 else [""] * n, fontsize=8
                )
            if len(cols) > _MAX_TICKS:  # too dense to label: the hover tables name them
                ax.set_xticks([])
            elif r == len(layers) - 1:
                ax.set_xticks(range(len(cols)))
                ax.set_xticklabels(
                    [_short(c) for c in cols],
                    rotation=55,
                    ha="right",
                    rotation_mode="anchor",
                    fontsize=8,
                )
            else:
                ax.set_xticks(range(len(cols)), [""] * len(cols))
            ax.tick_params(length=2)
            if c == 0:
                ax.set_ylabel("reader", fontsize=8)
    assert image is not None
    cb = fig.colorbar(image, ax=fig.axes, shrink=0.6, aspect=30, pad=0.02)
    cb.set_label("read weight (softmax)", fontsize=9)
    fig.legend(
        handles=[
            Patch(
                facecolor=MASKED, edgecolor=HATCH, hatch="///", label="not readable (causal mask)"
            )
        ],
        loc="outside lower right",
        fontsize=8,
        frameon=False,
    )
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _point_label(point: str) -> str:
    """``layers.2.context`` → ``L2 context``."""
    if point.startswith("layers."):
        _, layer, bank = point.split(".", 2)
        return f"L{layer} {bank}"
    return point


def logit_lens_figure(trace: Trace, position: int = -1, top: int = 4, title: str = "") -> Figure:
    """The logits of the token at ``position`` after every read (the logit lens).

    The ``top`` tokens of the readout are drawn in colour, with a marker each and
    their name at the line's end; the other tokens are thin grey lines. The last
    point is the readout itself (the logits the case is judged on).
    """
    lens = trace.logit_lens(position)
    points = [_point_label(p) for p, _ in lens]
    values = np.stack([lg.double().cpu().numpy() for _, lg in lens])  # (points, V)
    final = trace["logits"]
    final = final.reshape(-1, *final.shape[-2:])[0, position].double().cpu().numpy()  # (V,)
    values = np.vstack([values, final])  # (points + 1, V)
    points.append(f"readout (L{trace.config.readout_at})")
    order = np.argsort(-final, kind="stable")
    best = [int(k) for k in order[:top]]
    x = np.arange(len(points))
    fig = _canvas(Figure(figsize=(max(7.0, 0.62 * len(points) + 2.5), 4.6), layout="constrained"))
    ax = fig.add_subplot()
    others = order[top : top + _OTHER_LINES]  # a big vocabulary would draw thousands
    for k in others:
        ax.plot(x, values[:, k], color="#b0b0b0", linewidth=0.9, zorder=1)
    for rank, k in enumerate(best):
        colour = OKABE_ITO[rank % len(OKABE_ITO)]
        ax.plot(
            x,
            values[:, k],
            color=colour,
            marker=MARKERS[rank % len(MARKERS)],
            markersize=5,
            linewidth=2.0 if rank == 0 else 1.5,
            label=f"{trace.vocab[k]} ({final[k]:.2f})",
            zorder=3,
        )
    if len(others):
        more = len(order) - top - len(others)
        label = "other tokens" + (f" (next {len(others)}; {more} not drawn)" if more else "")
        ax.plot([], [], color="#b0b0b0", linewidth=0.9, label=label)
    # names at the lines' ends, pushed apart so that close logits stay legible, and
    # kept inside the axes (up from the lowest, then down from the top)
    lo, hi = ax.get_ylim()
    gap = 0.06 * (hi - lo)
    ends = sorted((float(values[-1, k]), rank, k) for rank, k in enumerate(best))
    ys = [y for y, _, _ in ends]
    for i in range(1, len(ys)):
        ys[i] = max(ys[i], ys[i - 1] + gap)
    ys[-1] = min(ys[-1], hi - gap / 2)
    for i in range(len(ys) - 2, -1, -1):
        ys[i] = min(ys[i], ys[i + 1] - gap)
    for (y, rank, k), y_text in zip(ends, ys, strict=True):
        ax.annotate(
            trace.vocab[k],
            (x[-1], y),
            xytext=(x[-1] + 0.3, y_text),
            va="center",
            fontsize=8,
            color=OKABE_ITO[rank % len(OKABE_ITO)],
            annotation_clip=False,
        )
    ax.set_ylim(lo, hi)
    # layer boundaries help read "which read moved it"
    per_layer = len(trace.banks)
    for b in range(1 + per_layer, len(points) - 1, per_layer):
        ax.axvline(b - 0.5, color="#dddddd", linewidth=0.8, zorder=0)
    ax.axvline(len(points) - 1.5, color="#555555", linestyle="--", linewidth=0.8, zorder=0)
    ax.set_xticks(x, points, rotation=40, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_xlim(-0.4, len(points) + 0.6)  # room for the names at the right
    ax.set_ylabel("logit")
    ax.set_xlabel("after read")
    ax.grid(axis="y", color="#eeeeee")
    ax.legend(loc="upper left", bbox_to_anchor=(1.06, 1.0), fontsize=8, frameon=False)
    token = trace.tokens[position]
    ax.set_title(title or f"logit lens of {token}", fontsize=10)
    return fig


def _terms_label(key_weight: float, value_weight: float) -> str:
    return f"{value_weight:g}" if key_weight == 1.0 else f"{key_weight:g}→{value_weight:g}"


def graph_figure(graph: Graph, title: str = "", max_tokens: int = 60) -> Figure:
    """The relation graph: one node per token on a circle, one arrow per (key token,
    value token) pair of every slot, coloured by slot and labelled with the weight."""
    tokens = list(graph.tokens)
    arrows = sum(len(sl.key) * len(sl.value) for sl in graph.slots)
    if len(tokens) > max_tokens or arrows > _MAX_ARROWS:
        fig = _canvas(Figure(figsize=(6, 1.2)))
        fig.text(
            0.5,
            0.5,
            f"{len(tokens)} tokens, {arrows} arrows: too many to draw "
            f"(at most {max_tokens} tokens and {_MAX_ARROWS} arrows)",
            ha="center",
            va="center",
        )
        return fig
    k = len(tokens)
    # start at the top, clockwise, like a clock face
    angle = {t: math.pi / 2 - 2 * math.pi * i / k for i, t in enumerate(tokens)}
    pos = {t: (math.cos(a), math.sin(a)) for t, a in angle.items()}
    size = max(5.5, 0.35 * k + 3.5)
    fig = _canvas(Figure(figsize=(size + 3.2, size), layout="constrained"))
    ax = fig.add_subplot()
    ax.set_aspect("equal")
    ax.axis("off")
    boxes = {}
    for t in tokens:
        boxes[t] = ax.text(
            *pos[t],
            t,
            ha="center",
            va="center",
            fontsize=10,
            zorder=3,
            bbox={"boxstyle": "round,pad=0.35", "facecolor": "white", "edgecolor": "#333333"},
        )
    handles = []
    for s, slot in enumerate(graph.slots):
        colour = OKABE_ITO[s % len(OKABE_ITO)]
        style = ["-", "--", ":", "-."][(s // len(OKABE_ITO)) % 4]
        for kt in slot.key:
            for vt in slot.value:
                label = _terms_label(kt.weight, vt.weight)
                if kt.token == vt.token:  # a slot that maps a token onto itself: a loop
                    x, y = pos[kt.token]
                    cx, cy = 1.22 * x, 1.22 * y
                    ax.add_patch(Arc((cx, cy), 0.22, 0.22, color=colour, linestyle=style, zorder=4))
                    ax.text(1.4 * x, 1.4 * y, label, fontsize=7, ha="center", color=colour)
                    continue
                (x1, y1), (x2, y2) = pos[kt.token], pos[vt.token]
                rad = 0.18
                ax.add_patch(
                    FancyArrowPatch(
                        (x1, y1),
                        (x2, y2),
                        connectionstyle=f"arc3,rad={rad}",
                        arrowstyle="-|>",
                        mutation_scale=14,
                        color=colour,
                        linestyle=style,
                        linewidth=1.5,
                        # clip at the token boxes (drawn first: lower zorder)
                        patchA=boxes[kt.token].get_bbox_patch(),
                        patchB=boxes[vt.token].get_bbox_patch(),
                        zorder=4,
                    )
                )
                # the middle of the arc3 Bézier curve: the chord's midpoint, pushed sideways
                mx = (x1 + x2) / 2 + rad * (y2 - y1) / 2
                my = (y1 + y2) / 2 - rad * (x2 - x1) / 2
                ax.text(
                    mx,
                    my,
                    label,
                    fontsize=7,
                    ha="center",
                    va="center",
                    color=colour,
                    zorder=5,
                    bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none"},
                )
        handles.append(Patch(facecolor=colour, edgecolor=colour, linestyle=style, label=slot.label))
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.35, 1.35)
    ax.legend(
        handles=handles,
        title="line: slot",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=8,
        title_fontsize=8,
        frameon=False,
    )
    ax.set_title(title or "relation graph (arrows: key → value, labels: weights)", fontsize=10)
    return fig


# ---------------------------------------------------------------- output


class MissingGlyphWarning(UserWarning):
    """A token has characters the figures' font cannot draw (they show as boxes)."""


_GLYPH = re.compile(r"Glyph \d+ \((.+?)\) missing from font")


def figure_bytes(fig: Figure, fmt: str = "svg", dpi: int = 150) -> bytes:
    """``fig`` rendered to ``png`` or ``svg`` bytes (labels kept inside: tight bounding box).

    The bytes depend only on the figure (no date, fixed SVG ids), so regenerated files
    that show the same thing are the same file.
    """
    buf = io.BytesIO()
    meta = {"Date": None} if fmt in ("svg", "pdf") else None
    with rc_context({"svg.hashsalt": "assocmem"}), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fig.savefig(
            buf,
            format=fmt,
            dpi=dpi,
            bbox_inches="tight",
            pad_inches=0.15,
            facecolor="white",
            metadata=meta,
        )
    # matplotlib warns once per missing glyph per text drawn: say it once per figure
    missing = []
    for w in seen:
        m = _GLYPH.search(str(w.message))
        if m:
            missing.append(m[1].encode("ascii").decode("unicode_escape"))  # \N{NAME} -> char
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if missing:
        warnings.warn(
            f"the figures' font (DejaVu Sans) cannot draw {' '.join(dict.fromkeys(missing))}: "
            "those characters are boxes in the figures (the HTML report's text shows them)",
            MissingGlyphWarning,
            stacklevel=2,
        )
    return buf.getvalue()


def save_figure(fig: Figure, stem: Path, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` (atomically); return the paths."""
    return [
        write_atomic(stem.with_name(f"{stem.name}.{fmt}"), figure_bytes(fig, fmt))
        for fmt in formats
    ]


def case_slugs(results: Sequence[CaseResult]) -> list[str]:
    """File-name-safe, unique names of the cases (``tasty``, ``hungry``, …)."""
    slugs: list[str] = []
    for i, r in enumerate(results):
        slug = re.sub(r"[^\w-]+", "_", r.case.name).strip("_") or f"case{i + 1}"
        while slug in slugs or slug == "graph":
            slug = f"{slug}_{i + 1}"
        slugs.append(slug)
    return slugs


def case_title(r: CaseResult) -> str:
    """``case 'tasty': МАША … *ОНА``."""
    return f"case {r.case.name!r}: {' '.join(r.trace.tokens)}"


CASE_FIGURES = ("weights", "logit_lens")


def case_figure(r: CaseResult, kind: str) -> Figure:
    """One of the :data:`CASE_FIGURES` of a case: ``weights`` or ``logit_lens``."""
    if kind == "weights":
        return weights_figure(r.trace, case_title(r))
    if kind == "logit_lens":
        return logit_lens_figure(r.trace, title=f"logit lens of the probe · {case_title(r)}")
    raise ValueError(f"no case figure {kind!r} (known: {', '.join(CASE_FIGURES)})")


class Drawings:
    """The figures of one run, each drawn once and rendered once per format: ``assocmem run
    --png --html`` writes them as files and inlines them in the report from one instance.

    ``graph(fmt)`` is the relation graph; ``case(i, kind, fmt)`` is figure ``kind`` (one of
    :data:`CASE_FIGURES`) of ``results[i]``; both return the rendered bytes."""

    def __init__(self, exp: Experiment | None, results: Sequence[CaseResult]):
        self.exp, self.results = exp, list(results)
        self._figures: dict[tuple, Figure] = {}
        self._bytes: dict[tuple, bytes] = {}

    def _render(self, key: tuple, draw, fmt: str) -> bytes:
        if (key, fmt) not in self._bytes:
            if key not in self._figures:
                self._figures[key] = draw()
            self._bytes[key, fmt] = figure_bytes(self._figures[key], fmt)
        return self._bytes[key, fmt]

    def graph(self, fmt: str = "svg") -> bytes:
        if self.exp is None:
            raise ValueError("these drawings have no experiment, so no graph")
        return self._render(("graph",), lambda: graph_figure(self.exp.graph), fmt)

    def case(self, i: int, kind: str, fmt: str = "svg") -> bytes:
        return self._render(("case", i, kind), lambda: case_figure(self.results[i], kind), fmt)


def write_figures(
    exp: Experiment,
    results: Sequence[CaseResult],
    folder: Path,
    drawings: Drawings | None = None,
) -> list[Path]:
    """Write every figure of ``results`` into ``folder`` as PNG and SVG; return the paths.

    Per case ``<case>_weights`` (heat maps of every read) and ``<case>_logit_lens``
    (the probe, read by read); once ``graph`` (the relation graph). Pass the run's
    :class:`Drawings` to share them with the HTML report.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file, expected a folder for the figures")
    d = drawings or Drawings(exp, results)
    paths = [write_atomic(folder / f"graph.{fmt}", d.graph(fmt)) for fmt in ("png", "svg")]
    for i, slug in enumerate(case_slugs(results)):
        for kind in CASE_FIGURES:
            for fmt in ("png", "svg"):
                paths.append(write_atomic(folder / f"{slug}_{kind}.{fmt}", d.case(i, kind, fmt)))
    return paths
