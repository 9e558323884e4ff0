"""A self-contained HTML report of an experiment run.

One file, nothing loaded from anywhere (styles, script and figures are inline; a
Content-Security-Policy forbids any fetch), so it opens straight from disk and
can be mailed. Per case: the sentence as a token strip (hover a token: its weight
rows), the logit table with PASS/FAIL, the heat maps, the logit lens; once: the
graph. Every piece of user text goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import fields
from html import escape
from pathlib import Path
from typing import Any

from assocmem.config import BANKS, ModelConfig
from assocmem.errors import InputError, write_atomic
from assocmem.experiment import CaseResult, Experiment
from assocmem.trace import Trace
from assocmem.views.assets import CSS, VIEWER_JS
from assocmem.views.figures import (
    BANK_WHAT,
    CASE_FIGURES,
    Drawings,
    case_slugs,
)

__all__ = [
    "write_atomic",
    "page_head",
    "script_json",
    "svg_data_uri",
    "hover_data",
    "case_html",
    "case_figures",
    "render_html",
    "settings_text",
    "temp_text",
    "write_html",
]

# the report may load nothing: inline styles and script, data: images only
REPORT_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
)


def page_head(title: str, css: str = "") -> str:
    """The opening of a self-contained page, up to ``<body>``: the CSP, the styles (+ ``css``)."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{CSS}{css}</style>
</head>
<body>"""


def script_json(data: Any) -> str:
    """JSON safe inside ``<script>``: no ``</script>``, no ``<!--``, no ``&``-entities."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def svg_data_uri(svg: bytes) -> str:
    """An SVG as a ``data:`` URI (an ``<img>`` keeps each figure's ids to itself)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def hover_data(trace: Trace, digits: int = 4) -> dict[str, Any]:
    """What the token strip's hover needs: tokens, columns, weights and readable columns."""
    return {
        "tokens": trace.tokens,
        "layers": trace.layers,
        "banks": trace.banks,
        "what": {b: BANK_WHAT.get(b, b) for b in trace.banks},
        "columns": {b: trace.columns(b) for b in trace.banks},
        "readable": {
            b: [trace.readable(b, i) for i in range(len(trace.tokens))] for b in trace.banks
        },
        "weights": trace.attention(digits),
    }


def case_figures(r: CaseResult, drawings: Drawings | None = None, i: int = 0) -> dict[str, str]:
    """The case's figures as SVG ``data:`` URIs: ``weights`` and ``logit_lens``; ``r`` is
    ``drawings.results[i]`` when the run's drawings are given."""
    d = drawings or Drawings(None, [r])
    return {kind: svg_data_uri(d.case(i if drawings else 0, kind, "svg")) for kind in CASE_FIGURES}


def _verdict(r: CaseResult) -> str:
    if r.passed is None:
        return '<span class="verdict none" data-verdict="none">no expectation</span>'
    cls, word = ("pass", "PASS") if r.passed else ("fail", "FAIL")
    return f'<span class="verdict {cls}" data-verdict="{cls}">{word}</span>'


