"""How robust is a decision? Sweep any experiment's settings and report which pass.

A *decision* is a case with ``expect``: it holds when the expected token leads the probe's
logits by at least ``min_margin`` (default :data:`MIN_MARGIN`, docs/seed.md's target).
For a configuration, the *margin* of a case is ``logit[expect] - max(other logits)``, the
smallest over the embedding seeds tried (random embeddings: one model per seed; one-hot
has no seed). Three questions, each a function:

* :func:`margins`: the margins of every case under one configuration;
* :func:`tolerance`: how far the temperatures can move before a decision flips: for each
  bank (and all banks together), the range of factors ``[lo, hi]`` by which its
  temperatures can be multiplied (scanned on a ×2^(1/8) ladder out to ×1/8 and ×8) while
  every decision still holds;
* :func:`robustness`: the share of random perturbations of all temperatures (each bank
  scaled by ×0.8, ×0.9, ×1.1 or ×1.25) under which every decision holds;

and :func:`sweep` puts them together over a grid (temperatures per bank, ``norm``,
``readout``, and any other setting asked for), for ``assocmem sweep FILE.toml`` and ``bench/seed_sweep.py``.

A configuration is a dict of :meth:`Experiment.with_model` changes
(``{"temp_assoc": 0.2, "norm": "none", ...}``).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from assocmem.config import BANKS
from assocmem.errors import InputError
from assocmem.experiment import Experiment

__all__ = [
    "MIN_MARGIN",
    "PERTURB_FACTORS",
    "Outcome",
    "SweepReport",
    "settings_of",
    "margins",
    "perturbed",
    "robustness",
    "tolerance",
    "grid",
    "sweep",
]

MIN_MARGIN = 0.1  # a decision holds by at least this logit margin (docs/seed.md)
PERTURB_FACTORS = (0.8, 0.9, 1.1, 1.25)  # the ±25 % perturbations of robustness()
LADDER = tuple(2 ** (k / 8) for k in range(1, 25))  # ×1.09 .. ×8 (and 1/that downwards)
DEFAULT_TEMPS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
DEFAULT_NORMS = ("none", "read", "layer")
DEFAULT_READOUTS = ("residual", "delta")


def settings_of(exp: Experiment) -> dict[str, Any]:
    """The file's own configuration as ``with_model`` changes (every setting but ``layers``)."""
    s = {k: v for k, v in asdict(exp.config).items() if k != "layers"}
    return {"embedding": exp.embedding, "dim": exp.dim, **s}


def _seeds(exp: Experiment, settings: dict[str, Any], seeds: Sequence[int]) -> Sequence[int]:
    kind = settings.get("embedding", exp.embedding)
    return tuple(seeds) if kind == "random" and seeds else (settings.get("seed", exp.seed),)


def margins(
    exp: Experiment, settings: dict[str, Any] | None = None, seeds: Sequence[int] = ()
) -> dict[str, float]:
    """``{case: margin}`` for every case with ``expect``, the minimum over ``seeds`` (random
    embeddings; one-hot ignores them). Cases of one length run as one batch."""
    s = {k: v for k, v in (settings or {}).items() if k != "seed"}
    cases = [c for c in exp.cases if c.expect is not None]
    out = {c.name: math.inf for c in cases}
    for seed in _seeds(exp, settings or {}, seeds):
        model = exp.with_model(**s, seed=seed).build()
        index = model.embedding.vocab.index
        for n in sorted({len(c.tokens) for c in cases}):
            group = [c for c in cases if len(c.tokens) == n]
            ids = torch.stack([model.ids(c.tokens) for c in group])  # (B, n)
            with torch.no_grad():
                probe = model(ids).logits[:, -1, :]  # (B, V)
            for row, c in zip(probe, group, strict=True):
                j = index[c.expect]  # type: ignore[index]
                best_other = torch.cat([row[:j], row[j + 1 :]]).max()
                out[c.name] = min(out[c.name], float(row[j] - best_other))
    return out


def _holds(m: dict[str, float], min_margin: float) -> bool:
    return bool(m) and min(m.values()) >= min_margin


