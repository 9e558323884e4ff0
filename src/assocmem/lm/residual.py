"""What a read adds to the residual stream: plain ``x + f(x)``, LAuReL's learned forms, or a
PID controller on the stream. One module both learned models use (MemLM per read, GPT per
sublayer).

Kinds (``residual`` of :class:`ResidualSettings`), with ``x`` the stream before a read and
``y = f(x)`` the read's output::

    plain       x + y
    laurel-rw   β·x + α·y                          α, β learned scalars (start at 1: plain)
    laurel-lr   x + y + B·A·x                      A (r, d), B (d, r): rank r, B starts at 0
    laurel-pa   x + y + B·A·Σ_j γ_j x_j            x_j the stream at every earlier add (and now)
    pid         layer(u) + λP·e + λI·Σe + λD·Δe    e = f − u, per layer: f the embeddings
    p-only      layer(u) + λP·e                    NeuTRENO's α·(v0 − v), on the stream

LAuReL: Menghani et al. 2024 (arXiv 2411.07501); no official code. Its LR form is what Gemma
3n ships (``x + norm(W_right·W_left·x)``), without the norm here: B starts at zero, so every
learned form starts as the plain model and the tests can check that. PA mixes the earlier
states before the low-rank map (``h`` is linear, so ``Σ γ_j h(x_j) = h(Σ γ_j x_j)``: one
map per add instead of one per earlier state).

PIDformer: Nguyen et al. 2024 (arXiv 2402.15989), with the input as the reference; the
gains are fixed settings, as in the paper. P-only is the NeuTRENO form (Nguyen et al. 2023).
Each model's layer calls :meth:`Stream.add` for each of its reads and :meth:`Stream.control`
once at its end, so the hook ``layers.{l}.out`` sees the controlled stream.

Shapes: ``x, y, f, u (B, T, d)``; ``A (r, d)``, ``B (d, r)``; ``γ (k,)`` at the k-th add.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from assocmem.settings import Settings, setting

__all__ = ["ResidualKind", "ResidualSettings", "ResidualAdd", "Stream", "stream"]

ResidualKind = Literal["plain", "laurel-rw", "laurel-lr", "laurel-pa", "pid", "p-only"]
LAUREL = ("laurel-rw", "laurel-lr", "laurel-pa")
PID = ("pid", "p-only")


@dataclass(frozen=True)
class ResidualSettings(Settings):
    """The residual keys every learned model's config carries (derived, not restated)."""

    # how each read's output joins the stream: "plain" x + f(x); LAuReL "laurel-rw", "laurel-lr",
    # "laurel-pa"; "pid", "p-only" (PIDformer, NeuTRENO); docs/learned.md, "Residuals"
    residual: ResidualKind = "plain"
    laurel_rank: int = setting(
        4, ge=1
    )  # laurel-lr / -pa: rank r of B·A (r = 4: 2·d·r = 1k params per add at d = 128)
    pid_p: float = setting(
        0.1
    )  # pid / p-only (p-only ignores pid_i, pid_d): λP, a 10 % pull towards the embeddings per layer
    pid_i: float = setting(0.01)  # pid: λI on the errors summed over the layers so far
    pid_d: float = setting(0.05)  # pid: λD on the change of the error since the last layer


class Stream:
    """What one forward pass carries from add to add: the reference ``f`` (PID), the states
    seen so far (PA), the summed and the last error (PID)."""

    def __init__(self, cfg: ResidualSettings, f: torch.Tensor):
        self.cfg = cfg
        self.f = f  # (B, T, d): the embeddings, PID's reference
        self.states: list[torch.Tensor] = []  # laurel-pa: the stream at every add so far
        self.integral: torch.Tensor | None = None  # (B, T, d): Σ e over the layers so far
        self.last_error: torch.Tensor | None = None  # (B, T, d): e at the previous layer

    def add(self, res: ResidualAdd | None, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The stream after a read: ``x + y`` generalised by ``res`` (None: plain)."""
        if res is None:
            return x + y  # (B, T, d)
        return res(x, y, self)

    def control(self, u_in: torch.Tensor, u_out: torch.Tensor) -> torch.Tensor:
        """PID at a layer's end: ``u_out`` plus the gains times the error ``e = f − u_in``."""
        c = self.cfg
        if c.residual not in PID:
            return u_out
        e = self.f - u_in  # (B, T, d): how far the layer's input has drifted from the embeddings
        out = u_out + c.pid_p * e  # (B, T, d)
        if c.residual == "pid":
            self.integral = e if self.integral is None else self.integral + e  # (B, T, d)
            out = out + c.pid_i * self.integral  # (B, T, d)
            if self.last_error is not None:
                out = out + c.pid_d * (e - self.last_error)  # (B, T, d)
            self.last_error = e
        return out


def stream(cfg: ResidualSettings, f: torch.Tensor) -> Stream | None:
    """The :class:`Stream` of one forward pass whose embeddings are ``f (B, T, d)``; None for
    the plain residual, whose adds the layers make directly (their fast path)."""
    return None if cfg.residual == "plain" else Stream(cfg, f)


class ResidualAdd(nn.Module):
    """The learned parameters of one residual add (LAuReL): the ``index``-th add of the model.
    Plain and PID adds have none: a layer holds ``None`` for them (:func:`adds`)."""

    def __init__(self, cfg: ResidualSettings, d: int, index: int):
        super().__init__()
        self.kind = cfg.residual
        if self.kind == "laurel-rw":
            self.alpha = nn.Parameter(torch.ones(()))  # on the read's output
            self.beta = nn.Parameter(torch.ones(()))  # on the stream
        else:  # lr, pa: B starts at zero, so the add starts as plain; A as a random projection
            r = cfg.laurel_rank
            self.A = nn.Parameter(torch.randn(r, d) / d**0.5)  # (r, d)
            self.B = nn.Parameter(torch.zeros(d, r))  # (d, r)
        if self.kind == "laurel-pa":  # one weight per state so far: x_0 .. x_index, uniform
            self.gamma = nn.Parameter(torch.full((index + 1,), 1.0 / (index + 1)))  # (k,)

    def forward(self, x: torch.Tensor, y: torch.Tensor, s: Stream) -> torch.Tensor:
        if self.kind == "laurel-rw":
            return self.beta * x + self.alpha * y  # (B, T, d)
        src = x
        if self.kind == "laurel-pa":
            s.states.append(x)
            src = torch.einsum("k,kbtd->btd", self.gamma, torch.stack(s.states))  # (B, T, d)
        return x + y + (src @ self.A.T) @ self.B.T  # (B, T, d): rank-r correction


def adds(cfg: ResidualSettings, d: int, first: int, n: int) -> nn.ModuleList | None:
    """The ``n`` adds of one layer whose first add is the model's ``first``-th (None: no
    learned parameters, plain or PID)."""
    if cfg.residual not in LAUREL:
        return None
    return nn.ModuleList(ResidualAdd(cfg, d, first + i) for i in range(n))
