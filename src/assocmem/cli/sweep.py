"""``assocmem sweep``: which settings of an experiment pass every case, and by how much."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.markup import escape
from rich.table import Table

from assocmem.cli.app import app, console
from assocmem.config import BANKS, ModelConfig, field_kinds
from assocmem.errors import InputError, did_you_mean, write_atomic
from assocmem.experiment import load_experiment
from assocmem.sweep import (
    DEFAULT_NORMS,
    DEFAULT_READOUTS,
    DEFAULT_TEMPS,
    MIN_MARGIN,
    Outcome,
    SweepReport,
    sweep,
)


def _list(text: str, cast: Callable[[str], Any], what: str) -> list[Any]:
    try:
        out = [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--{what}: expected a comma-separated list, got {text!r}") from None
    if not out:
        raise InputError(f"--{what}: the list is empty")
    return out


def _axis(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2`` of --vary: a ModelConfig field and its values, typed as [model] types them."""
    kinds = {k: v for k, v in field_kinds().items() if k not in ("norm", "readout")}
    key, eq, values = text.partition("=")
    key = key.strip()
    if not eq or key not in kinds:
        raise InputError(
            f"--vary {text!r}: expected KEY=V1,V2 with KEY one of {', '.join(kinds)} "
            f"(temperatures, norm and readout have their own options).{did_you_mean(key, kinds)}"
        )
    kind, choices = kinds[key]
    words = {"true": True, "false": False}
    if kind is bool:
        if any(v.strip().lower() not in words for v in values.split(",")):
            raise InputError(f"--vary {key}: expected true or false values, got {values!r}")
        out = _list(values, lambda v: words[v.lower()], f"vary {key}")
    else:
        out = _list(values, kind, f"vary {key}")
    bad = [v for v in out if choices and v not in choices]
    if bad:
        raise InputError(f"--vary {key}: unknown value(s) {bad} (known: {', '.join(choices)})")
    try:
        for v in out:
            ModelConfig(**{key: v})
    except InputError as e:
        raise InputError(f"--vary {key}: {e}") from None
    return key, out


def _temp(t: Any) -> str:
    return "/".join(f"{v:g}" for v in t) if isinstance(t, tuple) else f"{t:g}"


def _tol(o: Outcome) -> str:
    if o.tolerance is None:
        return "-"
    lo, hi = o.tolerance["all"]
    return f"×{lo:.2g}–×{hi:.2g}"


def _extra_axes(report: SweepReport) -> list[str]:
    """The --vary axes: every axis but the temperatures, norm and readout."""
    fixed = {*(f"temp_{b}" for b in BANKS), "norm", "readout"}
    return [k for k in report.axes if k not in fixed]


def _table(report: SweepReport, rows: list[Outcome], title: str) -> Table:
    names = list(report.base.margins)
    t = Table(title=escape(title), title_justify="left")
    t.add_column("#", justify="right")
    t.add_column("norm")
    t.add_column("readout")
    t.add_column("temps a/c/m", justify="right")
    extra = _extra_axes(report)
    for k in extra:
        t.add_column(escape(k))
    for n in names:
        t.add_column(escape(n), justify="right")
    t.add_column("worst", justify="right")
    t.add_column("temps ×")
    for i, o in enumerate(rows, 1):
        s = o.settings
        t.add_row(
            str(i), s["norm"], s["readout"], "/".join(_temp(s[f"temp_{b}"]) for b in BANKS),
            *(escape(str(s[k])) for k in extra), *(f"{o.margins[n]:+.3f}" for n in names), f"{o.worst:+.3f}", _tol(o),
            style="green" if o.passed else "red",
        )  # fmt: skip
    return t


