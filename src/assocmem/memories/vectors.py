"""Associations from pretrained word vectors: the cosine similarity of two words' vectors.

The default vectors are navec's Russian news embeddings (250k words, 300 dimensions,
quantised), shipped inside the ``natasha`` package from PyPI, so nothing is downloaded at
run time::

    from assocmem.memories.vectors import load_navec, vector_graph
    vectors = load_navec()                                  # ~1 s
    graph = vector_graph(["кубок", "чемодан", "большой"], vectors)
    print(graph)                                            # кубок = 0.3*чемодан + ...

Words are looked up in lower case; a word the vectors do not know has no associations.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from assocmem.errors import InputError
from assocmem.graph import Graph
from assocmem.memories import association_graph

__all__ = ["NAVEC_FILE", "navec_path", "load_navec", "WordVectors", "vector_graph"]

NAVEC_FILE = "navec_news_v1_1B_250K_300d_100q.tar"


def navec_path() -> Path:
    """Where the navec news embeddings lie inside the installed ``natasha`` package.

    Raises :class:`InputError` (with the install command) when natasha or the file is absent.
    """
    spec = importlib.util.find_spec("natasha")
    if spec is None or spec.origin is None:
        raise InputError(
            "the word vectors come from the 'natasha' package, which is not installed: "
            'pip install "torch==2.13.0" natasha navec'
        )
    path = Path(spec.origin).parent / "data" / "emb" / NAVEC_FILE
    if not path.is_file():
        raise InputError(f"{path}: natasha is installed but its embedding file is missing")
    return path


@dataclass(frozen=True)
class WordVectors:
    """Word vectors behind a lookup: ``get(word)`` is a 1-d array or None."""

    get: Callable[[str], np.ndarray | None]
    name: str = "vectors"

    @classmethod
    def from_dict(cls, table: Mapping[str, Sequence[float]], name: str = "toy") -> WordVectors:
        """Vectors from a plain ``{word: vector}`` table (tests, small experiments)."""
        arrays = {w.lower(): np.asarray(v, dtype=np.float32) for w, v in table.items()}
        return cls(get=arrays.get, name=name)

    def vector(self, word: str) -> np.ndarray | None:
        """The vector of ``word`` (looked up in lower case), or None."""
        return self.get(word.lower())

    def scores(self, words: Sequence[str]) -> torch.Tensor:
        """``(n, n)`` cosine similarities; rows and columns of unknown words are 0."""
        vecs = [self.vector(w) for w in words]
        dim = next((v.shape[0] for v in vecs if v is not None), 1)
        X = torch.zeros(len(words), dim, dtype=torch.float64)  # (n, dim)
        for i, v in enumerate(vecs):
            if v is not None:
                X[i] = torch.as_tensor(np.asarray(v, dtype=np.float64))
        X = torch.nn.functional.normalize(X, dim=-1)  # unknown rows stay 0
        return X @ X.T  # (n, n)


def load_navec(path: str | Path | None = None) -> WordVectors:
    """The navec embeddings at ``path`` (default: the file inside ``natasha``, :func:`navec_path`)."""
    try:
        from navec import Navec
    except ImportError:
        raise InputError(
            "reading navec embeddings needs the 'navec' package: pip install \"torch==2.13.0\" navec"
        ) from None
    p = Path(path) if path is not None else navec_path()
    if not p.is_file():
        raise InputError(f"{p}: no such navec embedding file")
    try:
        nv = Navec.load(str(p))
    except Exception as e:  # a damaged archive: say which file, not a tarfile traceback
        raise InputError(f"{p}: not a navec embedding archive ({e})") from None
    return WordVectors(get=nv.get, name=p.name)


def vector_graph(
    words: Sequence[str],
    vectors: WordVectors,
    *,
    top_k: int = 2,
    threshold: float = 0.3,
    file: str = "<vectors>",
) -> Graph | None:
    """Each word's ``top_k`` most similar other ``words`` (cosine >= ``threshold``) as one slot;
    the tokens are the words as given. None when no pair is similar enough."""
    return association_graph(
        list(words), vectors.scores(words), top_k=top_k, threshold=threshold, file=file
    )
