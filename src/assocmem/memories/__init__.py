"""Memories built from data: word associations turned into a relation graph.

Three sources of associations, one shape of result. Each source scores how strongly each
word of a list calls up each other word (an ``(n, n)`` matrix, :class:`Associations`);
:func:`association_graph` keeps, for every word, its strongest partners as one slot::

    КУБОК = 0.41*ЧЕМОДАН + 0.22*БОЛЬШОЙ

The result is a :class:`~assocmem.graph.Graph`: ``str(graph)`` is a ``.graph`` file a person
can read, edit and ``assocmem check``; :func:`~assocmem.compiler.compile_graph` makes it a
:class:`~assocmem.compiler.Memory`.

- :mod:`assocmem.memories.vectors`: cosine similarity of pretrained word vectors (navec);
- :mod:`assocmem.memories.cooccur`: positive PMI of co-occurrence within a window of a corpus;
- :mod:`assocmem.memories.learned`: the slots of a trained MemLM, as ``assocmem inspect`` spells them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from assocmem.errors import InputError, write_atomic
from assocmem.graph import Graph, Slot, Term, parse_graph

__all__ = ["Associations", "association_graph", "graph_token", "write_graph"]

_NOT_IN_A_TOKEN = set("=+*#")


class Associations(Protocol):
    """A source of word associations."""

    def scores(self, words: Sequence[str]) -> torch.Tensor:
        """``(n, n)``: how strongly ``words[i]`` calls up ``words[j]`` (0: not at all or unknown)."""
        ...


def graph_token(word: str) -> bool:
    """Whether ``word`` can stand as a token of the graph language (no space, no operator,
    not a bare number, which would read as a weight)."""
    if not word or any(c.isspace() or c in _NOT_IN_A_TOKEN for c in word):
        return False
    try:
        float(word)
    except ValueError:
        return True
    return False


def association_graph(
    names: Sequence[str],
    scores: torch.Tensor,
    *,
    top_k: int = 2,
    threshold: float = 0.0,
    file: str = "<built>",
) -> Graph | None:
    """One slot per name with a partner: ``names[i] = s_ij*names[j] + ...`` over the ``top_k``
    other names ``j`` with the highest ``scores[i, j]`` (``(n, n)``) that reach ``threshold``
    (> 0 in any case). Weights are written to three decimals. None when no name has a partner.
    """
    n = len(names)
    if scores.shape != (n, n):
        raise InputError(f"scores must be ({n}, {n}) for {n} names, got {tuple(scores.shape)}")
    bad = [w for w in names if not graph_token(w)]
    if bad:
        raise InputError(f"not usable as graph tokens: {', '.join(map(repr, bad))}")
    s = scores.detach().to(torch.float64).clone()  # (n, n)
    s.fill_diagonal_(float("-inf"))
    for i, j in [(i, j) for i in range(n) for j in range(n) if i != j and names[i] == names[j]]:
        s[i, j] = float("-inf")  # a word is not its own association
    slots = []
    for i in range(n):
        if names[i] in names[:i]:
            continue  # one slot per distinct name
        k = min(top_k, n - 1)
        if k < 1:
            break
        w, j = s[i].topk(k)  # (k,)
        terms, seen = [], set()
        for wj, jj in zip(w.tolist(), j.tolist(), strict=True):
            if wj >= threshold and wj > 0 and names[jj] not in seen:
                seen.add(names[jj])
                terms.append(Term(names[jj], round(wj, 3)))
        if terms:
            slots.append(Slot(key=(Term(names[i]),), value=tuple(terms), file=file))
    if not slots:
        return None
    # through the text, so every slot knows its line in the file a person would read
    return parse_graph("\n".join(map(str, slots)), file=file)


def write_graph(graph: Graph, path: str | Path, header: str = "") -> Path:
    """Write ``graph`` as a ``.graph`` file (``header`` as ``#`` comment lines), atomically."""
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return write_atomic(Path(path), comments + str(graph) + "\n")
