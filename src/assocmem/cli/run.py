"""``assocmem run`` and ``assocmem check``: run an experiment file, validate a graph."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from assocmem.cli.app import app, console, err_console
from assocmem.compiler import check_memory, compile_graph
from assocmem.embedding import Vocabulary, make_embedding
from assocmem.errors import InputError
from assocmem.experiment import (
    MAX_DIM,
    CaseResult,
    Experiment,
    check_size,
    load_experiment,
    run_case,
)
from assocmem.graph import Graph, load_graph
from assocmem.interference import add_relations, interference_report
from assocmem.trace import Trace


def _logit_table(r: CaseResult) -> Table:
    t = Table(
        title=escape(f"case {r.case.name!r}: {' '.join(r.case.sentence)} *{r.case.probe}"),
        title_justify="left",
    )
    t.add_column("", width=1)
    t.add_column("token")
    t.add_column("logit", justify="right")
    t.add_column("")
    lo, hi = min(r.logits.values()), max(r.logits.values())
    for i, tok in enumerate(r.top):
        v = r.logits[tok]
        bar = "█" * round(20 * (v - lo) / (hi - lo)) if hi > lo else ""
        style = "bold green" if i == 0 else ""
        t.add_row("★" if i == 0 else "", escape(tok), f"{v:.3f}", bar, style=style)
    return t


def _attention_tables(trace: Trace) -> list[Table]:
    tables = []
    for layer in trace.layers:
        for bank in trace.banks:
            w = trace.weights(layer, bank)  # (n, columns)
            cols = trace.columns(bank)
            t = Table(
                title=f"layer {layer} · {bank} (row reads column)",
                title_justify="left",
            )
            t.add_column("reader")
            for c in cols:
                t.add_column(escape(c), justify="right", max_width=14)
            for i, tok in enumerate(trace.tokens):
                readable = set(trace.readable(bank, i))
                cells = [
                    f"{float(w[i, j]):.2f}" if j in readable else "·" for j in range(len(cols))
                ]
                t.add_row(escape(tok), *cells)
            tables.append(t)
    return tables


def run_experiment(exp: Experiment, seed: int | None = None) -> list[CaseResult]:
    """Build the model of ``exp`` and run every case."""
    model = exp.build(seed)
    return [run_case(model, c, where=f"{exp.file}:{c.line}") for c in exp.cases]


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Experiment file (.toml).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
    attention: Annotated[
        bool, typer.Option("--attention", help="Also show every layer's and bank's read weights.")
    ] = False,
    seed: Annotated[
        int | None, typer.Option(help="Override the embedding seed of the file.")
    ] = None,
    png: Annotated[
        Path | None, typer.Option(help="Write figures (PNG and SVG) into this folder.")
    ] = None,
    html: Annotated[
        Path | None, typer.Option(help="Write a self-contained HTML report to this file.")
    ] = None,
) -> None:
    """Run every case of an experiment file and show the probe's logits.

    Exit status: 0 when every case with `expect` passes, 1 when one fails, 2 on bad input.
    """
    exp = load_experiment(file)
    if not exp.cases:
        raise InputError(
            f"{file}: no [[case]] tables: nothing to run (add a case with a sentence and a probe)"
        )
    results = run_experiment(exp, seed)
    if exp.unslotted and not as_json:  # an open vocabulary: a typo would pass silently
        err_console.print(
            f"note: no slot for {', '.join(exp.unslotted)} (open vocabulary: they read nothing "
            "from the slots)",
            markup=False,
            highlight=False,
        )
    if as_json:
        doc = {"cases": [r.to_json() for r in results]}
        print(json.dumps(doc, ensure_ascii=False, indent=1, allow_nan=False))  # never bare NaN
    else:
        for r in results:
            console.print(_logit_table(r))
            if r.passed is not None:
                verdict = "[bold green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
                console.print(
                    f"{verdict}  "
                    + escape(f"expected {r.case.expect}, top {r.top[0]} ({r.lead})")
                    + "\n"
                )
            if attention:
                for t in _attention_tables(r.trace):
                    console.print(t)
    if png is not None or html is not None:
        from assocmem import views
        from assocmem.views.figures import MissingGlyphWarning

        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", MissingGlyphWarning)
            drawings = views.Drawings(exp, results)  # each figure drawn once for both
            if png is not None:
                for path in views.write_figures(exp, results, png, drawings):
                    if not as_json:
                        console.print(f"wrote {path}", markup=False)
            if html is not None:
                views.write_html(exp, results, html, drawings)
                if not as_json:
                    console.print(f"wrote {html}", markup=False)
        for message in dict.fromkeys(str(w.message) for w in seen):  # once, not per figure
            err_console.print(f"note: {message}", markup=False, highlight=False)
    if any(r.passed is False for r in results):
        raise typer.Exit(1)


@app.command()
def check(
    file: Annotated[
        Path, typer.Argument(help="A .graph file, or an experiment .toml (its settings are used).")
    ],
    temp: Annotated[
        float | None,
        typer.Option(help="Read temperature (default: the file's assoc temp, else 0.1)."),
    ] = None,
    embedding: Annotated[
        str | None, typer.Option(help="onehot or random (default: the file's, else onehot).")
    ] = None,
    dim: Annotated[int | None, typer.Option(help="Width of random embeddings.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of random embeddings.")] = None,
    threshold: Annotated[
        float, typer.Option(help="Report other slots read with at least this weight.")
    ] = 0.05,
    add: Annotated[
        Path | None,
        typer.Option(
            help="A .graph file of relations to add as new slots: report which old reads change."
        ),
    ] = None,
) -> None:
    """Validate a compiled memory: every key must read back its value's tokens.

    With --add, compare every old slot's read before and after adding the new slots.

    Exit status: 0 when every slot passes (with --add: no old read breaks), 1 when one
    fails (breaks), 2 on bad input.
    """
    graph, kind, d, s, t, cosine = _check_settings(file, temp, embedding, dim, seed)
    if add is not None:
        if add.suffix == ".toml":
            raise InputError(
                f"{add}: --add takes a .graph file of relations (one KEY = VALUE per line), "
                "not an experiment file"
            )
        _check_added(file, graph, load_graph(add), kind, d, s, t, threshold, cosine)
        return
    vocab = len(graph.tokens)
    check_size(str(file), vocab, vocab if kind == "onehot" else d, len(graph))
    emb = make_embedding(Vocabulary.from_tokens(graph.tokens), kind, d, s)  # type: ignore[arg-type]
    results = check_memory(compile_graph(graph, emb), emb, t, threshold=threshold, qk_norm=cosine)
    table = Table(
        title=escape(
            f"{file}: {len(results)} slots, {kind} embedding (d={emb.dim}), temp {t:g}"
            + (", cosine reads" if cosine else "")
        ),
        title_justify="left",
    )
    for col in ("", "line", "slot", "reads back", "self weight", "interference"):
        table.add_column(col)
    for r in results:
        inter = ", ".join(f"line {o.line} ({w:.2f})" for o, w in r.interference) or "—"
        table.add_row(
            _mark(r.ok),
            str(r.slot.line),
            escape(str(r.slot)),
            escape(" + ".join(r.got)),
            f"{r.self_weight:.2f}",
            inter,
        )
    console.print(table)
    failed = [r for r in results if not r.ok]
    if failed:
        console.print(
            f"[bold red]{len(failed)} slot(s) fail:[/] "
            + escape(
                "; ".join(
                    f"line {r.slot.line} reads {' + '.join(r.got)} instead of "
                    + (" + ".join(r.expected) or "nothing (no value token has a weight > 0)")
                    for r in failed
                )
            )
        )
        raise typer.Exit(1)
    console.print("[bold green]all slots read back their values[/]")


def _mark(ok: bool) -> str:
    return "[green]✓[/]" if ok else "[red]✗[/]"


def _check_settings(
    file: Path, temp: float | None, embedding: str | None, dim: int | None, seed: int | None
) -> tuple[Graph, str, int, int, float, bool]:
    """The graph and read settings of ``check``: the file's (an experiment's, or the
    defaults for a bare graph), overridden by the options; checked before any work."""
    if file.suffix == ".toml":
        exp = load_experiment(file)
        graph, kind, d, s = exp.graph, exp.embedding, exp.dim, exp.seed
        t, cosine = exp.config.temp("assoc", 1), exp.config.qk_norm
    else:
        graph, kind, d, s, t, cosine = load_graph(file), "onehot", 64, 0, 0.1, False
    kind, d, s, t = (
        embedding or kind,
        d if dim is None else dim,
        s if seed is None else seed,
        t if temp is None else temp,
    )
    if not 0 < t < math.inf:
        raise InputError(f"--temp must be > 0 and finite, got {t}")
    if not 1 <= d <= MAX_DIM:
        raise InputError(f"--dim must be between 1 and {MAX_DIM:,}, got {d:,}")
    return graph, kind, d, s, t, cosine


def _check_added(
    file: Path,
    graph: Graph,
    added: Graph,
    kind: str,
    d: int,
    s: int,
    t: float,
    threshold: float,
    cosine: bool,
) -> None:
    """``check FILE --add ADDED``: the interference table; exit 1 when an old read breaks."""
    both = add_relations(graph, added)
    vocab = len(both.tokens)
    check_size(f"{file} + {added.file}", vocab, vocab if kind == "onehot" else d, len(both))
    rep = interference_report(
        graph,
        added,
        kind,
        d,
        s,
        t,
        threshold=threshold,
        qk_norm=cosine,  # type: ignore[arg-type]
    )
    table = Table(
        title=escape(
            f"{file} + {added.file}: {len(rep.old)} old slots, {len(rep.added)} added, "
            f"{kind} embedding (d={rep.dim}), temp {t:g}" + (", cosine reads" if cosine else "")
        ),
        title_justify="left",
    )
    for col in ("", "line", "slot", "before", "margin", "after", "margin", "Δ margin"):
        table.add_column(col, justify="right" if col.endswith("margin") else "left")
    for c in rep.old:
        table.add_row(
            "[bold red]flipped[/]" if c.flipped else "",
            str(c.before.slot.line),
            escape(str(c.before.slot)),
            _mark(c.before.ok) + " " + escape(" + ".join(c.before.got)),
            f"{c.before.margin:.3f}",
            _mark(c.after.ok) + " " + escape(" + ".join(c.after.got)),
            f"{c.after.margin:.3f}",
            f"{c.margin_change + 0.0:+.3f}" if abs(c.margin_change) >= 5e-4 else "0",
        )
    console.print(table)
    new_fail = [r for r in rep.added if not r.ok]
    console.print(
        f"added slots: {len(rep.added) - len(new_fail)} of {len(rep.added)} read back their values"
        + (
            escape(
                " (failing: " + ", ".join(f"{r.slot.file}:{r.slot.line}" for r in new_fail) + ")"
            )
            if new_fail
            else ""
        )
    )
    flipped = [c for c in rep.old if c.flipped]
    if rep.broken:
        console.print(
            f"[bold red]{len(rep.broken)} old read(s) broken by the added slots:[/] "
            + escape(
                "; ".join(
                    f"line {c.before.slot.line} now reads {' + '.join(c.after.got)} "
                    f"(margin {c.after.margin:.3f})"
                    for c in rep.broken
                )
            )
        )
        raise typer.Exit(1)
    console.print(
        f"[bold green]no old read broken[/] ({len(flipped)} flipped to passing)"
        if flipped
        else "[bold green]no old read changed its verdict[/]"
    )
