"""Associations from corpus statistics: normalised PMI of co-occurrence within a window.

The corpus is read once into one array of word ids (lemmas, when the caller lemmatises);
a pair's count is the number of times ``b`` occurs within ``window`` words of ``a`` in the
same paragraph, counted exactly for the words asked about. The score is the positive part
of the normalised PMI (Bouma 2009), which lies in [0, 1] whatever the corpus size::

    pmi(a, b)  = log( c(a, b) · N / (c(a) · c(b) · 2·window) )
    npmi(a, b) = pmi(a, b) / -log( c(a, b) / (N · 2·window) )

Pairs seen fewer than ``min_count`` times score 0 (one chance meeting says little).

    from assocmem.memories.cooccur import Cooccurrence
    co = Cooccurrence.from_paragraphs([["маша", "есть", "каша"], ...], window=5)
    print(co.graph(["маша", "каша", "есть"]))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from assocmem.errors import InputError
from assocmem.graph import Graph
from assocmem.memories import association_graph

__all__ = ["Cooccurrence"]


@dataclass(frozen=True)
class Cooccurrence:
    """A corpus as word positions: ``positions[w]`` sorted, paragraphs separated by more than
    ``window`` empty positions, so no window spans two paragraphs."""

    positions: dict[str, np.ndarray]
    n_words: int
    window: int = 5
    min_count: int = 2
    name: str = "corpus"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_paragraphs(
        cls,
        paragraphs: Iterable[Sequence[str]],
        *,
        window: int = 5,
        min_count: int = 2,
        name: str = "corpus",
    ) -> Cooccurrence:
        """Count the words of ``paragraphs`` (each a sequence of words, e.g. lemmas)."""
        if window < 1:
            raise InputError(f"window must be >= 1, got {window}")
        if min_count < 1:
            raise InputError(f"min_count must be >= 1, got {min_count}")
        where: dict[str, list[int]] = {}
        pos, n = 0, 0
        for para in paragraphs:
            for w in para:
                where.setdefault(w, []).append(pos)
                pos += 1
                n += 1
            pos += window + 1  # the gap: no window crosses a paragraph
        if n == 0:
            raise InputError(f"{name}: the corpus holds no words")
        positions = {w: np.asarray(p, dtype=np.int64) for w, p in where.items()}
        return cls(positions, n, window, min_count, name)

    def count(self, word: str) -> int:
        """How often ``word`` occurs."""
        p = self.positions.get(word)
        return 0 if p is None else len(p)

    def pair_count(self, a: str, b: str) -> int:
        """How many times ``b`` occurs within ``window`` words of an ``a`` (symmetric)."""
        key = (a, b) if a <= b else (b, a)
        if key not in self._cache:
            pa, pb = self.positions.get(a), self.positions.get(b)
            if pa is None or pb is None:
                c = 0
            else:
                lo = np.searchsorted(pb, pa - self.window, side="left")
                hi = np.searchsorted(pb, pa + self.window, side="right")
                c = int((hi - lo).sum()) - (
                    len(pa) if a == b else 0
                )  # a word is not its own neighbour
            self._cache[key] = c
        return self._cache[key]

    def npmi(self, a: str, b: str) -> float:
        """The positive normalised PMI of ``a`` and ``b`` (0 when rarer than ``min_count``)."""
        c = self.pair_count(a, b)
        if c < self.min_count:
            return 0.0
        pairs = self.n_words * 2 * self.window
        pmi = math.log(c * self.n_words / (self.count(a) * self.count(b) * 2 * self.window))
        return max(0.0, pmi / -math.log(c / pairs))

    def scores(self, words: Sequence[str]) -> torch.Tensor:
        """``(n, n)`` positive NPMI of every pair of ``words`` (0 on the diagonal)."""
        n = len(words)
        S = torch.zeros(n, n, dtype=torch.float64)  # (n, n)
        for i in range(n):
            for j in range(i + 1, n):
                S[i, j] = S[j, i] = self.npmi(words[i], words[j])
        return S

    def graph(
        self,
        words: Sequence[str],
        *,
        top_k: int = 2,
        threshold: float = 0.1,
        file: str = "<cooccur>",
    ) -> Graph | None:
        """Each word's ``top_k`` strongest co-occurring other ``words`` as one slot (None: no pair)."""
        return association_graph(
            list(words), self.scores(words), top_k=top_k, threshold=threshold, file=file
        )
