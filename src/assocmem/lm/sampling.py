"""Sampling text from a trained language model (``assocmem sample``, self-replay)."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["generate"]


@torch.no_grad()
def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 200,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend ``idx`` ``(B, T0)`` by sampling ``max_new_tokens`` tokens; returns ``(B, T0 + max_new_tokens)``.
    ``top_k=None``: every token; ``gen``: a CPU generator, whatever the model's device (the
    draws are made on the CPU, so a seed gives the same text on every device)."""
    block = model.config.block_size
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -block:])  # (B, t, V)
        logits = logits[:, -1, :].float() / temperature  # (B, V)
        if top_k is not None:
            v, _ = torch.topk(logits, min(top_k, logits.size(-1)))  # (B, k)
            logits[logits < v[:, [-1]]] = -float("inf")
        probs = torch.softmax(logits, dim=-1).cpu()  # (B, V)
        nxt = torch.multinomial(probs, 1, generator=gen).to(idx.device)  # (B, 1)
        idx = torch.cat([idx, nxt], dim=1)  # (B, t+1)
    return idx
