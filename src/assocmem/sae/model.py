"""Sparse autoencoders: TopK (Gao et al. 2024) and ReLU + L1 (Cunningham et al. 2023, arXiv 2309.08600).

``x ≈ x̂ = Σ_i f_i · d_i + b_dec`` with sparse codes ``f = act(W_enc (x/s − b_dec) + b_enc) ≥ 0``
and unit-norm decoder directions ``d_i`` (the rows of ``W_dec``, the "columns" of the
decoder matrix in the papers' notation). ``b_dec`` is also the pre-encoder bias (subtracted
before encoding). ``s`` is a fixed input scale set from the training data so that
``E‖x/s‖² = d_in``: one L1 coefficient then means the same on any model's residual stream.

``act`` is ``relu`` for ``kind="relu"`` and "keep the ``k`` largest pre-activations, then
relu" for ``kind="topk"``. Dead-latent tracking and the TopK auxiliary loss live in
:mod:`assocmem.sae.train`; :meth:`SAE.aux_loss` is the loss itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load, save

from assocmem.errors import InputError, write_atomic

__all__ = ["SAEConfig", "SAE", "save_sae", "load_sae"]

SAE_FILE, SAE_JSON = "sae.safetensors", "sae.json"


@dataclass(frozen=True)
class SAEConfig:
    """Shape and sparsity of a sparse autoencoder."""

    d_in: int
    width: int
    kind: Literal["topk", "relu"] = "topk"
    k: int = 8  # topk: active latents per input
    l1: float = 1e-3  # relu: L1 coefficient on the codes (decoder rows are unit-norm)
    aux_k: int = 0  # topk: dead latents the auxiliary loss uses (0: d_in // 2, Gao et al.)
    aux_coef: float = 1 / 32  # topk: weight of the auxiliary loss (Gao et al.)

    def __post_init__(self) -> None:
        problems = []
        if self.d_in < 1 or self.width < 1:
            problems.append(f"d_in and width must be >= 1 (got {self.d_in}, {self.width})")
        if self.kind not in ("topk", "relu"):
            problems.append(f"kind must be 'topk' or 'relu' (got {self.kind!r})")
        if self.kind == "topk" and not 1 <= self.k <= self.width:
            problems.append(f"k must lie in 1..width={self.width} (got {self.k})")
        if self.l1 < 0 or self.aux_coef < 0 or self.aux_k < 0:
            problems.append("l1, aux_coef and aux_k must be >= 0")
        if problems:
            raise InputError("bad SAE settings: " + "; ".join(problems))

    @property
    def aux_latents(self) -> int:
        return min(self.aux_k or max(self.d_in // 2, 1), self.width)


class SAE(nn.Module):
    """``forward(x (..., d)) -> (x̂ (..., d), codes (..., width))``."""

    def __init__(self, cfg: SAEConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed)
        W_dec = F.normalize(torch.randn(cfg.width, cfg.d_in, generator=g), dim=-1)  # (w, d)
        self.W_dec = nn.Parameter(W_dec)  # (w, d): unit rows, the feature directions
        self.W_enc = nn.Parameter(W_dec.clone())  # (w, d): starts as the decoder's transpose
        self.b_enc = nn.Parameter(torch.zeros(cfg.width))  # (w,)
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))  # (d,): also the pre-encoder bias
        self.register_buffer("scale", torch.ones(()))  # input scale s

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations ``(..., w)`` of raw inputs ``x (..., d)``."""
        return (x / self.scale - self.b_dec) @ self.W_enc.T + self.b_enc  # (..., w)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Codes ``(..., w)`` from pre-activations: relu, or relu of the top ``k``."""
        if self.cfg.kind == "relu":
            return F.relu(pre)  # (..., w)
        v, i = pre.topk(self.cfg.k, dim=-1)  # (..., k)
        return torch.zeros_like(pre).scatter(-1, i, F.relu(v))  # (..., w)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.pre_acts(x))  # (..., w)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return (f @ self.W_dec + self.b_dec) * self.scale  # (..., d)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.encode(x)  # (..., w)
        return self.decode(f), f

    def aux_loss(self, pre: torch.Tensor, err: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
        """Gao et al.'s AuxK loss: the top ``aux_k`` *dead* latents reconstruct the main
        reconstruction's error ``err (B, d)`` (in scaled units), normalised by its variance, so
        gradient reaches latents that no longer fire. ``pre (B, w)``; ``dead (w,)`` bool."""
        n = min(int(dead.sum()), self.cfg.aux_latents)
        if n == 0:
            return pre.new_zeros(())
        masked = pre.masked_fill(~dead, float("-inf"))  # (B, w): only dead latents compete
        v, i = masked.topk(n, dim=-1)  # (B, n)
        f = torch.zeros_like(pre).scatter(-1, i, F.relu(v))  # (B, w)
        e_hat = f @ self.W_dec  # (B, d): no bias, it reconstructs an error
        return (e_hat - err).pow(2).sum(-1).mean() / err.var(0).sum().clamp_min(1e-12)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Put every decoder row back on the unit sphere (after an optimiser step)."""
        self.W_dec.data = F.normalize(self.W_dec.data, dim=-1)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the gradient component along each decoder row (it would only change its norm)."""
        if self.W_dec.grad is not None:
            d = self.W_dec.data  # (w, d)
            self.W_dec.grad -= (self.W_dec.grad * d).sum(-1, keepdim=True) * d


def save_sae(sae: SAE, out_dir: str | Path, meta: dict | None = None) -> Path:
    """Write ``sae.safetensors`` and ``sae.json`` (config + ``meta``) atomically; return the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in sae.state_dict().items()}
    write_atomic(out / SAE_FILE, save(tensors))
    write_atomic(out / SAE_JSON, json.dumps({"config": asdict(sae.cfg), **(meta or {})}, indent=1))
    return out


def load_sae(path: str | Path) -> tuple[SAE, dict]:
    """``(SAE, meta)`` from a folder written by :func:`save_sae`."""
    p = Path(path)
    jp, wp = p / SAE_JSON, p / SAE_FILE
    if not jp.is_file() or not wp.is_file():
        raise InputError(
            f"no SAE at {str(p)!r}: expected a folder holding {SAE_JSON} and {SAE_FILE} "
            "(as written by `assocmem sae train`)."
        )
    try:
        doc = json.loads(jp.read_text())
        sae = SAE(SAEConfig(**doc["config"]))
        sae.load_state_dict(load(wp.read_bytes()))
    except (json.JSONDecodeError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise InputError(f"{str(p)!r} does not hold a readable SAE ({e}).") from None
    return sae.eval(), doc
