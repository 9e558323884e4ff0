"""How fast can a million-slot memory be read, and how exactly?

For each data set (random Gaussian keys of dimension 64 and 128; the kNN-LM datastore's real
keys, dimension 128, with ``--datastore``), ``--slots`` keys and values and ``--queries``
queries, the top-``k`` read (``mem`` over the k best slots, temperature 1) by:

* ``full``: ``mem(q, K, V, topk=k)``, every score materialised (query batches of ``--full-batch``);
* ``chunked``: :func:`assocmem.index.exact_topk`, then ``mem`` over the retrieved slots;
* ``ivf``: faiss IVF-Flat, inner product, ``--nlist`` lists, two ``--nprobe`` settings;
* ``hnsw``: faiss HNSW-Flat, inner product, two ``--ef-search`` settings.

Recall@k is against the full read's top k; ms per query is the whole read (search, gather,
``mem``) over batches of ``--batch`` queries; ``speedup_vs_full`` is the ratio to the full
read measured in the same run, all on one thread (torch and faiss). ``memory_mb`` is what
the method holds: keys and values, plus the faiss index (which keeps its own copy of the
keys). Real keys: ``--datastore`` (a folder written by ``assocmem knn build``); its last
``--queries`` slots become the queries and are left out of the memory.

    .venv/bin/python bench/large_memory.py --json out.json [--datastore runs/knn_memlm]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time

import faiss
import torch

from assocmem import mem
from assocmem.index import IndexConfig, LargeMemory, ivf_lists


def timed(fn, q: torch.Tensor, batch: int, after=lambda r: r) -> tuple[list, float]:
    """``fn`` over ``q`` in batches: (``after`` of each result, ms per query of ``fn`` alone)."""
    out, spent = [], 0.0
    for i in range(0, len(q), batch):
        t0 = time.perf_counter()
        r = fn(q[i : i + batch])
        spent += time.perf_counter() - t0
        out.append(after(r))  # untimed: bookkeeping of the benchmark, not of the read
    return out, 1000 * spent / len(q)


def recall(ids: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean fraction of each query's reference top-k found in ``ids`` (both ``(n, k)``)."""
    hit = (ids[:, :, None] == ref[:, None, :]).any(-1)  # (n, k)
    return float(hit.float().mean())


def datasets(args):
    """(dim, name, K, V, q) for each data set; V is a seeded random (m, 16) float table."""
    g = torch.Generator().manual_seed(args.seed)
    for dim in args.dims:
        K = torch.randn(args.slots, dim, generator=g)  # (m, d)
        q = torch.randn(args.queries, dim, generator=g)  # (n, d)
        yield dim, "random", K, torch.randn(args.slots, 16, generator=g), q
        del K, q
        gc.collect()
    if args.datastore:
        keys = LargeMemory.load(args.datastore).K  # (m0, d)
        if len(keys) < args.slots + args.queries:
            raise SystemExit(
                f"{args.datastore} holds {len(keys)} keys; need {args.slots + args.queries}"
            )
        K, q = keys[: args.slots], keys[-args.queries :]
        yield keys.shape[1], "knn_lm", K, torch.randn(args.slots, 16, generator=g), q


def bench_one(dim, data, K, V, q, args) -> list[dict]:
    k, rows = args.k, []
    kv_mb = (K.numel() + V.numel()) * 4 / 2**20

    def full(qb):
        return mem(qb, K, V, topk=k, return_weights=True)  # (b, dv), (b, m)

    def top(r):
        return r[1].topk(k, dim=-1).indices  # (b, k): the exact top k, from the weights

    ref, full_ms = timed(full, q, args.full_batch, top)
    ref = torch.cat(ref)
    rows.append(
        dict(
            method="full",
            setting="",
            recall_at_32=1.0,
            ms_per_query=full_ms,
            build_s=0.0,
            memory_mb=kv_mb,
        )
    )
    print(f"{data} d={dim}: full {full_ms:.2f} ms/query", flush=True)

    def add_rows(method, memo, settings, build_s):
        mb = kv_mb + len(memo.index.index_bytes()) / 2**20
        for setting, kw in settings:
            memo.index.set_search(**kw)
            ids, ms = timed(lambda qb: memo.read(qb, k, return_weights=True)[1][1], q, args.batch)
            r = recall(torch.cat(ids), ref)
            rows.append(
                dict(
                    method=method,
                    setting=setting,
                    recall_at_32=r,
                    ms_per_query=ms,
                    build_s=build_s,
                    memory_mb=mb,
                )
            )
            print(
                f"{data} d={dim}: {method} {setting} recall {r:.3f}, {ms:.3f} ms/query ({full_ms / ms:.1f}x)",
                flush=True,
            )

    builds = [
        ("chunked", IndexConfig(kind="exact"), [("", {})]),
        ("ivf", IndexConfig(kind="ivf", nlist=args.nlist or ivf_lists(args.slots), train_size=args.train_size),
         [(f"nprobe={p}", {"nprobe": p}) for p in args.nprobe]),
        ("hnsw", IndexConfig(kind="hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction),
         [(f"efSearch={e}", {"ef_search": e}) for e in args.ef_search]),
    ]  # fmt: skip
    for method, cfg, settings in (b for b in builds if b[0] in args.methods):
        t0 = time.perf_counter()
        memo = LargeMemory(K, V, cfg)
        build_s = time.perf_counter() - t0
        print(f"{data} d={dim}: {method} built in {build_s:.1f} s", flush=True)
        add_rows(method, memo, settings, build_s)
        del memo
        gc.collect()
    for r in rows:
        r.update(dim=dim, data=data, speedup_vs_full=full_ms / r["ms_per_query"])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True)
    p.add_argument("--slots", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--dims", type=int, nargs="*", default=[64, 128])
    p.add_argument("--datastore", default="", help="kNN-LM datastore folder: its real keys too")
    p.add_argument("--batch", type=int, default=250, help="queries per index read")
    p.add_argument(
        "--full-batch", type=int, default=25, help="queries per full-score read (memory)"
    )
    p.add_argument("--nlist", type=int, default=0, help="IVF lists (0: about sqrt(slots))")
    p.add_argument("--train-size", type=int, default=65536)
    p.add_argument("--nprobe", type=int, nargs=2, default=[16, 64])
    p.add_argument("--hnsw-m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=40)
    p.add_argument("--ef-search", type=int, nargs=2, default=[64, 256])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--methods",
        nargs="+",
        default=["chunked", "ivf", "hnsw"],
        choices=["chunked", "ivf", "hnsw"],
        help="index methods besides the full read (HNSW's build is the slowest part)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    torch.manual_seed(args.seed)
    rows = []
    with torch.no_grad():
        for dim, data, K, V, q in datasets(args):
            rows += bench_one(dim, data, K, V, q, args)
            write(args, rows)  # after each data set: a long run leaves what it has measured


def write(args, rows: list[dict]) -> None:
    keys = ["dim", "data", "method", "setting", "recall_at_32", "ms_per_query", "speedup_vs_full", "build_s", "memory_mb"]  # fmt: skip
    doc = {
        "rows": [{key: r[key] for key in keys} for r in rows],
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "faiss": faiss.__version__, "threads": 1},
    }  # fmt: skip
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
