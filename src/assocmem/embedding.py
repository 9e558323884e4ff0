"""Vocabulary and token embeddings for hand-set memories.

Three kinds:
- ``onehot``: ``d = len(vocab)``, token ``i`` is the unit vector ``e_i``; reads stay
  exactly interpretable (a logit is a weight). A token with no slot (an open
  vocabulary) gets its own dimension, orthogonal to every other token.
- ``random``: unit-norm Gaussian vectors of any width ``d``. Each token's vector is
  seeded by ``(seed, token)`` alone, so adding a token to the vocabulary never
  changes the vectors of the others.
- ``vectors``: given vectors (pretrained word vectors, from Python:
  ``make_embedding(vocab, "vectors", vectors={token: tensor})``), scaled to unit norm;
  a token with no vector gets a seeded random one of the same width.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from assocmem.errors import InputError, did_you_mean

__all__ = ["Vocabulary", "Embedding", "EmbeddingKind", "EMBEDDING_KINDS", "make_embedding"]

EmbeddingKind = Literal["onehot", "random", "vectors"]
EMBEDDING_KINDS: tuple[str, ...] = ("onehot", "random", "vectors")


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


def _random_rows(tokens: Iterable[str], dim: int, seed: int) -> list[torch.Tensor]:
    """Unit-norm Gaussian vectors ``(dim,)``, each seeded by ``(seed, token)`` alone."""
    rows = []
    for t in tokens:
        g = torch.Generator().manual_seed(_token_seed(seed, t))
        v = torch.randn(dim, generator=g, dtype=torch.float64)  # (d,)
        rows.append(v / v.norm())  # unit norm: a token reads itself with score 1/temp
    return rows


def make_embedding(
    vocab: Vocabulary,
    kind: EmbeddingKind = "onehot",
    dim: int = 64,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    *,
    vectors: Mapping[str, torch.Tensor] | None = None,
) -> Embedding:
    """Build token vectors for ``vocab``.

    Args:
        kind: ``"onehot"`` (``dim`` is ignored), ``"random"`` (unit-norm, seeded) or
            ``"vectors"`` (``vectors`` scaled to unit norm; their width replaces ``dim``).
        dim: the width of random embeddings.
        seed: seeds random embeddings; token vectors depend only on (seed, token).
        dtype: float64 by default: hand-set models are tiny and exactness helps reading them.
        vectors: for ``"vectors"``: ``{token: (d,)}``, any mapping (``in`` and ``[]``); a
            token it lacks gets a seeded random vector.
    """
    if kind == "onehot":
        E = torch.eye(len(vocab), dtype=dtype)  # (V, V)
    elif kind == "random":
        if dim < 1:
            raise InputError(f"embedding dim must be >= 1; got {dim}")
        rows = _random_rows(vocab.tokens, dim, seed)
        E = (torch.stack(rows) if rows else torch.zeros(0, dim, dtype=torch.float64)).to(dtype)
    elif kind == "vectors":
        if vectors is None:
            raise InputError('embedding "vectors" needs vectors={token: tensor}')
        found = {t: torch.as_tensor(vectors[t], dtype=torch.float64) for t in vocab.tokens
                 if t in vectors}  # fmt: skip
        widths = {v.shape for v in found.values()}
        if len(widths) > 1 or any(len(w) != 1 for w in widths):
            raise InputError(
                f"the given vectors must all have one shape (d,); got {sorted(widths)}"
            )
        d = next(iter(widths))[0] if widths else dim
        rand = dict(zip([t for t in vocab.tokens if t not in found],
                        _random_rows((t for t in vocab.tokens if t not in found), d, seed),
                        strict=True))  # fmt: skip
        rows = [found[t] / found[t].norm().clamp_min(1e-12) if t in found else rand[t]
                for t in vocab.tokens]  # fmt: skip
        E = (torch.stack(rows) if rows else torch.zeros(0, d, dtype=torch.float64)).to(
            dtype
        )  # (V, d)
    else:
        raise InputError(
            f"unknown embedding kind {kind!r}: expected {', '.join(map(repr, EMBEDDING_KINDS))}"
        )
    return Embedding(vocab=vocab, E=E, kind=kind, seed=seed)
