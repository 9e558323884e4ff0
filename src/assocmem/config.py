"""The settings of a hand-set MemTransformer and the names of its memory banks.

One definition, imported by the model, its trace, experiment files and the views
(nothing here imports the rest of assocmem but :mod:`assocmem.errors`).
"""

from __future__ import annotations

import functools
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Literal

from assocmem.errors import InputError

__all__ = ["BANKS", "JOINT_BANKS", "MAX_LAYERS", "ModelConfig", "Temp", "field_kinds"]

# The banks a layer reads, in order, and the ones with a temperature each.
BANKS = ("assoc", "context", "mlp")
# With ``joint=True`` the assoc and context reads are one softmax over [slots; context].
JOINT_BANKS = ("joint", "mlp")
Temp = float | tuple[float, ...]
# Deepest model: every layer's reads are kept in a trace (the seed runs 3); a million layers
# ran without end.
MAX_LAYERS = 64


@dataclass(frozen=True)
class ModelConfig:
    """Settings of a hand-set MemTransformer.

    The defaults are general settings, not the seed's: under them the seed's first
    sentence gives the wrong answer. The seed's configuration is examples/masha.toml;
    docs/seed.md and bench/seed_sweep.py show why (``qk_norm=True`` with one temperature
    0.2 is the robust reading; left off by default so existing models keep their reads).
    """

    layers: int = 2  # the seed: "two layers" for the sentence
    readout_layer: int | None = (
        None  # None = after `layers`; the seed reads its probe after layer 3
    )
    # Temperatures, one per bank, each a float or one float per layer. A sharp
    # associative read picks single relations; a softer context read lets the probe
    # see past the nearest match (with all three at 0.1 both sentences give the
    # same answer: docs/seed.md).
    temp_assoc: Temp = 0.05
    temp_context: Temp = 0.5
    temp_mlp: Temp = 2.0
    norm: Literal["none", "read", "layer"] = (
        "none"  # L2-normalise the residual after each read / each layer
    )
    readout: Literal["residual", "delta"] = (
        "residual"  # "delta": only what the reads added to the token's vector
    )
    context_self: bool = False  # the context read also sees position i (the seed excludes it)
    # What the context bank holds in every layer: "layer" = the layer's input at earlier
    # positions (a standard transformer), "embed" = the token vectors X themselves. The
    # seed's code, ``q += mem(q, X[0:-1], X[0:-1])`` repeated per layer with X never
    # updated, reads the latter literally; the seed's text leaves it open.
    context_source: Literal["layer", "embed"] = "layer"
    # Score every read by cosine similarity (q and keys L2-normalised inside the read; the
    # values and the residual keep their size), "QK-norm". Without it a growing residual
    # makes later reads ever sharper, whatever their temperature says.
    qk_norm: bool = False
    joint: bool = False  # one softmax over [slots; context] (all-attention, Sukhbaatar et al. 2019)
    # The slot banks' threshold (assoc and the swapped "MLP"; the slot columns of a joint
    # read), for open vocabularies: a query reads only the slots whose key it matches with
    # a score of at least ``min_score`` (cosine under ``qk_norm``, else q·k); a query that
    # matches none reads a null slot whose value is zero, i.e. nothing, instead of the mean
    # of all values. ``None``: every slot is read (today's reads, exactly).
    min_score: float | None = None

    def __post_init__(self) -> None:
        problems = []
        for name in ("layers", "readout_layer"):
            n = getattr(self, name)
            if n is not None and not 1 <= n <= MAX_LAYERS:
                problems.append(f"{name} must be between 1 and {MAX_LAYERS} (got {n})")
        for bank in BANKS:
            t = getattr(self, f"temp_{bank}")
            ts = t if isinstance(t, tuple) else (t,)
            if not ts or any(
                not isinstance(v, (int, float)) or not 0 < v < math.inf for v in ts
            ):  # inf would read every slot alike; NaN fails both comparisons
                problems.append(f"temp for the {bank} bank must be > 0 and finite (got {t!r})")
            elif isinstance(t, tuple) and len(t) < self.depth:
                problems.append(
                    f"temp for the {bank} bank lists {len(t)} layer(s), the model runs {self.depth}"
                )
        if self.min_score is not None and not (
            isinstance(self.min_score, (int, float)) and math.isfinite(self.min_score)
        ):
            problems.append(f"min_score must be a finite number (got {self.min_score!r})")
        for name, (_, choices) in field_kinds().items():
            if choices and getattr(self, name) not in choices:
                options = ", ".join(map(repr, choices))
                problems.append(f"{name} must be one of {options} (got {getattr(self, name)!r})")
        if problems:
            raise InputError("bad model settings: " + "; ".join(problems))

    @property
    def depth(self) -> int:
        """Layers actually run: enough for the readout layer."""
        return max(self.layers, self.readout_layer or 0)

    @property
    def readout_at(self) -> int:
        return self.readout_layer or self.layers

    @property
    def banks(self) -> tuple[str, ...]:
        """The reads of every layer, in order (their hook names' ``bank`` part)."""
        return JOINT_BANKS if self.joint else BANKS

    def temp(self, bank: str, layer: int) -> float:
        """The temperature of ``bank`` at ``layer`` (1-based)."""
        t = getattr(self, f"temp_{bank}")
        return float(t[layer - 1] if isinstance(t, tuple) else t)


@functools.cache
def field_kinds() -> dict[str, tuple[type, tuple[str, ...]]]:
    """``{field: (type, choices)}`` of every :class:`ModelConfig` field but the temperatures:
    the plain type a settings file gives (``int``, ``bool``, ``str``; ``int | None`` is
    ``int``) and, for a ``Literal``, its allowed values (else ``()``)."""
    hints = typing.get_type_hints(ModelConfig)
    out: dict[str, tuple[type, tuple[str, ...]]] = {}
    for f in fields(ModelConfig):
        if f.name.startswith("temp_"):
            continue
        hint = hints[f.name]
        if isinstance(hint, types.UnionType):  # X | None: the file gives X or leaves it out
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if typing.get_origin(hint) is Literal:
            choices = typing.get_args(hint)
            out[f.name] = (type(choices[0]), choices)
        else:
            out[f.name] = (hint, ())
    return out
