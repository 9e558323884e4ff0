"""``assocmem winograd``: the pronoun test on a Winograd benchmark, with its baselines."""

from __future__ import annotations

import json
from html import escape as html_escape
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from assocmem.cli.app import app, console, err_console
from assocmem.errors import InputError, check_writable, write_atomic


def _summary(report) -> Table:
    from assocmem.winograd import binomial_p, wilson

    n = report.n
    t = Table(title=f"{n} items", title_justify="left")
    for col in ("method", "correct", "accuracy", "95 % CI (Wilson)", "p vs 50 %"):
        t.add_column(col, justify="left" if col == "method" else "right")

    def row(name: str, k: int | None, style: str = "") -> None:
        if k is None:
            t.add_row(name, "—", "missing", "", "", style="dim")
            return
        lo, hi = wilson(k, n)
        t.add_row(
            name, f"{k}/{n}", f"{k / n:.1%}", f"{lo:.1%} – {hi:.1%}", f"{binomial_p(k, n):.3f}",
            style=style,
        )  # fmt: skip

    row("memory (three-bank model)", report.correct, "bold")
    for name, choices in report.baselines.items():
        k = None if choices is None else report.correct_of(choices)
        row(f"baseline: {name}", k)
    return t


def _decision_html(r) -> str:
    """The decision of one item, as the HTML report's preface."""
    it = r.item
    rows = "".join(
        f"<tr{' class=top' if k == r.chosen else ''}><td>{html_escape(c.text)}</td>"
        f"<td>{html_escape(r.heads[k])}</td><td class=num>{r.result.logits[r.heads[k]]:.4f}</td>"
        f"<td>{'chosen' if k == r.chosen else ''}</td><td>{'correct' if c.correct else ''}</td></tr>"
        for k, c in enumerate(it.candidates)
    )
    verdict = ("pass", "RIGHT") if r.correct else ("fail", "WRONG")
    return (
        f"<h2>decision <span class='verdict {verdict[0]}'>{verdict[1]}</span></h2>"
        f"<p>{html_escape(it.sentence)}</p><p class=muted>pronoun "
        f"<b>{html_escape(it.pronoun.text)}</b> → probe <b>*{html_escape(r.result.case.probe)}</b>; "
        f"each candidate is read by its head lemma; margin {r.margin:.4f}</p>"
        "<table class=logits><thead><tr><th>candidate</th><th>head</th><th>probe logit</th>"
        f"<th></th><th></th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _chosen_item(report, line: int | None):
    """The result of the item on ``line`` of the data file (default: the first item)."""
    by_line = {r.item.line: r for r in report.results}  # --item was checked before the run
    return by_line[line] if line is not None else report.results[0]


@app.command()
def winograd(
    data: Annotated[Path, typer.Argument(help="Items, one JSON object per line (.jsonl).")],
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Settings (.toml); default: the project's own."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON to this file.")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write one item's report (HTML) to this file.")
    ] = None,
    graph: Annotated[
        Path | None,
        typer.Option("--graph", help="Write one item's memory as a .graph file (assocmem check)."),
    ] = None,
    item: Annotated[
        int | None,
        typer.Option(
            "--item", help="The line of DATA whose item --html shows (default: the first)."
        ),
    ] = None,
    show_items: Annotated[
        bool, typer.Option("--items", help="Also list every item's decision.")
    ] = False,
) -> None:
    """Choose each Winograd item's referent with the pronoun as the probe of a per-sentence
    memory; report the accuracy, its Wilson interval and p-value, and the baselines."""
    from tqdm import tqdm

    from assocmem.winograd import evaluate, load_config, load_items

    if html is not None and html.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--html writes an .html file; got {str(html)!r}")
    if graph is not None and graph.suffix != ".graph":
        raise InputError(f"--graph writes a .graph file; got {str(graph)!r}")
    for path, what in ((json_out, "--json"), (html, "--html"), (graph, "--graph")):
        if path is not None:
            check_writable(path, what)
    cfg = load_config(config)  # checked before any work
    items = load_items(data)
    lines = [it.line for it in items]
    if item is not None and item not in lines:
        raise InputError(
            f"--item {item}: no item on that line of {data} (items: lines {min(lines)}..{max(lines)})."
        )
    report = evaluate(
        items, cfg, progress=lambda xs, what: tqdm(xs, desc=what, leave=False, disable=None)
    )
    if show_items:
        t = Table(title="items", title_justify="left")
        for col in ("line", "", "chosen", "other", "margin"):
            t.add_column(col)
        for r in report.results:
            it = r.item
            t.add_row(
                str(it.line), "[green]✓[/]" if r.correct else "[red]✗[/]",
                escape(it.candidates[r.chosen].text), escape(it.candidates[1 - r.chosen].text),
                f"{r.margin:.4f}",
            )  # fmt: skip
        console.print(t)
    console.print(_summary(report))
    for name, why in report.missing.items():
        err_console.print(f"note: baseline {name} missing: {why}", markup=False, highlight=False)
    if json_out is not None:
        write_atomic(json_out, json.dumps(report.to_json(), ensure_ascii=False, indent=1) + "\n")
        console.print(f"wrote {json_out}", markup=False)
    if html is not None or graph is not None:
        r = _chosen_item(report, item)
    if html is not None:
        from assocmem import views
        from assocmem.winograd import item_experiment

        views.write_html(item_experiment(r, cfg), [r.result], html, preface=_decision_html(r))
        console.print(f"wrote {html}", markup=False)
    if graph is not None:
        from assocmem.memories import write_graph

        write_graph(r.graph, graph, header=f"the memory of {data}, line {r.item.line}")
        console.print(f"wrote {graph}", markup=False)