def _logit_table(r: CaseResult) -> str:
    lo, hi = min(r.logits.values()), max(r.logits.values())
    rows = []
    for i, tok in enumerate(r.top):
        v = r.logits[tok]
        width = 120 * (v - lo) / (hi - lo) if hi > lo else 0.0
        cls = ' class="top"' if i == 0 else ""
        mark = " ★" if i == 0 else ""
        expect = " (expected)" if tok == r.case.expect else ""
        rows.append(
            f'<tr{cls} data-token="{escape(tok)}"><td class=num>{i + 1}</td>'
            f"<td>{escape(tok)}{mark}{expect}</td><td class=num>{v:.3f}</td>"
            f'<td><span class="bar" style="width:{width:.1f}px"></span></td></tr>'
        )
    return (
        '<table class="logits"><caption class="muted">logits of the probe, best first'
        "</caption><thead><tr><th>#</th><th>token</th><th>logit</th><th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def case_html(r: CaseResult, figures: dict[str, str] | None = None, slug: str = "case") -> str:
    """One case as an HTML ``<section>``: verdict, token strip with hover data, logit
    table, and the ``figures`` given (data URIs by name: ``weights``, ``logit_lens``)."""
    figures = figures or {}
    tokens = r.trace.tokens
    strip = "".join(
        f'<span class="tok{" probe" if i == len(tokens) - 1 else ""}" tabindex="0" '
        f'data-pos="{i}">{escape(t)}</span>'
        for i, t in enumerate(tokens)
    )
    expect = f"expected <b>{escape(r.case.expect)}</b> · " if r.case.expect is not None else ""
    summary = f"{expect}top <b class=top-token>{escape(r.top[0])}</b> · {escape(r.lead)}"
    parts = [
        f'<section class="case" id="case-{escape(slug)}" data-top="{escape(r.top[0])}">',
        f"<h2>case “{escape(r.case.name)}” {_verdict(r)}</h2>",
        f'<p class="summary">{summary}</p>',
        f'<div class="strip" aria-label="the sentence and the probe">{strip}</div>',
        '<div class="reads" aria-live="polite"><p class="hint">hover a token to see what it '
        "reads at each layer and bank</p></div>",
        f'<script type="application/json" class="am-data">{script_json(hover_data(r.trace))}'
        "</script>",
        '<div class="row">',
        _logit_table(r),
    ]
    if "logit_lens" in figures:
        parts.append(
            f'<figure class="lens"><img alt="logit lens of the probe in case {escape(r.case.name)}" '
            f'src="{escape(figures["logit_lens"])}"><figcaption>the probe’s logits after every '
            "read (logit lens); the last point is the readout</figcaption></figure>"
        )
    parts.append("</div>")
    if "weights" in figures:
        parts.append(
            f'<figure class="weights"><img alt="read weights of every layer and bank in case '
            f'{escape(r.case.name)}" src="{escape(figures["weights"])}"><figcaption>read '
            "weights: rows are the reading positions, columns what they read; hatched cells "
            "cannot be read (causal mask)</figcaption></figure>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def temp_text(t: float | tuple[float, ...]) -> str:
    """A temperature as typed: ``0.2``, or one per layer ``0.05, 0.1``."""
    return ", ".join(f"{v:g}" for v in t) if isinstance(t, tuple) else f"{t:g}"


def settings_text(exp: Experiment) -> str:
    """The model settings in one line: depth, embedding, temperatures, then every other
    setting that differs from :class:`~assocmem.model.ModelConfig`'s default."""
    c, default = exp.config, ModelConfig()
    temps = "; ".join(f"{b} {temp_text(getattr(c, f'temp_{b}'))}" for b in BANKS)
    parts = [
        f"{c.layers} layers, readout after layer {c.readout_at}",
        f"{exp.embedding} embedding"
        + ("" if exp.embedding == "onehot" else f" (d={exp.dim}, seed {exp.seed})"),
        f"temperatures {temps}",
    ]
    for f in fields(c):
        value = getattr(c, f.name)
        if f.name in ("layers", "readout_layer") or f.name.startswith("temp_"):
            continue
        if value != getattr(default, f.name):
            parts.append(f"{f.name} {'on' if value is True else value}")
    return ", ".join(parts)


def render_html(
    exp: Experiment,
    results: Sequence[CaseResult],
    drawings: Drawings | None = None,
    preface: str = "",
) -> str:
    """The whole report as one HTML string (figures from the run's ``drawings`` if given);
    ``preface`` is HTML put before the graph (the caller escapes its own text)."""
    d = drawings or Drawings(exp, results)
    graph_src = "\n".join(f"{s.line:>4}  {s}" for s in exp.graph.slots)
    graph_img = svg_data_uri(d.graph("svg"))
    passed = [r.passed for r in results if r.passed is not None]
    tally = f"{sum(passed)} of {len(passed)} cases pass" if passed else "no case has an expectation"
    sections = [
        case_html(r, case_figures(r, d, i), slug)
        for i, (slug, r) in enumerate(zip(case_slugs(results), results, strict=True))
    ]
    title = f"assocmem · {exp.file}"
    return f"""{page_head(title)}
<h1>{escape(title)}</h1>
<p class="muted">{escape(settings_text(exp))} · <b>{escape(tally)}</b></p>
{preface}
<h3>relation graph</h3>
<div class="row">
<pre class="graph">{escape(graph_src)}</pre>
<figure class="graph"><img alt="the relation graph" src="{graph_img}"></figure>
</div>
{"".join(sections)}
<p class="legend-note">Colours: viridis (colour-blind safe), weight 0 dark blue to 1 yellow;
hatched grey: not readable. Generated by <code>assocmem run --html</code>.</p>
<script>{VIEWER_JS}</script>
</body>
</html>
"""


def write_html(
    exp: Experiment,
    results: Sequence[CaseResult],
    path: Path,
    drawings: Drawings | None = None,
    preface: str = "",
) -> Path:
    """Write the report of ``results`` to ``path`` (atomically); return the path."""
    if Path(path).is_dir():  # say so before drawing every figure
        raise InputError(f"{path}: is a folder, expected a file name to write")
    return write_atomic(Path(path), render_html(exp, results, drawings, preface))
