"""Sweep the readings the seed leaves open, and report how close each comes to it.

The seed (shared/seed, Sparse Hash AI) gives a graph, two sentences, the probe's
logits for both and two attention rows, but not the embedding, the temperatures,
normalisation, what is read out, or at which layer. Each is a model option here;
this script searches them through the library API (``Experiment.with_model``,
``MemTransformer``) and scores every configuration by

1. the decisions: sentence 1 top-1 КАШУ, sentence 2 top-1 МАША, each by a logit
   margin >= 0.1 over the runner-up (for random embeddings: the minimum over seeds);
2. robustness: the share of random ±25 % perturbations of all temperatures under
   which the decisions still hold (a decision that flips when a temperature moves
   by 10 % is an accident of the grid, not a mechanism);
3. the distance to the seed: max |Δlogit| over the 8 tokens of both sentences,
   and the L1 distance of the two attention rows the seed prints.

Usage::

    python bench/seed_sweep.py                 # the sweep: table of the best configs
    python bench/seed_sweep.py --json out.json # ... and every scored config as JSON
    python bench/seed_sweep.py --report        # the file's configuration vs the seed (docs/seed.md)

The stage-A grid, the robustness measure and the configuration of a file come from
:mod:`assocmem.sweep` (what ``assocmem sweep FILE.toml`` runs for any experiment); this
script adds what is particular to the seed: the distance to its printed logits and attention rows, and the
wider search over every structural option.

Deterministic (fixed seeds, float64, one thread); about two minutes on one core.
The table's rows are re-run through ``run_case`` (the path ``assocmem run`` takes)
and must agree with the batched sweep to 1e-9.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from assocmem import sweep as sweep_lib
from assocmem.experiment import Experiment, load_experiment, run_case
from assocmem.model import ModelConfig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "masha.toml"

# The seed's figures, by case name of examples/masha.toml (data, not special cases:
# the code below only compares whatever these name).
SEED_LOGITS: dict[str, dict[str, float]] = {
    "tasty": {
        "МАША": 0.42,
        "ЕСТ": -0.1,
        "КАШУ": 1.74,
        "ПОТОМУ": 0.1,
        "ЧТО": 0.01,
        "ОНА": -0.03,
        "ВКУСНАЯ": 0.98,
        "ГОЛОДНАЯ": -0.13,
    },  # fmt: skip
    "hungry": {
        "МАША": 1.88,
        "ЕСТ": -0.1,
        "КАШУ": 0.06,
        "ПОТОМУ": -0.07,
        "ЧТО": 0.05,
        "ОНА": 0.75,
        "ВКУСНАЯ": 0.11,
        "ГОЛОДНАЯ": 0.17,
    },  # fmt: skip
}
# (case, layer, reader position, the row over the earlier positions): the context read
# of ГОЛОДНАЯ (position 6) in layer 2 and of the probe (position 7) in layer 3.
SEED_ATTENTION: list[tuple[str, int, int, list[float]]] = [
    ("hungry", 2, 6, [0.75, 0, 0, 0, 0, 0.25]),
    ("hungry", 3, 7, [0, 0, 0, 0, 0, 0.61, 0.39]),
]
MIN_MARGIN = sweep_lib.MIN_MARGIN
SEEDS = (0, 1, 2, 3, 4)  # random embeddings: the decisions must hold for all
GRID_TEMPS = (0.05, 0.1, 0.2, 0.5, 2.0)
SEARCH_TEMPS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


@dataclass
class Score:
    """One configuration's results."""

    settings: dict[str, Any]  # with_model(**settings)
    margins: dict[str, float]  # case -> min over seeds of logit[expect] - best other
    dlogit: float  # max |Δlogit| vs the seed, both cases (max over seeds)
    attn_l1: list[float | None]  # per SEED_ATTENTION row (None: the layer is not run)
    logits: dict[str, dict[str, float]] = field(default_factory=dict)  # seed 0
    attention: list[list[float] | None] = field(default_factory=list)  # seed 0
    robust: float | None = None  # share of temperature perturbations that still pass

    @property
    def margin(self) -> float:
        return min(self.margins.values())

    @property
    def passed(self) -> bool:
        return self.margin >= MIN_MARGIN

    @property
    def attn(self) -> float:
        """Sum of the attention rows' L1 distances (rows not run count 2, the maximum)."""
        return sum(2.0 if d is None else d for d in self.attn_l1)

    def key(self) -> tuple:
        """Rank: decisions, then robustness, then the distance to the seed."""
        robust = self.robust if self.robust is not None else 0.0
        return (not self.passed, -min(robust, 0.9), self.dlogit, self.attn)


