"""Vocabulary and token embeddings for hand-set memories.

Two kinds:
- ``onehot``: ``d = len(vocab)``, token ``i`` is the unit vector ``e_i``; reads stay
  exactly interpretable (a logit is a weight).
- ``random``: unit-norm Gaussian vectors of any width ``d``. Each token's vector is
  seeded by ``(seed, token)`` alone, so adding a token to the vocabulary never
  changes the vectors of the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from assocmem.errors import InputError, did_you_mean

__all__ = ["Vocabulary", "Embedding", "EmbeddingKind", "make_embedding"]

EmbeddingKind = Literal["onehot", "random"]


@dataclass(frozen=True)
class Vocabulary:
    """An ordered set of tokens."""

    tokens: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.tokens)})
        if len(self.index) != len(self.tokens):
            raise InputError("a vocabulary holds each token once")

    @classmethod
    def from_tokens(cls, *groups: Iterable[str]) -> Vocabulary:
        """All tokens of ``groups``, deduplicated, in order of first appearance."""
        return cls(tuple(dict.fromkeys(t for g in groups for t in g)))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def ids(self, tokens: Sequence[str], *, where: str = "") -> torch.Tensor:
        """Token ids ``(n,)``; an unknown token raises with the nearest known ones."""
        unknown = [t for t in tokens if t not in self.index]
        if unknown:
            hints = " ".join(
                f"'{t}':{did_you_mean(t, self.tokens)}" for t in dict.fromkeys(unknown)
            )
            prefix = f"{where}: " if where else ""
            raise InputError(
                f"{prefix}unknown token(s) {', '.join(repr(t) for t in dict.fromkeys(unknown))}: "
                f"every token must appear in the graph or in a sentence. {hints}"
            )
        return torch.tensor([self.index[t] for t in tokens], dtype=torch.long)


def _token_seed(seed: int, token: str) -> int:
    digest = hashlib.sha256(f"{seed}\x00{token}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class Embedding:
    """Token vectors ``E`` of shape ``(len(vocab), d)``."""

    vocab: Vocabulary
    E: torch.Tensor  # (V, d)
    kind: EmbeddingKind = "onehot"
    seed: int = 0

    @property
    def dim(self) -> int:
        return self.E.shape[1]

    def __call__(self, tokens: Sequence[str], *, where: str = "") -> torch.Tensor:
        """The vectors of ``tokens``, shape ``(n, d)``."""
        return self.E[self.vocab.ids(tokens, where=where)]  # (n, d)

    def vector(self, terms: Iterable[tuple[str, float]]) -> torch.Tensor:
        """A weighted sum of token vectors ``sum w·E[token]``, shape ``(d,)``."""
        v = torch.zeros(self.dim, dtype=self.E.dtype)  # (d,)
        for token, w in terms:
            v = v + w * self.E[self.vocab.index[token]]
        return v

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Readout ``x · Eᵀ``: ``(..., d) -> (..., V)``."""
        return x @ self.E.T  # (..., V)


def make_embedding(
    vocab: Vocabulary,
    kind: EmbeddingKind = "onehot",
    dim: int = 64,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> Embedding:
    """Build token vectors for ``vocab``.

    Args:
        kind: ``"onehot"`` (``dim`` is ignored) or ``"random"`` (unit-norm, seeded).
        dim: the width of random embeddings.
        seed: seeds random embeddings; token vectors depend only on (seed, token).
        dtype: float64 by default: hand-set models are tiny and exactness helps reading them.
    """
    if kind == "onehot":
        E = torch.eye(len(vocab), dtype=dtype)  # (V, V)
    elif kind == "random":
        if dim < 1:
            raise InputError(f"embedding dim must be >= 1; got {dim}")
        rows = []
        for t in vocab.tokens:
            g = torch.Generator().manual_seed(_token_seed(seed, t))
            rows.append(torch.randn(dim, generator=g, dtype=torch.float64))
        E = torch.stack(rows) if rows else torch.zeros(0, dim, dtype=torch.float64)  # (V, d)
        E = (E / E.norm(dim=1, keepdim=True)).to(
            dtype
        )  # unit norm: a token reads itself with score 1/temp
    else:
        raise InputError(f"unknown embedding kind {kind!r}: expected 'onehot' or 'random'")
    return Embedding(vocab=vocab, E=E, kind=kind, seed=seed)
