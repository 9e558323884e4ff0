"""Continual learning for the language models: a second task after a first one.

A run continues an earlier run (``[continual] init_from``: its weights and tokenizer) on a
new text (``[data] path``). What keeps the first task from being forgotten:

- ``replay = "real"``: a fixed budget of the earlier task's training tokens (``prev_path``,
  its first ``replay_tokens`` train tokens) mixed into every batch, or every ``replay_every``-th (``replay_frac`` of its
  windows). Stores the earlier data; the upper reference.
- ``replay = "self"``: ReCL's idea (arXiv 2411.06916) for a language model: the earlier
  task's data reconstructed from the model itself, here by sampling ``replay_tokens``
  tokens from the ``init_from`` model (no earlier text is stored or read), mixed in the same way.
- ``grow_slots = N``: a MemLM gets N new slots per bank for the new task; the old slots stay
  frozen (bit-identical: they leave the optimiser, so no weight decay either) and every other
  weight is frozen too or slowed by ``frozen_lr``.

Without ``init_from``, ``replay = "real"`` with ``replay_tokens = 0`` trains on both texts
at once (the joint-training ceiling).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from assocmem.errors import InputError
from assocmem.lm.data import get_batch
from assocmem.lm.sampling import generate
from assocmem.settings import Problem, Settings, setting

__all__ = [
    "ContinualConfig",
    "GROWN",
    "real_replay",
    "start_token",
    "sample_replay",
    "mixed_batch",
    "freeze_for_growth",
]

GROWN = ("K_new", "V_new")  # the parameter names of a bank's grown slots (lm/memlm.py)


def _optional_path(text: str) -> str | None:
    """a path, or empty for none"""
    return "must not hold a NUL character" if "\0" in text else None


@dataclass(frozen=True)
class ContinualConfig(Settings):
    init_from: str = setting(
        "", check=_optional_path
    )  # an earlier run's folder: start from its weights and tokenizer ("" : a fresh model)
    prev_path: str = setting(
        "", check=_optional_path
    )  # the earlier task's text: its val loss is logged; replay = "real" draws from its train split
    replay: Literal["none", "real", "self"] = (
        "none"  # "real": stored earlier tokens; "self": sampled from the init_from model
    )
    replay_tokens: int = setting(
        16384, ge=0
    )  # replay's budget of tokens ("real": the first ones of prev_path's train split, 0 = all)
    replay_frac: float = setting(0.25, ge=0, lt=1)  # share of each batch's windows from the replay
    # mix the replay into every k-th batch only (the others are the new text alone): a share
    # below one window per batch, round(replay_frac·batch_size) / (replay_every·batch_size)
    replay_every: int = setting(1, ge=1)
    grow_slots: int = setting(0, ge=0)  # MemLM: new slots per bank, the old slots frozen
    frozen_lr: float = setting(
        0.0, ge=0, le=1
    )  # with grow_slots: lr factor of every weight but the new slots (0: frozen)

    def relations(self):
        if self.replay == "self" and not self.init_from:
            yield Problem(("replay",), "is 'self', which samples from the init_from model, but init_from is empty",
                          "Set init_from to the earlier run's folder.")  # fmt: skip
        if self.replay == "self" and self.replay_tokens == 0:
            yield Problem(
                ("replay_tokens",), "must be > 0 for replay = 'self' (the tokens to sample)"
            )
        if self.replay == "real" and not self.prev_path:
            yield Problem(("replay",), "is 'real', which draws from the earlier text, but prev_path is empty",
                          "Set prev_path to the earlier task's text file.")  # fmt: skip
        if self.replay != "none" and self.replay_frac == 0:
            yield Problem(("replay_frac",), f"is 0, so replay = {self.replay!r} would never be read",
                          "e.g. replay_frac = 0.25.")  # fmt: skip
        if self.grow_slots and not self.init_from:
            yield Problem(("grow_slots",), "adds slots to an earlier run's model, but init_from is empty",
                          "Set init_from to the earlier run's folder.")  # fmt: skip
        if self.frozen_lr and not self.grow_slots:
            yield Problem(("frozen_lr",), "applies with grow_slots only", "Set grow_slots too.")


def real_replay(prev_train: torch.Tensor, budget: int) -> torch.Tensor:
    """The stored replay: the first ``budget`` tokens of the earlier task's train split (0: all)."""
    return prev_train if budget == 0 else prev_train[:budget]  # (n,)


def start_token(tok) -> int:
    """The token self-replay streams open with: a newline, else a space, else token 0 (the
    tokenizer's own vocabulary; no text of the earlier task)."""
    for text in ("\n", " "):
        try:
            return tok.encode(text)[0]
        except (InputError, IndexError):
            continue
    return 0


@torch.no_grad()
def sample_replay(
    model: nn.Module, start: int, n_tokens: int, gen: torch.Generator, batch: int = 64
) -> torch.Tensor:
    """Self-replay: ``n_tokens`` tokens sampled from ``model`` alone (temperature 1, no top-k),
    as streams of ``2 * block_size`` tokens each opened by the token ``start`` (e.g. a
    newline), concatenated. Nothing but the model and this one token id is read."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    length = 2 * model.config.block_size
    n_seqs = math.ceil(n_tokens / length)
    out = []
    for i in range(0, n_seqs, batch):
        idx = torch.full((min(batch, n_seqs - i), 1), start, dtype=torch.long, device=device)
        idx = generate(model, idx, length - 1, temperature=1.0, top_k=None, gen=gen)  # (b, length)
        out.append(idx.cpu().reshape(-1))  # (b * length,)
    model.train(was)
    return torch.cat(out)[:n_tokens]  # (n_tokens,)


def mixed_batch(
    data: torch.Tensor,
    replay: torch.Tensor | None,
    block: int,
    batch: int,
    frac: float,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` windows: ``round(frac * batch)`` from ``replay``, the rest from ``data``, in
    an order shuffled by ``gen`` (so each torchrun slice gets its share). Without a replay
    this is :func:`~assocmem.lm.data.get_batch` itself (the same draws from ``gen``)."""
    n_rep = 0 if replay is None else round(frac * batch)
    if n_rep == 0:
        return get_batch(data, block, batch, gen)
    xm, ym = get_batch(data, block, batch - n_rep, gen)  # (B - r, T) each
    xr, yr = get_batch(replay, block, n_rep, gen)  # (r, T) each
    order = torch.randperm(batch, generator=gen)  # (B,)
    return torch.cat([xm, xr])[order], torch.cat([ym, yr])[order]  # (B, T) each


def freeze_for_growth(model: nn.Module, frozen_lr: float) -> Callable[[str], float]:
    """Slot growth's training rule on ``model`` (a MemLM with grown slots): the grown slots
    train at the full rate; the old slots are frozen (``requires_grad`` off, so they leave the
    optimiser and its weight decay); every other weight is frozen too when ``frozen_lr`` is 0,
    else trains at ``frozen_lr`` times the rate. Returns the lr factor of each parameter name."""
    grown = [n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1] in GROWN]
    if not grown:
        raise ValueError("the model has no grown slots (MemLMConfig.n_grown = 0)")
    old_slots = {n.rsplit(".", 1)[0] + "." + k for n in grown for k in ("K", "V")}
    for n, p in model.named_parameters():
        if n.rsplit(".", 1)[-1] in GROWN:
            continue
        if n in old_slots or frozen_lr == 0:
            p.requires_grad_(False)

    def scale(name: str) -> float:
        return 1.0 if name.rsplit(".", 1)[-1] in GROWN else frozen_lr

    return scale
