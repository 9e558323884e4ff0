"""SAEs on the learned language models (:class:`~assocmem.lm.memlm.MemLM`, the GPT
baseline): their text, activations taken through the hook names of :mod:`assocmem.lm.hooks`,
and the next-token loss with a hooked activation replaced (zeroed, or an SAE's reconstruction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from assocmem.errors import InputError

__all__ = ["LMRun", "load_lm", "windows", "activations", "spliced_loss", "score_lm_sae"]


@dataclass
class LMRun:
    """A trained checkpoint with its tokenizer and its text's train and validation ids."""

    model: torch.nn.Module
    tok: object
    meta: dict
    train_ids: torch.Tensor  # (n_train,)
    val_ids: torch.Tensor  # (n_val,)

    @property
    def name(self) -> str:
        return self.meta.get("model_kind", "model")


def load_lm(ckpt: str | Path) -> LMRun:
    """Load a checkpoint folder and re-read its training text (the path its config names)."""
    from assocmem.lm.data import load_text, split_ids
    from assocmem.lm.train import load_model

    model, tok, meta = load_model(ckpt)
    data = meta["config"]["data"]
    train_ids, val_ids = split_ids(tok.encode(load_text(data["path"])), data["train_frac"])[:2]
    return LMRun(model, tok, meta, train_ids, val_ids)


def windows(ids: torch.Tensor, T: int, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` random windows of ``T + 1`` tokens of ``ids``: ``(n, T + 1)`` (inputs and targets)."""
    if len(ids) <= T + 1:
        raise InputError(f"the text has {len(ids)} tokens, fewer than block_size + 2 = {T + 2}")
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(len(ids) - T - 1, (n,), generator=g)  # (n,)
    return torch.stack([ids[s : s + T + 1] for s in start.tolist()])  # (n, T+1)


def _check_hook(model: torch.nn.Module, hook: str) -> None:
    if hook not in model.hook_names:
        from assocmem.errors import did_you_mean

        raise InputError(f"unknown hook {hook!r}.{did_you_mean(hook, model.hook_names)}")


@torch.no_grad()
def activations(
    model: torch.nn.Module, win: torch.Tensor, hook: str, chunk: int = 64
) -> torch.Tensor:
    """The ``hook`` activation at every input position of ``win (n, T+1)``: ``(n·T, d)``."""
    _check_hook(model, hook)
    out = []
    for w in win.split(chunk):
        _, cache = model.run_with_cache(w[:, :-1], names_filter=lambda n: n == hook)
        out.append(cache[hook].reshape(-1, cache[hook].shape[-1]))  # (b·T, d)
    return torch.cat(out)


@torch.no_grad()
def spliced_loss(
    model: torch.nn.Module,
    win: torch.Tensor,
    hook: str,
    replace: Callable[[torch.Tensor], torch.Tensor] | None = None,
    chunk: int = 64,
) -> float:
    """Mean next-token cross-entropy over ``win (n, T+1)``, with the ``hook`` activation
    replaced by ``replace(activation)`` (None: the clean model)."""
    _check_hook(model, hook)
    hooks = {} if replace is None else {hook: lambda v, name: replace(v)}
    total = 0.0
    for w in win.split(chunk):
        _, loss = model.run_with_hooks(w[:, :-1], hooks, w[:, 1:])
        total += float(loss) * len(w)
    return total / len(win)


@torch.no_grad()
def score_lm_sae(run: LMRun, sae, hook: str, val_w: torch.Tensor) -> dict:
    """An SAE on ``run``'s ``hook``, scored on held-out windows ``val_w (n, T+1)``: explained
    variance, L0, dead fraction, and the loss recovered when its reconstruction is spliced in."""
    from assocmem.sae import metrics

    x = activations(run.model, val_w, hook)  # (N, d)
    x_hat, f = sae(x)  # (N, d), (N, w)
    ce_clean = spliced_loss(run.model, val_w, hook)
    ce_zero = spliced_loss(run.model, val_w, hook, torch.zeros_like)
    ce_sae = spliced_loss(run.model, val_w, hook, lambda v: sae(v)[0])
    return {
        "explained_variance": metrics.explained_variance(x, x_hat),
        "l0": metrics.l0(f),
        "dead_fraction": metrics.dead_fraction(f),
        "ce_clean": ce_clean,
        "ce_zero": ce_zero,
        "ce_sae": ce_sae,
        "loss_recovered": metrics.loss_recovered(ce_clean, ce_zero, ce_sae),
        "codes": f,
    }