def breakdown(scores: list[Score], extra: list[Score]) -> str:
    """The sweep's counts that docs/seed.md quotes: passing configurations per option, the
    best margin of any normalising one, random-embedding passes per width."""
    default = ModelConfig()
    passing = [s for s in scores if s.passed]

    def n(key: str, value) -> int:
        return sum(s.settings.get(key, getattr(default, key)) == value for s in passing)

    normed = [s.margin for s in scores if s.settings.get("norm", default.norm) != "none"]
    dims = {d: sum(s.passed for s in extra if s.settings["dim"] == d) for d in (64, 256, 1024)}
    return (
        f"passing with qk_norm: {n('qk_norm', True)}; context_source='embed': "
        f"{n('context_source', 'embed')}; context_self: {n('context_self', True)}; joint: "
        f"{n('joint', True)}. Best margin with norm != 'none': "
        f"{max(normed) if normed else float('nan'):.2f}. Random embeddings passing for all "
        f"5 seeds, by width: {dims}"
    )


def _weights(cache: dict[str, torch.Tensor], layer: int, n: int) -> torch.Tensor | None:
    """Context weights ``(B, n, n)`` at ``layer`` (the context part of a joint read)."""
    for bank in ("context", "joint"):
        w = cache.get(f"layers.{layer}.{bank}.weights")
        if w is not None:
            return w[..., -n:]  # (B, n, n): joint columns are [slots; positions]
    return None


def evaluate(base: Experiment, settings: dict[str, Any], detail: bool = False) -> Score:
    """Score one configuration: all cases batched per embedding seed."""
    s = dict(settings)
    seeds = SEEDS if s.get("embedding", base.embedding) == "random" else (base.seed,)
    cases = base.cases
    margins = {c.name: math.inf for c in cases}
    dlogit, attn_l1 = 0.0, [0.0 for _ in SEED_ATTENTION]
    logits: dict[str, dict[str, float]] = {}
    attention: list[list[float] | None] = []
    want = {layer for _, layer, _, _ in SEED_ATTENTION}
    for seed in seeds:
        exp = base.with_model(**s, seed=seed)
        model = exp.build()
        vocab = model.embedding.vocab.tokens
        ids = torch.stack([model.ids(c.tokens) for c in cases])  # (B, n): same length
        _, cache = model.run_with_cache(
            ids,
            names_filter=lambda nm: (
                nm == "logits"
                or any(
                    nm in (f"layers.{k}.context.weights", f"layers.{k}.joint.weights") for k in want
                )
            ),
        )
        probe = cache["logits"][:, -1, :]  # (B, V)
        for b, c in enumerate(cases):
            row = probe[b]
            j = vocab.index(c.expect)
            others = torch.cat([row[:j], row[j + 1 :]])
            margins[c.name] = min(margins[c.name], float(row[j] - others.max()))
            seed_row = SEED_LOGITS.get(c.name, {})
            if seed_row:
                dlogit = max(
                    dlogit, max(abs(float(row[vocab.index(t)]) - v) for t, v in seed_row.items())
                )
            if seed == seeds[0]:
                logits[c.name] = {t: float(row[i]) for i, t in enumerate(vocab)}
        names = [c.name for c in cases]
        for k, (case, layer, pos, target) in enumerate(SEED_ATTENTION):
            w = _weights(cache, layer, ids.shape[-1])
            if w is None:
                attn_l1[k] = None  # type: ignore[call-overload]
                if seed == seeds[0]:
                    attention.append(None)
                continue
            got = w[names.index(case), pos, : len(target)].tolist()
            d = sum(abs(a - t) for a, t in zip(got, target, strict=True))
            if attn_l1[k] is not None:
                attn_l1[k] = max(attn_l1[k], d)  # type: ignore[type-var]
            if seed == seeds[0]:
                attention.append(got)
    return Score(
        settings=s,
        margins=margins,
        dlogit=dlogit,
        attn_l1=attn_l1,  # type: ignore[arg-type]
        logits=logits if detail else {},
        attention=attention if detail else [],
    )


def robustness(base: Experiment, score: Score, n: int = 20, seed: int = 0) -> float:
    """Share of ``n`` temperature perturbations under which the decisions still hold."""
    return sweep_lib.robustness(lambda s: evaluate(base, s).passed, score.settings, n, seed)


def grid() -> list[dict[str, Any]]:
    """Stage A: one temperature per bank, every structural option (one-hot)."""
    structure = {"qk_norm": (False, True), "context_source": ("layer", "embed"),
                 "readout_layer": (2, 3)}  # fmt: skip
    return sweep_lib.grid({"embedding": "onehot"}, GRID_TEMPS, vary=structure)


