"""The style sheet and the script shared by the HTML report and the explorer.

Both pages show a case the same way (see :func:`assocmem.views.report.case_html`);
the script only makes the token strip interactive: hovering or focusing a token
shows its weight rows, drawn from the JSON the section carries. Everything is
inlined into the pages: they load nothing from anywhere.
"""

from __future__ import annotations

import json

from matplotlib import colormaps
from matplotlib.colors import to_hex

from assocmem.views.figures import CMAP, MASKED

__all__ = ["CSS", "VIEWER_JS"]

# the heat maps' colour map, sampled, so that the hover tables colour like the figures
_STOPS = json.dumps([to_hex(colormaps[CMAP](i / 16)) for i in range(17)])

CSS = """
:root { --fg: #1b1b1b; --muted: #5c5c5c; --line: #d0d0d0; --pass: #0b6e2f; --fail: #b00020;
        --masked: __MASKED__; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--fg); margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 1400px;
       line-height: 1.4; }
h1 { font-size: 1.4rem; margin: .2rem 0 .6rem; }
h2 { font-size: 1.15rem; margin: 0 0 .4rem; }
h3 { font-size: 1rem; margin: 1rem 0 .4rem; }
h4 { font-size: .95rem; margin: .2rem 0 .4rem; }
code, pre, textarea, .mono { font-family: "DejaVu Sans Mono", ui-monospace, monospace; }
.muted { color: var(--muted); }
.case { border-top: 2px solid var(--line); padding: 1rem 0; }
.verdict { display: inline-block; padding: .05rem .5rem; border-radius: .3rem;
           font-weight: bold; color: #fff; font-size: .9rem; vertical-align: middle; }
.verdict.pass { background: var(--pass); }
.verdict.fail { background: var(--fail); }
.verdict.none { background: var(--muted); }
.strip { display: flex; flex-wrap: wrap; gap: .35rem; margin: .6rem 0; }
.tok { border: 1px solid #888; border-radius: .3rem; padding: .2rem .55rem; cursor: default;
       background: #f6f6f6; font-size: 1rem; }
.tok.probe { border-style: dashed; font-weight: bold; }
.tok.active, .tok:focus { background: #fde725; border-color: #000; outline: none; }
.reads { border: 1px solid var(--line); border-radius: .3rem; padding: .5rem .7rem;
         background: #fbfbfb; overflow-x: auto; min-height: 3rem; }
.reads .hint { color: var(--muted); margin: 0; }
table { border-collapse: collapse; }
table.wrow { margin: .2rem 1.2rem .5rem 0; display: inline-table; vertical-align: top;
             font-size: .8rem; }
table.wrow caption { text-align: left; font-weight: bold; padding-bottom: .15rem; }
table.wrow th, table.wrow td { border: 1px solid #fff; padding: .1rem .35rem; text-align: right;
                               white-space: nowrap; }
table.wrow thead th { font-weight: normal; color: var(--muted); text-align: center; }
table.wrow td.masked { background: var(--masked); color: #555;
  background-image: repeating-linear-gradient(45deg, transparent 0 3px, #9a9a9a 3px 4px); }
table.logits { font-size: .9rem; margin: .3rem 0; }
table.logits th, table.logits td { padding: .15rem .6rem; border-bottom: 1px solid #eee;
                                   text-align: left; }
table.logits td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.logits tr.top td { font-weight: bold; }
table.logits .bar { display: inline-block; height: .7rem; background: #31688e; }
.row { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
figure { margin: .6rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figure.graph img { max-width: min(100%, 760px); }
figcaption { color: var(--muted); font-size: .85rem; }
pre.graph { background: #f6f6f6; padding: .5rem .8rem; border-radius: .3rem; overflow-x: auto; }
.legend-note { font-size: .85rem; color: var(--muted); }
""".replace("__MASKED__", MASKED)

VIEWER_JS = """
"use strict";
const AM_VIRIDIS = __STOPS__;
function amColour(v) {
  const k = Math.max(0, Math.min(AM_VIRIDIS.length - 1, Math.round(v * (AM_VIRIDIS.length - 1))));
  return AM_VIRIDIS[k];
}
function amData(section) {
  if (!section._amData) {
    section._amData = JSON.parse(section.querySelector("script.am-data").textContent);
  }
  return section._amData;
}
function amCell(row, tag, text) {
  const c = document.createElement(tag);
  c.textContent = text;
  row.append(c);
  return c;
}
// Show what the token reads: one table per bank, one row per layer (built with
// textContent only: tokens are user text).
function amShowReads(tok) {
  const section = tok.closest(".case");
  if (!section) return;
  const d = amData(section);
  const pos = Number(tok.dataset.pos);
  section.querySelectorAll(".tok.active").forEach((t) => t.classList.remove("active"));
  tok.classList.add("active");
  const out = section.querySelector(".reads");
  out.replaceChildren();
  const h = document.createElement("h4");
  h.textContent = d.tokens[pos] + " (position " + (pos + 1) + ") reads:";
  out.append(h);
  for (const bank of d.banks) {
    const t = document.createElement("table");
    t.className = "wrow";
    t.dataset.bank = bank;
    t.createCaption().textContent = bank + " · " + d.what[bank];
    const head = t.createTHead().insertRow();
    amCell(head, "th", "layer");
    for (const c of d.columns[bank]) amCell(head, "th", c);
    const body = t.createTBody();
    const ok = new Set(d.readable[bank][pos]);
    for (const layer of d.layers) {
      const row = body.insertRow();
      amCell(row, "th", "L" + layer);
      d.weights[layer][bank][pos].forEach((v, j) => {
        if (ok.has(j)) {
          const td = amCell(row, "td", v.toFixed(2));
          td.style.background = amColour(v);
          td.style.color = v > 0.55 ? "#000" : "#fff";
        } else {
          const td = amCell(row, "td", "·");
          td.className = "masked";
          td.title = "not readable (causal mask)";
        }
      });
    }
    out.append(t);
  }
}
function amFromEvent(e) {
  const t = e.target && e.target.closest ? e.target.closest(".tok") : null;
  if (t) amShowReads(t);
}
document.addEventListener("mouseover", amFromEvent);
document.addEventListener("focusin", amFromEvent);
// Start with the probe's reads shown: the row the decision is made from.
function amInit(root) {
  root.querySelectorAll(".case").forEach((s) => {
    const toks = s.querySelectorAll(".tok");
    if (toks.length) amShowReads(toks[toks.length - 1]);
  });
}
document.addEventListener("DOMContentLoaded", () => amInit(document));
""".replace("__STOPS__", _STOPS)