def perturbed(settings: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The same settings with each bank's temperatures scaled by one of :data:`PERTURB_FACTORS`."""
    s = dict(settings)
    for b in BANKS:
        t = s[f"temp_{b}"]
        f = lambda v: v * rng.choice(PERTURB_FACTORS)  # noqa: E731
        s[f"temp_{b}"] = tuple(f(v) for v in t) if isinstance(t, tuple) else f(t)
    return s


def robustness(
    passes: Callable[[dict[str, Any]], bool], settings: dict[str, Any], n: int = 20, seed: int = 0
) -> float:
    """Share of ``n`` random temperature perturbations of ``settings`` that ``passes``."""
    rng = random.Random(seed)
    return sum(passes(perturbed(settings, rng)) for _ in range(n)) / n


def _scaled(settings: dict[str, Any], banks: Iterable[str], f: float) -> dict[str, Any]:
    s = dict(settings)
    for b in banks:
        t = s[f"temp_{b}"]
        s[f"temp_{b}"] = tuple(v * f for v in t) if isinstance(t, tuple) else t * f
    return s


def tolerance(
    passes: Callable[[dict[str, Any]], bool], settings: dict[str, Any]
) -> dict[str, tuple[float, float]]:
    """``{bank or "all": (lo, hi)}``: the factors the bank's temperatures (or all of them) can be
    scaled by, on the ladder ×2^(±k/8) out to ×8, before a decision flips (``(1, 1)``: the
    next rung already flips one; the scan stops at the first flip on each side)."""
    out = {}
    for name, banks in [*((b, (b,)) for b in BANKS), ("all", BANKS)]:
        ends = []
        for up in (True, False):
            last = 1.0
            for f in LADDER:
                g = f if up else 1 / f
                if not passes(_scaled(settings, banks, g)):
                    break
                last = g
            ends.append(last)
        out[name] = (ends[1], ends[0])
    return out


def grid(
    base: dict[str, Any],
    temps: Sequence[float] = DEFAULT_TEMPS,
    norms: Sequence[str] = DEFAULT_NORMS,
    readouts: Sequence[str] = DEFAULT_READOUTS,
    vary: dict[str, Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """``base`` with one temperature per bank from ``temps`` × ``norms`` × ``readouts`` × every
    axis of ``vary`` (``{setting: values}``, any other ModelConfig field, e.g. ``qk_norm``)."""
    extra = dict(vary or {})
    out = []
    for values in itertools.product(*extra.values()):
        for norm, readout in itertools.product(norms, readouts):
            for ta, tc, tm in itertools.product(temps, repeat=3):
                out.append(
                    {**base, **dict(zip(extra, values, strict=True)), "norm": norm,
                     "readout": readout, "temp_assoc": ta, "temp_context": tc, "temp_mlp": tm}
                )  # fmt: skip
    return out


@dataclass
class Outcome:
    """One configuration's margins (and, for the ones looked at closely, its robustness)."""

    settings: dict[str, Any]
    margins: dict[str, float]
    passed: bool
    tolerance: dict[str, tuple[float, float]] | None = None
    robust: float | None = None

    @property
    def worst(self) -> float:
        """The smallest margin over the cases (``-inf`` without decisions)."""
        return min(self.margins.values(), default=-math.inf)


@dataclass
class SweepReport:
    """The file's configuration under scrutiny, and the grid around it."""

    file: str
    min_margin: float
    seeds: tuple[int, ...]
    base: Outcome
    configs: list[Outcome] = field(default_factory=list)  # the grid, best worst-margin first
    axes: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def passing(self) -> list[Outcome]:
        return [o for o in self.configs if o.passed]

    def counts(self) -> dict[str, dict[str, int]]:
        """Passing configurations per value of each axis."""
        return {
            axis: {str(v): sum(o.settings[axis] == v for o in self.passing) for v in values}
            for axis, values in self.axes.items()
        }

    def to_json(self) -> dict[str, Any]:
        def one(o: Outcome) -> dict[str, Any]:
            d = {"settings": o.settings, "margins": o.margins, "worst": o.worst,
                 "passed": o.passed}  # fmt: skip
            if o.tolerance is not None:
                d["tolerance"] = {k: list(v) for k, v in o.tolerance.items()}
            if o.robust is not None:
                d["robust"] = o.robust
            return d

        return {
            "file": self.file,
            "min_margin": self.min_margin,
            "seeds": list(self.seeds),
            "base": one(self.base),
            "axes": self.axes,
            "n": len(self.configs),
            "passing": len(self.passing),
            "counts": self.counts(),
            "configs": [one(o) for o in self.configs],
        }


def sweep(
    exp: Experiment,
    *,
    temps: Sequence[float] = DEFAULT_TEMPS,
    norms: Sequence[str] = DEFAULT_NORMS,
    readouts: Sequence[str] = DEFAULT_READOUTS,
    vary: dict[str, Sequence[Any]] | None = None,
    seeds: Sequence[int] = (),
    min_margin: float = MIN_MARGIN,
    top: int = 10,
    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda it: it,
) -> SweepReport:
    """The file's configuration (margins, temperature tolerance, robustness to 20 random
    ±25 % perturbations) and the grid ``temps``³ × ``norms`` × ``readouts`` × ``vary`` around
    it (the ``top`` best by worst margin also get a tolerance)."""
    if not any(c.expect is not None for c in exp.cases):
        raise InputError(f"{exp.file}: no case has 'expect': there is no decision to sweep")

    def outcome(s: dict[str, Any]) -> Outcome:
        m = margins(exp, s, seeds)
        return Outcome(settings=s, margins=m, passed=_holds(m, min_margin))

    def passes(s: dict[str, Any]) -> bool:
        return outcome(s).passed

    base = outcome(settings_of(exp))
    if base.passed:
        base.tolerance = tolerance(passes, base.settings)
    base.robust = robustness(passes, base.settings)
    configs = [outcome(s) for s in progress(grid(base.settings, temps, norms, readouts, vary))]
    configs.sort(key=lambda o: -o.worst)
    for o in configs[:top]:
        if o.passed:
            o.tolerance = tolerance(passes, o.settings)
    axes = {"temp_assoc": list(temps), "temp_context": list(temps), "temp_mlp": list(temps),
            "norm": list(norms), "readout": list(readouts),
            **{k: list(v) for k, v in (vary or {}).items()}}  # fmt: skip
    return SweepReport(exp.file, min_margin, tuple(seeds), base, configs, axes)