def search(n: int, seed: int = 0, dot_only: bool = False) -> list[dict[str, Any]]:
    """Stage B: random per-layer temperatures with every option, incl. context_self and joint.

    ``dot_only``: plain dot-product reads over the layer's input (no ``qk_norm``, no
    ``context_source``): the search that finds the best reading without cosine scoring.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s: dict[str, Any] = dict(
            embedding="onehot",
            qk_norm=not dot_only and rng.random() < 0.5,
            context_source="layer" if dot_only else rng.choice(("layer", "embed")),
            norm=rng.choice(("none", "read", "layer")),
            readout=rng.choice(("residual", "delta")),
            readout_layer=rng.choice((2, 3)),
            context_self=rng.random() < 0.25,
            joint=rng.random() < 0.25,
        )
        for b in ("assoc", "context", "mlp"):
            s[f"temp_{b}"] = tuple(rng.choice(SEARCH_TEMPS) for _ in range(3))
        out.append(s)
    return out


def _fmt_settings(s: dict[str, Any]) -> str:
    short = {"context_source": "ctx", "readout_layer": "L", "context_self": "self"}
    parts = []
    for k, v in s.items():
        if k.startswith("temp_") or k == "embedding":
            continue
        if v is False or (k == "context_source" and v == "layer"):
            continue
        parts.append(k if v is True else f"{short.get(k, k)}={v}")
    return " ".join(parts)


def _fmt_temp(t: Any) -> str:
    return "/".join(f"{v:g}" for v in t) if isinstance(t, tuple) else f"{t:g}"


def table(scores: list[Score], title: str) -> Table:
    t = Table(title=title, title_justify="left")
    for col, j in (("#", "right"), ("emb", "left"), ("options", "left"), ("t_assoc", "right"),
                   ("t_ctx", "right"), ("t_mlp", "right"), ("margin 1", "right"),
                   ("margin 2", "right"), ("robust", "right"), ("max|Δlogit|", "right"),
                   ("L1 att2", "right"), ("L1 att3", "right")):  # fmt: skip
        t.add_column(col, justify=j)  # type: ignore[arg-type]
    for i, sc in enumerate(scores, 1):
        s = sc.settings
        emb = s.get("embedding", "onehot") + (
            f"{s['dim']}" if s.get("embedding") == "random" else ""
        )
        m1, m2 = (sc.margins[k] for k in list(sc.margins)[:2])
        t.add_row(
            str(i), emb, _fmt_settings(s),
            *(_fmt_temp(s[f"temp_{b}"]) for b in ("assoc", "context", "mlp")),
            f"{m1:+.3f}", f"{m2:+.3f}",
            "-" if sc.robust is None else f"{sc.robust:.0%}",
            f"{sc.dlogit:.2f}",
            *("-" if d is None else f"{d:.2f}" for d in sc.attn_l1),
            style="green" if sc.passed else "",
        )  # fmt: skip
    return t


def check_with_run_case(base: Experiment, sc: Score) -> None:
    """Re-run ``sc`` case by case through ``run_case`` (what ``assocmem run`` does)."""
    seeds = SEEDS if sc.settings.get("embedding") == "random" else (base.seed,)
    for seed in seeds:
        exp = base.with_model(**sc.settings, seed=seed)
        model = exp.build()
        for c in exp.cases:
            r = run_case(model, c)
            others = [v for t, v in r.logits.items() if t != c.expect]
            m = r.logits[c.expect] - max(others)
            assert m >= sc.margins[c.name] - 1e-9, (sc.settings, c.name, m, sc.margins)


def sweep(n_search: int, top: int, out: Path | None, console: Console) -> list[Score]:
    base = load_experiment(EXAMPLE)
    t0 = time.perf_counter()
    configs = grid() + search(n_search) + search(2 * n_search, seed=1, dot_only=True)
    scores = [evaluate(base, s) for s in configs]
    console.print(f"stage A+B: {len(scores)} one-hot configs in {time.perf_counter() - t0:.0f} s")

    # Stage C: the best by margin, then the closest passing ones: robustness, and the same
    # settings on random embeddings (several widths, 5 seeds each).
    by_margin = sorted(scores, key=lambda s: -s.margin)[:top]
    closest = sorted((s for s in scores if s.passed), key=lambda s: s.dlogit)[:top]
    finalists = list(
        {json.dumps(s.settings, sort_keys=True): s for s in by_margin + closest}.values()
    )
    for sc in finalists:
        sc.robust = robustness(base, sc)
    extra = []
    for sc in finalists[:top]:
        for dim in (64, 256, 1024):
            r = evaluate(base, {**sc.settings, "embedding": "random", "dim": dim})
            extra.append(r)
    for r in extra:
        if r.passed:
            r.robust = robustness(base, r, n=10)
    scores += extra
    console.print(
        f"stage C: robustness of {len(finalists)} finalists, {len(extra)} random-embedding "
        f"variants; total {time.perf_counter() - t0:.0f} s"
    )
    scores.sort(key=Score.key)
    best = scores[:top]
    for sc in best:
        check_with_run_case(base, sc)
    n_pass = sum(s.passed for s in scores)
    n_rand = sum(s.passed for s in extra)
    console.print(
        f"passing (both decisions, margin >= {MIN_MARGIN}): {n_pass} of {len(scores)}; "
        f"random embeddings passing for all 5 seeds: {n_rand} of {len(extra)}"
    )
    console.print(breakdown(scores, extra))
    console.print(
        table(best, f"best {top}: decisions, then robustness (capped at 90 %), then distance")
    )
    if out is not None:
        rows = []
        for sc in scores:
            d = asdict(sc)
            d.update(passed=sc.passed, margin=sc.margin)
            rows.append(d)
        out.write_text(json.dumps({"min_margin": MIN_MARGIN, "seeds": SEEDS, "configs": rows},
                                  ensure_ascii=False, indent=1))  # fmt: skip
        console.print(f"wrote {out}")
    return best


# The best reading the sweep finds with dot-product reads (no qk_norm): it needs a
# temperature per layer, and some ±25 % perturbations of them flip a decision.
DOT_READING: dict[str, Any] = dict(
    embedding="onehot", qk_norm=False, context_source="layer", norm="none", readout="delta",
    readout_layer=3, context_self=False, joint=False, temp_assoc=(0.05, 2.0, 1.0),
    temp_context=(0.1, 2.0, 2.0), temp_mlp=(2.0, 2.0, 2.0),
)  # fmt: skip


def _show(console: Console, title: str, sc: Score) -> None:
    console.rule(title)
    console.print("settings:", sc.settings)
    t = Table(title="probe logits: ours vs the seed", title_justify="left")
    t.add_column("token")
    for case in SEED_LOGITS:
        t.add_column(f"{case} ours", justify="right")
        t.add_column(f"{case} seed", justify="right")
    for tok in SEED_LOGITS["tasty"]:
        t.add_row(tok, *(f"{v:.2f}" for case in SEED_LOGITS
                         for v in (sc.logits[case][tok], SEED_LOGITS[case][tok])))  # fmt: skip
    console.print(t)
    console.print(
        "margins: " + ", ".join(f"{k} {v:+.3f}" for k, v in sc.margins.items())
        + f"; max |Δlogit| {sc.dlogit:.2f}"
        + ("" if sc.robust is None else f"; decisions hold under {sc.robust:.0%} of ±25 % temperature perturbations")
    )  # fmt: skip
    for (case, layer, pos, target), got, d in zip(
        SEED_ATTENTION, sc.attention, sc.attn_l1, strict=True
    ):
        seed_row = " ".join(f"{v:.2f}" for v in target)
        if got is None:
            console.print(f"{case} layer {layer} row {pos}: layer not run; seed [{seed_row}]")
            continue
        ours = " ".join(f"{v:.2f}" for v in got)
        console.print(
            f"{case} layer {layer} context row of position {pos}: ours [{ours}] seed [{seed_row}] L1 {d:.2f}"
        )


def report(console: Console) -> Score:
    """examples/masha.toml next to the seed, the best dot-product reading, the literal one."""
    base = load_experiment(EXAMPLE)
    chosen = evaluate(base, sweep_lib.settings_of(base), detail=True)
    check_with_run_case(base, chosen)
    chosen.robust = robustness(base, chosen)
    dot = evaluate(base, DOT_READING, detail=True)
    check_with_run_case(base, dot)
    dot.robust = robustness(base, dot)
    literal = {**DOT_READING, "readout": "residual", "temp_assoc": 0.1,
               "temp_context": 0.1, "temp_mlp": 0.1}  # fmt: skip
    lit = evaluate(base, literal, detail=True)
    _show(console, "examples/masha.toml: cosine reads (qk_norm), one temperature 0.2", chosen)
    _show(console, "best dot-product reading: one temperature per layer", dot)
    _show(console, "literal: dot-product reads, all temperatures 0.1", lit)
    a, b = (lit.logits[c] for c in SEED_LOGITS)
    diff = max(abs(a[t] - b[t]) for t in a)
    console.print(
        f"literal reading: max |difference| between the two sentences' probe logits: {diff:.1e}"
    )
    return chosen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, help="write every scored configuration here")
    p.add_argument("--report", action="store_true", help="the file's configuration vs the seed")
    p.add_argument(
        "--search",
        type=int,
        default=3000,
        help="random per-layer samples (stage B; 2x more file-keys-only)",
    )
    p.add_argument("--top", type=int, default=20)
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # tiny models: threads only add overhead
    console = Console(width=200)
    if a.report:
        sc = report(console)
        return 0 if sc.passed else 1
    sweep(a.search, a.top, a.json, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
