"""Train a sparse autoencoder on a table of activations ``(N, d)``.

Adam on ``‖x − x̂‖² / Var(x)`` (normalised MSE) plus, for ``relu``, ``l1 · Σ f_i`` and, for
``topk``, Gao et al.'s auxiliary loss on the dead latents. After every step the decoder rows
go back to unit norm (and the gradient along them is removed before it). A latent is *dead*
once it has not fired on ``dead_tokens`` consecutive training inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from assocmem.errors import InputError
from assocmem.sae.model import SAE, SAEConfig

__all__ = ["SAETrainConfig", "SAEHistory", "train_sae"]


@dataclass(frozen=True)
class SAETrainConfig:
    steps: int = 2000
    batch_size: int = 512
    lr: float = 1e-3
    dead_tokens: int = 20_000  # a latent silent on this many consecutive inputs is dead
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0 or self.dead_tokens < 1:
            raise InputError(
                "bad SAE training settings: steps, batch_size and dead_tokens must be >= 1 and "
                f"lr > 0 (got {self.steps}, {self.batch_size}, {self.dead_tokens}, {self.lr})"
            )


@dataclass
class SAEHistory:
    """Losses every step and the dead fraction at the end of training."""

    mse: list[float] = field(default_factory=list)  # normalised MSE
    aux: list[float] = field(default_factory=list)
    dead_fraction: float = 0.0


def train_sae(
    acts: torch.Tensor,
    cfg: SAEConfig,
    tc: SAETrainConfig = SAETrainConfig(),
    progress: bool = False,
) -> tuple[SAE, SAEHistory]:
    """Fit an :class:`SAE` of ``cfg`` to ``acts (N, d_in)``; returns it in eval mode and its history."""
    if acts.ndim != 2 or acts.shape[1] != cfg.d_in or len(acts) < 2:
        raise InputError(f"activations must be (N >= 2, d_in={cfg.d_in}); got {tuple(acts.shape)}")
    acts = acts.float()
    sae = SAE(cfg, seed=tc.seed)
    with torch.no_grad():
        sae.scale.fill_(float(acts.pow(2).sum(-1).mean().div(cfg.d_in).sqrt().clamp_min(1e-12)))
        sae.b_dec.copy_(acts.mean(0) / sae.scale)  # the data's centre (a cheap geometric median)
    var = (acts / sae.scale).var(0).sum().clamp_min(1e-12)  # scalar, scaled units
    opt = torch.optim.Adam(sae.parameters(), lr=tc.lr)
    gen = torch.Generator().manual_seed(tc.seed)
    since_fired = torch.zeros(cfg.width, dtype=torch.long)  # (w,) inputs since the last firing
    hist = SAEHistory()
    for _ in tqdm(range(tc.steps), disable=not progress, desc=f"sae {cfg.kind}", leave=False):
        x = acts[torch.randint(len(acts), (tc.batch_size,), generator=gen)]  # (B, d)
        pre = sae.pre_acts(x)  # (B, w)
        f = sae.activate(pre)  # (B, w)
        x_hat = sae.decode(f)  # (B, d)
        err = (x - x_hat) / sae.scale  # (B, d) scaled units
        mse = err.pow(2).sum(-1).mean() / var
        loss = mse
        if cfg.kind == "relu":
            loss = loss + cfg.l1 * f.sum(-1).mean()
        fired = (f > 0).any(0)  # (w,)
        since_fired = torch.where(fired, 0, since_fired + tc.batch_size)
        aux = torch.zeros(())
        if cfg.kind == "topk":
            aux = sae.aux_loss(pre, err.detach(), since_fired >= tc.dead_tokens)
            loss = loss + cfg.aux_coef * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_grad()
        opt.step()
        sae.normalize_decoder()
        hist.mse.append(float(mse.detach()))
        hist.aux.append(float(aux.detach()))
    hist.dead_fraction = float((since_fired >= tc.dead_tokens).float().mean())
    return sae.eval(), hist
