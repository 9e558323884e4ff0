"""Compile a relation graph against an embedding into a memory, and check it.

Stage 1 (:mod:`assocmem.graph`) parses text into slots; this stage turns each slot
into one key row and one value row::

    key_i   = Σ w·E[token]   over the slot's key terms
    value_i = Σ w·E[token]   over the slot's value terms

:func:`check_memory` then validates the compiled memory the way tracr validates a
compiled program: every key, read at the chosen temperature, must return a vector
whose nearest tokens are exactly its value's tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from assocmem.embedding import Embedding
from assocmem.errors import InputError
from assocmem.graph import Graph, Slot
from assocmem.primitive import mem

__all__ = ["Memory", "compile_graph", "SlotCheck", "check_memory"]


@dataclass(frozen=True)
class Memory:
    """A compiled associative memory: ``K`` and ``V`` of shape ``(m, d)``, one row per slot."""

    K: torch.Tensor  # (m, d)
    V: torch.Tensor  # (m, d)
    slots: tuple[Slot, ...]

    @property
    def labels(self) -> list[str]:
        """Row names: the text of each slot, ``KEY = VALUE``."""
        return [str(s) for s in self.slots]

    def __len__(self) -> int:
        return self.K.shape[0]

    def scored(self, qk_norm: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K, V)`` as reads score them when they are the keys: unit rows under
        ``qk_norm`` (cosine reads; ``V`` is the key of the swapped "MLP" read), else as is."""
        if not qk_norm:
            return self.K, self.V
        return F.normalize(self.K, dim=-1), F.normalize(self.V, dim=-1)  # (m, d) each


def compile_graph(graph: Graph, embedding: Embedding) -> Memory:
    """Turn every slot of ``graph`` into a (key, value) row over ``embedding``.

    Every graph token must be in the embedding's vocabulary; the error lists all
    that are not.
    """
    missing = [t for t in graph.tokens if t not in embedding.vocab]
    if missing:
        raise InputError(f"{graph.file}: tokens not in the vocabulary: {', '.join(missing)}")
    K = torch.stack(
        [embedding.vector((t.token, t.weight) for t in s.key) for s in graph.slots]
    )  # (m, d)
    V = torch.stack(
        [embedding.vector((t.token, t.weight) for t in s.value) for s in graph.slots]
    )  # (m, d)
    finite = torch.isfinite(K).all(dim=-1) & torch.isfinite(V).all(dim=-1)  # (m,)
    if not finite.all():
        slot = graph.slots[int((~finite).nonzero()[0])]
        raise InputError(
            f"{slot.file}:{slot.line}: the slot '{slot}' compiles to numbers too large for "
            f"{K.dtype} (inf). Hint: keep weights well below {torch.finfo(K.dtype).max:.3g}"
        )
    return Memory(K=K, V=V, slots=graph.slots)


@dataclass(frozen=True)
class SlotCheck:
    """The result of reading one slot's own key back."""

    slot: Slot
    expected: tuple[str, ...]  # the value's tokens (positive weights)
    got: tuple[str, ...]  # the same number of nearest tokens to the read
    self_weight: float  # the read weight on the slot itself
    interference: tuple[tuple[Slot, float], ...]  # other slots read with weight >= threshold
    margin: float = float("nan")  # > 0 when it reads back: see check_memory

    @property
    def ok(self) -> bool:
        """It reads back exactly its value's tokens, and not by a tie (a tie's winner is
        the vocabulary's order, not the memory's)."""
        return set(self.expected) == set(self.got) and not self.margin <= 0


def check_memory(
    memory: Memory,
    embedding: Embedding,
    temp: float = 1.0,
    *,
    threshold: float = 0.05,
    qk_norm: bool = False,
) -> list[SlotCheck]:
    """Read every key of ``memory`` at ``temp`` and compare with its value's tokens.

    A slot passes when the ``k`` tokens nearest (by dot product) to its read are
    exactly the ``k`` tokens of its value with positive weight; a value with none
    (``THE = 0*THE``) passes when no token's logit reaches ``threshold`` (the tokens
    are unit vectors: a read of weight ``threshold`` on one). Slots read with a
    weight of at least ``threshold`` alongside it are reported as interference.
    ``qk_norm`` scores by cosine, as a model with ``ModelConfig.qk_norm`` reads.
    Each result's ``margin`` is how far the read is from failing: the weakest expected
    token's logit minus the strongest other token's (for an empty value, ``threshold``
    minus the strongest logit); positive when the slot passes without a tie.
    """
    K = memory.scored(qk_norm)[0]  # (m, d), unit rows for cosine reads
    R, W = mem(K, K, memory.V, temp, return_weights=True)  # (m, d), (m, m)
    logits = embedding.logits(R)  # (m, V)
    finite = torch.isfinite(W).all(dim=-1) & torch.isfinite(logits).all(dim=-1)  # (m,)
    if not finite.all():
        slot = memory.slots[int((~finite).nonzero()[0])]
        raise InputError(
            f"{slot.file}:{slot.line}: reading the slot '{slot}' back overflowed (inf or NaN "
            f"at temp {temp:g}). Hint: keep the graph's weights small"
        )
    results = []
    for i, slot in enumerate(memory.slots):
        expected = tuple(dict.fromkeys(t.token for t in slot.value if t.weight > 0))
        k = max(len(expected), 1)
        top = logits[i].topk(min(k, logits.shape[1])).indices.tolist()
        if not expected:  # an empty value: the tokens read back by at least `threshold`
            top = [j for j in top if logits[i, j] >= threshold]
        got = tuple(embedding.vocab.tokens[j] for j in top)
        others = [
            (memory.slots[j], float(W[i, j]))
            for j in range(len(memory))
            if j != i and W[i, j] >= threshold
        ]
        others.sort(key=lambda sw: -sw[1])
        margin = _margin(logits[i], [embedding.vocab.index[t] for t in expected], threshold)
        results.append(SlotCheck(slot, expected, got, float(W[i, i]), tuple(others), margin))
    return results


def _margin(logits: torch.Tensor, expected: list[int], threshold: float) -> float:
    """The weakest expected logit minus the strongest other one (``threshold`` stands in
    for the expected side of an empty value; ``-inf`` on the other side when none is left)."""
    others = torch.ones_like(logits, dtype=torch.bool)  # (V,)
    others[expected] = False
    rival = float(logits[others].max()) if others.any() else -math.inf
    own = float(logits[expected].min()) if expected else threshold
    return own - rival
