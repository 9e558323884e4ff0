"""How many random relations a hand-set memory of dimension ``d`` holds.

``n`` tokens, each the key of one relation whose value is a uniformly random token of the
same ``n``: ``K = E`` and ``V = E[values]``, one slot per relation. A read
``mem(E[i], K, V, temp)`` succeeds when, decoded against every token (``read · Eᵀ``), the
value token ``values[i]`` scores strictly highest (a tie fails). The capacity is the most
relations at which at least ``need`` (99 %) of the reads succeed, pooled over seeds, found
by doubling ``n`` and then bisecting.

Embeddings: ``onehot`` (``E = I``; ``n`` tokens need ``n`` dimensions, so the capacity is
at most ``d`` by construction) and ``random`` (unit-norm Gaussian rows, the distribution
of :func:`assocmem.embedding.make_embedding`'s ``random`` kind, drawn in one call here
since a million per-token generators would dominate the run).

The anchor is Ramsauer et al. 2020 ("Hopfield Networks is All You Need", Theorem 3):
:func:`hopfield_bound` evaluates their lower bound on the number of random patterns on a
sphere that one update retrieves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from assocmem.errors import InputError
from assocmem.primitive import mem

__all__ = ["CapacitySearch", "relations", "read_success", "capacity", "hopfield_bound"]

Kind = Literal["onehot", "random"]


@dataclass(frozen=True)
class CapacitySearch:
    """The search's settings: ``need`` of the reads must succeed; at most ``queries`` reads
    per seed are sampled (all of them when ``n`` is smaller); ``n`` stops at ``n_max``; reads
    go in chunks of at most ``chunk`` queries and ``scores`` query-slot scores."""

    need: float = 0.99
    queries: int = 1024
    n_max: int = 1 << 16
    chunk: int = 256
    scores: int = 1 << 24

    def __post_init__(self) -> None:
        if not 0 < self.need <= 1:
            raise InputError(f"need must be in (0, 1], got {self.need}")
        if min(self.queries, self.n_max, self.chunk, self.scores) < 1:
            raise InputError("queries, n_max, chunk and scores must be >= 1")


def relations(n: int, kind: Kind, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E, values)``: ``n`` token vectors ``(n, d)`` (float32) and each token's value ``(n,)``."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + n)
    values = torch.randint(n, (n,), generator=g)  # (n,)
    if kind == "onehot":
        if n > dim:
            raise InputError(f"{n} one-hot tokens need {n} dimensions; d is {dim}")
        return torch.eye(n), values  # (n, n): zero-padding to d changes no read
    if kind != "random":
        raise InputError(f"unknown embedding kind {kind!r}: expected 'onehot' or 'random'")
    E = torch.randn(n, dim, generator=g)  # (n, d)
    return E / E.norm(dim=-1, keepdim=True), values


def read_success(
    n: int, kind: Kind, dim: int, temp: float, seed: int, search: CapacitySearch
) -> tuple[int, int]:
    """``(successes, reads)`` for ``n`` relations under one seed."""
    E, values = relations(n, kind, dim, seed)
    V = E[values]  # (n, d)
    g = torch.Generator().manual_seed(seed)
    idx = (
        torch.randperm(n, generator=g)[: search.queries] if n > search.queries else torch.arange(n)
    )
    ok = 0
    for part in idx.split(max(1, min(search.chunk, search.scores // n))):
        R = mem(E[part], E, V, temp)  # (c, d)
        logits = R @ E.T  # (c, n)
        want = values[part]  # (c,)
        own = logits.gather(1, want[:, None]).squeeze(1)  # (c,)
        rival = logits.scatter(1, want[:, None], -math.inf).amax(1)  # (c,)
        ok += int((own > rival).sum())
    return ok, len(idx)


def _rate(n: int, kind: Kind, dim: int, temp: float, seeds: list[int], s: CapacitySearch) -> float:
    done = [read_success(n, kind, dim, temp, seed, s) for seed in seeds]
    return sum(k for k, _ in done) / sum(m for _, m in done)


def capacity(
    kind: Kind, dim: int, temp: float, seeds: list[int], search: CapacitySearch = CapacitySearch()
) -> tuple[int, bool]:
    """``(capacity, capped)``: the most relations at which ``search.need`` of the reads
    succeed (0 if not even one), and whether the search stopped at its ceiling (``d`` for
    one-hot, ``n_max`` for random): then the capacity is only a lower bound."""
    top = min(dim, search.n_max) if kind == "onehot" else search.n_max
    good, bad = 0, None
    n = 1
    while n <= top:  # doubling
        if _rate(n, kind, dim, temp, seeds, search) >= search.need:
            good, n = n, 2 * n
        else:
            bad = n
            break
    if bad is None:
        if good == top:
            return top, True
        bad = top + 1
        if _rate(top, kind, dim, temp, seeds, search) >= search.need:
            return top, True
    while bad - good > 1:  # bisection: good passes, bad fails
        mid = (good + bad) // 2
        if _rate(mid, kind, dim, temp, seeds, search) >= search.need:
            good = mid
        else:
            bad = mid
    return good, False


def _lambert_w0(x: float) -> float:
    """The upper branch of Lambert's W for ``x >= 0`` (Newton's method)."""
    w = math.log1p(x)
    for _ in range(100):
        step = (w * math.exp(w) - x) / (math.exp(w) * (w + 1))
        w -= step
        if abs(step) < 1e-14:
            break
    return w


def hopfield_bound(dim: int, beta: float, radius: float = 1.0, p: float = 0.01) -> float | None:
    """Ramsauer et al. 2020, Theorem 3, as we read it: patterns drawn uniformly on the sphere
    of ``radius`` ``M = K·sqrt(d-1)``, inverse temperature ``beta``, failure probability
    ``p``; ``a = 2/(d-1)·(1 + ln(2βK²p(d-1)))``, ``b = 2K²β/5``, ``c = b / W0(exp(a + ln b))``.
    When ``c >= (2/sqrt(p))^(4/(d-1))``, at least ``sqrt(p)·c^((d-1)/4)`` patterns are stored
    (retrieved by one update) with probability ``1 - p``; ``None`` when the condition fails."""
    if dim < 2:
        return None
    K2 = radius**2 / (dim - 1)
    a = 2 / (dim - 1) * (1 + math.log(2 * beta * K2 * p * (dim - 1)))
    b = 2 * K2 * beta / 5
    c = b / _lambert_w0(math.exp(a + math.log(b)))
    if c < (2 / math.sqrt(p)) ** (4 / (dim - 1)):
        return None
    return math.sqrt(p) * c ** ((dim - 1) / 4)
