"""Top-k candidates over a large memory, and the read over them.

``mem(q, K, V, topk=k)`` scores every slot and masks all but the k best: right for a graph
of a thousand slots, hopeless for a million. Here an index finds each query's k best slots
first, by inner product (the score ``q·k`` that ``mem`` reads with):

* ``exact``: chunked exact top-k, scoring ``budget`` query-slot pairs at a time and keeping a
  running top-k, so the ``n × m`` scores are never materialised;
* ``ivf``: faiss ``IndexIVFFlat`` (inner product), ``nlist`` k-means lists, ``nprobe`` of them
  searched per query; exact when ``nprobe = nlist``;
* ``hnsw``: faiss ``IndexHNSWFlat`` (inner product), a graph of ``hnsw_m`` neighbours per
  slot, searched with a beam of ``ef_search``.

The read itself is still :func:`assocmem.mem`, over the k retrieved slots of each query
(:func:`read_slots`), so temperature, weights and masks behave as for any read; with every
slot retrieved it is the full read. :class:`LargeMemory` holds keys, values and the index;
it is built, appended to (IVF and HNSW add slots without a rebuild: IVF's lists are kept,
HNSW links the new slots in), saved and loaded as one folder. faiss (``faiss-cpu``) is
needed for ``ivf`` and ``hnsw`` only.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from assocmem.errors import InputError, write_atomic
from assocmem.primitive import mem

__all__ = ["IndexConfig", "KeyIndex", "LargeMemory", "exact_topk", "read_slots"]

Kind = Literal["exact", "ivf", "hnsw"]
KINDS: tuple[str, ...] = ("exact", "ivf", "hnsw")
FORMAT = 1
TENSORS, INDEX, JSON = "memory.safetensors", "index.faiss", "memory.json"


@dataclass(frozen=True)
class IndexConfig:
    """How a :class:`KeyIndex` finds the top-k slots (see the module docstring)."""

    kind: Kind = "exact"
    budget: int = 1 << 22  # exact: query-slot scores computed at a time (16 MiB in float32)
    nlist: int = 1024  # ivf: k-means lists (about sqrt(slots))
    nprobe: int = 16  # ivf: lists searched per query
    train_size: int = 65536  # ivf: keys the k-means is trained on (a seeded sample)
    hnsw_m: int = 32  # hnsw: neighbours per slot
    ef_construction: int = 64  # hnsw: beam width while linking
    ef_search: int = 64  # hnsw: beam width of a search
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"index kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        bad = [
            f"{f}={getattr(self, f)!r}"
            for f in (
                "budget",
                "nlist",
                "nprobe",
                "train_size",
                "hnsw_m",
                "ef_construction",
                "ef_search",
            )
            if isinstance(getattr(self, f), bool)
            or not isinstance(getattr(self, f), int)
            or getattr(self, f) < 1
        ]
        if bad:
            raise InputError(f"index settings must be integers >= 1; got {', '.join(bad)}")


def exact_topk(
    q: torch.Tensor,
    K: torch.Tensor,
    k: int,
    budget: int = 1 << 22,
    exclude: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest ``q·K[j]`` of each query, exactly, without the ``(n, m)`` scores:
    slots are scored in chunks of ``budget // n`` and merged into a running top-k.

    Args: ``q`` ``(n, d)``, ``K`` ``(m, d)``. Returns ``(scores, idx)``, each ``(n, min(k, m))``,
    best first (ties broken as ``torch.topk`` does). Slots ``exclude = (a, b)``, ``a <= j < b``,
    are never chosen: their place in the result, if any, has score ``-inf``.
    """
    n, m = q.shape[0], K.shape[0]
    k = min(k, m)
    chunk = max(k, budget // max(n, 1))
    best_s = q.new_full((n, 0), float("-inf"))  # (n, <=k)
    best_i = torch.zeros(n, 0, dtype=torch.long, device=q.device)  # (n, <=k)
    for c0 in range(0, m, chunk):
        s = q @ K[c0 : c0 + chunk].T  # (n, c)
        if exclude is not None:
            s[:, max(exclude[0] - c0, 0) : max(exclude[1] - c0, 0)] = float("-inf")
        ids = torch.arange(c0, c0 + s.shape[1], device=q.device).expand(n, -1)  # (n, c)
        s, ids = torch.cat([best_s, s], 1), torch.cat([best_i, ids], 1)  # (n, k + c)
        best_s, j = s.topk(min(k, s.shape[1]), dim=1)  # (n, k)
        best_i = ids.gather(1, j)  # (n, k)
    return best_s, best_i


def read_slots(
    q: torch.Tensor,
    Kg: torch.Tensor,
    Vg: torch.Tensor,
    valid: torch.Tensor,
    temp: float | torch.Tensor = 1.0,
    *,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``mem`` of each query over its own retrieved slots: ``q`` ``(n, d)``, ``Kg`` ``(n, k, d)``,
    ``Vg`` ``(n, k, dv)``, ``valid`` ``(n, k)`` (False: no slot found there). Returns the read
    ``(n, dv)`` and, with ``return_weights``, the weights ``(n, k)``."""
    r = mem(q[:, None, :], Kg, Vg, temp, mask=valid[:, None, :], return_weights=return_weights)
    if return_weights:
        return r[0][:, 0], r[1][:, 0]  # (n, dv), (n, k)
    return r[:, 0]  # (n, dv)


def _need_faiss():
    try:
        import faiss
    except ImportError:
        raise InputError(
            "the ivf and hnsw indexes need faiss: pip install faiss-cpu (or use kind='exact')"
        ) from None
    return faiss


def _np32(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy())


class KeyIndex:
    """The top-k search over keys ``K`` ``(m, d)`` (float32), exact or through faiss."""

    def __init__(self, K: torch.Tensor, config: IndexConfig = IndexConfig(), *, _faiss=None):
        if K.dim() != 2 or not K.is_floating_point():
            raise InputError(
                f"keys must be a float (slots, dim) tensor; got {tuple(K.shape)} {K.dtype}"
            )
        self.config = config
        self.K = K.detach().to(torch.float32).contiguous()  # (m, d)
        self.faiss_index = _faiss if _faiss is not None else self._build(self.K)
        self.set_search()

    @property
    def size(self) -> int:
        return self.K.shape[0]

    def _build(self, K: torch.Tensor):
        c = self.config
        if c.kind == "exact":
            return None
        faiss = _need_faiss()
        d = K.shape[1]
        if c.kind == "ivf":
            if K.shape[0] < c.nlist:
                raise InputError(
                    f"an ivf index of nlist={c.nlist} needs at least that many keys; got {K.shape[0]}"
                )
            quant = faiss.IndexFlatIP(d)
            ix = faiss.IndexIVFFlat(quant, d, c.nlist, faiss.METRIC_INNER_PRODUCT)
            g = torch.Generator().manual_seed(c.seed)
            pick = torch.randperm(K.shape[0], generator=g)[: max(c.train_size, c.nlist)]
            ix.cp.seed = c.seed
            ix.train(_np32(K[pick]))
        else:
            ix = faiss.IndexHNSWFlat(d, c.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            ix.hnsw.efConstruction = c.ef_construction
        ix.add(_np32(K))
        return ix

    def set_search(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change the search effort (IVF lists probed, HNSW beam) without a rebuild."""
        self.config = replace(
            self.config,
            nprobe=nprobe or self.config.nprobe,
            ef_search=ef_search or self.config.ef_search,
        )
        if self.config.kind == "ivf":
            self.faiss_index.nprobe = min(self.config.nprobe, self.config.nlist)
        elif self.config.kind == "hnsw":
            self.faiss_index.hnsw.efSearch = self.config.ef_search

    def add(self, K: torch.Tensor) -> None:
        """Append keys ``(m', d)``: their ids follow the existing ones. No rebuild: IVF files
        them in its trained lists, HNSW links them into its graph."""
        if K.dim() != 2 or K.shape[1] != self.K.shape[1]:
            raise InputError(f"new keys must be (slots, {self.K.shape[1]}); got {tuple(K.shape)}")
        K = K.detach().to(torch.float32)
        self.K = torch.cat([self.K, K])  # (m + m', d)
        if self.faiss_index is not None:
            self.faiss_index.add(_np32(K))

    def search(
        self, q: torch.Tensor, k: int, exclude: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Ids ``(n, k)`` of the k best slots of each query ``q`` ``(n, d)``, best first; ``-1``
        where fewer than k were found. Slots ``a <= j < b`` of ``exclude = (a, b)`` are
        skipped (a held-out stretch of a datastore)."""
        k = min(k, self.size)
        if self.faiss_index is None:
            s, ids = exact_topk(
                q.detach().to(torch.float32), self.K, k, self.config.budget, exclude
            )
            return ids.masked_fill(s == float("-inf"), -1)
        params = None
        if exclude is not None:
            faiss = _need_faiss()
            sel = faiss.IDSelectorNot(faiss.IDSelectorRange(*exclude))
            c = self.config
            params = (
                faiss.SearchParametersIVF(sel=sel, nprobe=min(c.nprobe, c.nlist))
                if c.kind == "ivf"
                else faiss.SearchParametersHNSW(sel=sel, efSearch=c.ef_search)
            )
            params._keep = sel  # the selector must outlive the search
        _, ids = self.faiss_index.search(_np32(q), k, params=params)
        return torch.from_numpy(ids).to(torch.long)

    def index_bytes(self) -> bytes:
        """The faiss index, serialised (b'' for exact)."""
        if self.faiss_index is None:
            return b""
        return _need_faiss().serialize_index(self.faiss_index).tobytes()


class LargeMemory:
    """Keys ``(m, d)``, values ``(m, dv)`` and a :class:`KeyIndex` over the keys.

    ``read(q, k, temp)`` is ``mem`` over each query's ``k`` retrieved slots; with an exact
    index it equals ``mem(q, K, V, temp, topk=k)`` (weights included, scattered back)."""

    def __init__(
        self,
        K: torch.Tensor,
        V: torch.Tensor,
        config: IndexConfig = IndexConfig(),
        *,
        meta: dict | None = None,
        _index=None,
    ):
        if V.dim() != 2 or V.shape[0] != K.shape[0]:
            raise InputError(
                f"values must be (slots, dim) with one row per key; got K {tuple(K.shape)}, V {tuple(V.shape)}"
            )
        self.index = _index if _index is not None else KeyIndex(K, config)
        self.V = V.detach()
        self.meta = dict(meta or {})  # JSON-serialisable notes saved with the memory

    @property
    def K(self) -> torch.Tensor:
        return self.index.K

    def add(self, K: torch.Tensor, V: torch.Tensor) -> None:
        """Append slots (no rebuild; see :meth:`KeyIndex.add`)."""
        if V.shape[0] != K.shape[0] or V.shape[1:] != self.V.shape[1:]:
            raise InputError(
                f"new values must be ({K.shape[0]}, {self.V.shape[1]}); got {tuple(V.shape)}"
            )
        self.index.add(K)
        self.V = torch.cat([self.V, V.detach().to(self.V.dtype)])

    def read(
        self,
        q: torch.Tensor,
        k: int,
        temp: float | torch.Tensor = 1.0,
        *,
        return_weights: bool = False,
    ):
        """The read of ``q`` ``(n, d)`` over its ``k`` best slots: ``(n, dv)``; with
        ``return_weights`` also ``(weights (n, k), ids (n, k))``."""
        ids = self.index.search(q, k)  # (n, k)
        j = ids.clamp_min(0)
        Kg = self.K[j].to(q.dtype)  # (n, k, d)
        Vg = self.V[j].to(q.dtype)  # (n, k, dv)
        r = read_slots(q, Kg, Vg, ids >= 0, temp, return_weights=return_weights)
        return (r[0], (r[1], ids)) if return_weights else r

    def save(self, folder: str | Path) -> Path:
        """Write ``memory.safetensors`` (K, V), ``index.faiss`` and ``memory.json`` (config and
        the sha256 of both, written last) into ``folder``, each atomically."""
        from safetensors.torch import save

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        raw = save({"K": self.K.contiguous(), "V": self.V.contiguous()})
        ix = self.index.index_bytes()
        write_atomic(out / TENSORS, raw)
        write_atomic(out / INDEX, ix)
        doc = {
            "format": FORMAT,
            "config": asdict(self.index.config),
            "slots": self.index.size,
            "meta": self.meta,
            "files": {
                TENSORS: hashlib.sha256(raw).hexdigest(),
                INDEX: hashlib.sha256(ix).hexdigest(),
            },
        }
        write_atomic(out / JSON, json.dumps(doc, indent=1))
        return out / JSON

    @classmethod
    def load(cls, folder: str | Path) -> LargeMemory:
        """A memory saved by :meth:`save`; a missing or altered file is an InputError."""
        from safetensors.torch import load

        folder = Path(folder)
        try:
            doc = json.loads((folder / JSON).read_text())
            blobs = {name: (folder / name).read_bytes() for name in (TENSORS, INDEX)}
        except (OSError, ValueError) as e:
            raise InputError(
                f"{str(folder)!r} holds no readable large memory ({e}); save one with LargeMemory.save"
            ) from None
        if (
            not isinstance(doc, dict)
            or doc.get("format") != FORMAT
            or not isinstance(doc.get("files"), dict)
        ):
            raise InputError(f"{str(folder / JSON)!r} is not a large memory of format {FORMAT}")
        for name, raw in blobs.items():
            if hashlib.sha256(raw).hexdigest() != doc["files"].get(name):
                raise InputError(
                    f"{str(folder / name)!r} does not match its checksum in {JSON}: save the memory again"
                )
        config = IndexConfig(**doc["config"])
        t = load(blobs[TENSORS])
        fx = (
            _need_faiss().deserialize_index(np.frombuffer(blobs[INDEX], dtype=np.uint8))
            if blobs[INDEX]
            else None
        )
        index = KeyIndex(t["K"], config, _faiss=fx)
        return cls(t["K"], t["V"], config, meta=doc.get("meta"), _index=index)


def ivf_lists(slots: int) -> int:
    """A usual IVF list count for ``slots`` keys: about ``sqrt(slots)``, a power of two."""
    return 1 << max(0, round(math.log2(max(1.0, math.sqrt(slots)))))