def _print(report: SweepReport, top: int) -> None:
    b = report.base
    seeds = f", minimum over embedding seeds {list(report.seeds)}" if report.seeds else ""
    console.print(
        escape(
            f"{report.file}: a decision holds when the expected token leads by >= "
            f"{report.min_margin:g}{seeds}"
        )  # fmt: skip
    )
    console.print(_table(report, [b], "the file's settings"))
    verdict = "[bold green]every case passes[/]" if b.passed else "[bold red]a case fails[/]"
    console.print(
        f"{verdict}; worst margin {b.worst:+.3f}; decisions hold under {b.robust:.0%} of 20 "
        "random ±25 % perturbations of the temperatures"
    )
    if b.tolerance is not None:
        parts = [f"{k} ×{lo:.3g}..×{hi:.3g}" for k, (lo, hi) in b.tolerance.items()]
        console.print(
            "temperatures can be scaled (each bank alone, then all) by: " + ", ".join(parts)
        )
    console.print(
        "(column 'temps ×': the factors all temperatures can be scaled by together before "
        "a decision flips; per bank in --json)"
    )
    n, p = len(report.configs), len(report.passing)
    console.print(
        f"\ngrid: {p} of {n} configurations pass every case "
        f"(temperatures {report.axes['temp_assoc']} per bank × "
        + " × ".join(("norm", "readout", *_extra_axes(report)))
        + ")"
    )
    for axis, counts in report.counts().items():
        line = ", ".join(f"{v} {c}" for v, c in counts.items())
        console.print(escape(f"  passing by {axis}: {line}"))
    console.print(_table(report, report.configs[:top], f"best {top} by worst margin"))


@app.command("sweep")
def sweep_command(
    file: Annotated[
        Path, typer.Argument(help="Experiment file (.toml) with cases that have expect.")
    ],
    temps: Annotated[
        str, typer.Option(help="Temperatures tried for each bank, comma-separated.")
    ] = ",".join(f"{t:g}" for t in DEFAULT_TEMPS),
    norm: Annotated[str, typer.Option(help="norm values tried.")] = ",".join(DEFAULT_NORMS),
    readout: Annotated[str, typer.Option(help="readout values tried.")] = ",".join(
        DEFAULT_READOUTS
    ),
    vary: Annotated[
        list[str] | None,
        typer.Option(
            help="Another setting to sweep, KEY=V1,V2 (any [model] key but temp, e.g. "
            "qk_norm=true,false or readout_layer=2,3); repeatable."
        ),
    ] = None,
    seeds: Annotated[
        str, typer.Option(help="Embedding seeds (random embeddings: margins are the minimum).")
    ] = "",
    embedding: Annotated[
        str | None, typer.Option(help="Override the file's embedding: onehot or random.")
    ] = None,
    dim: Annotated[int | None, typer.Option(help="Override the file's embedding width.")] = None,
    min_margin: Annotated[
        float, typer.Option(help="A decision holds when the expected token leads by this much.")
    ] = MIN_MARGIN,
    top: Annotated[
        int, typer.Option(min=0, help="Rows of the grid shown (and given a tolerance).")
    ] = 10,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the whole sweep here as JSON.")
    ] = None,
) -> None:
    """Sweep an experiment's settings: which pass every case, the worst margin, how far the
    temperatures can move before a decision flips."""
    torch.set_num_threads(1)  # hundreds of tiny models: threads only add overhead
    exp = load_experiment(file)
    changes: dict[str, Any] = {}
    if embedding is not None:
        if embedding not in ("onehot", "random"):
            raise InputError(f'--embedding must be "onehot" or "random", got {embedding!r}')
        changes["embedding"] = embedding
    if dim is not None:
        if dim < 1:
            raise InputError(f"--dim must be >= 1, got {dim}")
        changes["dim"] = dim
    if changes:
        exp = exp.with_model(**changes)
    temp_list = _list(temps, float, "temps")
    if any(not 0 < t < math.inf for t in temp_list):
        raise InputError(f"--temps: every temperature must be finite and > 0, got {temps!r}")
    if not math.isfinite(min_margin):
        raise InputError(f"--min-margin must be a finite number, got {min_margin}")
    norms, readouts = _list(norm, str, "norm"), _list(readout, str, "readout")
    for what, got, ok in (("norm", norms, DEFAULT_NORMS), ("readout", readouts, DEFAULT_READOUTS)):
        bad = [v for v in got if v not in ok]
        if bad:
            raise InputError(f"--{what}: unknown value(s) {bad} (known: {', '.join(ok)})")
    axes = dict(_axis(v) for v in vary or [])
    seed_list = _list(seeds, int, "seeds") if seeds.strip() else []
    report = sweep(exp, temps=temp_list, norms=norms, readouts=readouts, vary=axes,
                   seeds=seed_list, min_margin=min_margin, top=top)  # fmt: skip
    _print(report, top)
    if json_out is not None:
        write_atomic(json_out, json.dumps(report.to_json(), ensure_ascii=False, indent=1))
        console.print(f"wrote {json_out}", markup=False)
