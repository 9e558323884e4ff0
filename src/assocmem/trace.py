"""The trace of one run: every read's weights, residuals and logit lens, by hook name.

A :class:`Trace` is a thin view over the activation cache of
:meth:`assocmem.model.MemTransformer.run_with_cache` that knows what the rows and
columns of each read mean (tokens, slots), for tables, figures and JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from assocmem.config import ModelConfig

__all__ = ["Trace"]


@dataclass
class Trace:
    """Activations of one sentence, keyed by hook name (see :mod:`assocmem.model`)."""

    cache: dict[str, torch.Tensor]
    tokens: list[str]  # the input, probe included (the last)
    vocab: list[str]  # readout columns
    slots: list[str]  # memory rows, as "KEY = VALUE"
    config: ModelConfig

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.cache[name]

    def __contains__(self, name: str) -> bool:
        return name in self.cache

    def keys(self) -> list[str]:
        return list(self.cache)

    @property
    def layers(self) -> list[int]:
        return list(range(1, self.config.depth + 1))

    @property
    def banks(self) -> list[str]:
        return list(self.config.banks)

    def weights(self, layer: int, bank: str) -> torch.Tensor:
        """Read weights of ``bank`` at ``layer``: ``(n, columns)`` for the first sentence."""
        w = self.cache[f"layers.{layer}.{bank}.weights"]
        return w.reshape(-1, *w.shape[-2:])[0]  # (n, m)

    def columns(self, bank: str) -> list[str]:
        """What each weight column is: memory slots (``assoc``; the swapped memory
        for ``mlp``), earlier tokens (``context``), or both (``joint``)."""
        if bank == "context":
            return list(self.tokens)
        if bank == "mlp":  # the same slots read the other way round
            return [" = ".join(reversed(s.split(" = ", 1))) for s in self.slots]
        if bank == "joint":
            return [*self.slots, *self.tokens]
        return list(self.slots)

    def readable(self, bank: str, position: int) -> list[int]:
        """The columns that position ``position`` may read in ``bank`` (context is causal)."""
        m = len(self.slots)
        last = position + 1 if self.config.context_self else position
        if bank == "context":
            return list(range(last))
        if bank == "joint":
            return list(range(m)) + [m + j for j in range(last)]
        return list(range(m))

    def points(self) -> list[str]:
        """Logit-lens points in computation order: ``embed``, then every read of every layer."""
        return ["embed"] + [f"layers.{layer}.{b}" for layer in self.layers for b in self.banks]

    def logit_lens(self, position: int = -1) -> list[tuple[str, torch.Tensor]]:
        """``[(point, logits (V,))]`` of the token at ``position`` after every read."""
        out = []
        for p in self.points():
            lg = self.cache[f"{p}.logits"]
            out.append((p, lg.reshape(-1, *lg.shape[-2:])[0, position]))  # (V,)
        return out

    def attention(self, digits: int = 4) -> dict[str, dict[str, list[list[float]]]]:
        """``{"<layer>": {"<bank>": weights as nested lists}}`` for JSON output."""
        return {
            str(layer): {
                b: [[round(float(v), digits) for v in row] for row in self.weights(layer, b)]
                for b in self.banks
            }
            for layer in self.layers
        }
