"""Does reading the training set as a memory (kNN-LM) lower a trained model's loss?

For each trained checkpoint (the cpu-small MemLM and GPT of examples/lm/), a datastore of
(hidden state before the readout -> next token) over every position of the training split
(built with `assocmem knn build`, or here when its folder is empty), read with faiss IVF.
λ, k and the temperature are chosen on a held-out stretch at the end of the TRAINING split
(its own slots left out of the search), never on validation; the validation loss is then
reported without and with the datastore at that choice, with tokens/s of both (one thread,
measured in the same pass), and the validation curve over λ.

    .venv/bin/python bench/knn_lm.py --json out.json \\
        --memlm runs/shakespeare_char_memlm --gpt runs/shakespeare_char_gpt
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import faiss
import torch

from assocmem.index import IndexConfig, LargeMemory
from assocmem.lm.knn import (
    KNNConfig,
    build_datastore,
    checkpoint_splits,
    evaluate_knn,
    interpolated_nll,
    knn_target_probs,
    readout_logp,
)
from assocmem.lm.train import load_model


def datastore(model, train_ids, folder: Path, args) -> tuple[LargeMemory, float]:
    """The saved datastore in ``folder``, or a new one built (and saved) there."""
    if (folder / "memory.json").is_file():
        return LargeMemory.load(folder), 0.0
    t0 = time.perf_counter()
    config = IndexConfig(kind="ivf", nlist=args.nlist, nprobe=args.nprobe)
    store = build_datastore(model, train_ids, config)
    store.save(folder)
    return store, time.perf_counter() - t0


def tune(model, store: LargeMemory, args) -> tuple[KNNConfig, list[dict]]:
    """The grid on the last ``--tune`` slots of the datastore (the end of the training split),
    those slots excluded from the search: (best config, every grid point's loss)."""
    a = store.index.size - args.tune
    h, y = store.K[a:], store.V[a:, 0]  # (t, C), (t,): the held-out positions
    logp = readout_logp(model, h, y)  # (t,)
    p = {}
    for i in range(0, len(h), args.batch):
        part = knn_target_probs(
            store,
            h[i : i + args.batch],
            y[i : i + args.batch],
            args.ks,
            args.temps,
            (a, store.index.size),
        )
        for key, v in part.items():
            p.setdefault(key, []).append(v)
    grid = []
    for (k, t), lam in itertools.product(p, args.lams):
        loss = float(interpolated_nll(logp, torch.cat(p[(k, t)]), lam).mean())
        grid.append({"k": k, "temp": t, "lambda": lam, "tune_loss": loss})
    best = min(grid, key=lambda g: g["tune_loss"])
    return KNNConfig(k=best["k"], temp=best["temp"], lam=best["lambda"]), grid


def bench_model(name: str, ckpt: str, args) -> dict:
    model, _, meta = load_model(ckpt)
    train_ids, val_ids = checkpoint_splits(meta)
    if args.smoke:  # a quick run of the whole pipeline on a sliver of both splits
        train_ids, val_ids = train_ids[: args.smoke], val_ids[: args.smoke // 10]
    store, build_s = datastore(model, train_ids, Path(args.stores) / name, args)
    store.index.set_search(nprobe=args.nprobe)
    print(f"{name}: datastore of {store.index.size:,} slots ({build_s:.0f} s to build)", flush=True)
    best, grid = tune(model, store, args)
    print(f"{name}: chosen on the training tail: {best}", flush=True)
    r = evaluate_knn(model, store, val_ids, best, batch=args.batch, lams=tuple(args.lams))
    print(f"{name}: val loss {r.loss:.4f} -> {r.loss_knn:.4f}", flush=True)
    return {
        "val_loss": r.loss,
        "val_loss_knn": r.loss_knn,
        "lambda": best.lam,
        "k": best.k,
        "temp": best.temp,
        "tokens_per_s": r.tokens_per_s,
        "tokens_per_s_knn": r.tokens_per_s_knn,
        "val_positions": r.positions,
        "datastore_slots": store.index.size,
        "datastore_build_s": build_s,
        "val_curve": [{"lambda": lam, "val_loss": v} for lam, v in r.curve],
        "tune_grid": grid,
        "checkpoint": ckpt,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True)
    p.add_argument("--memlm", default="runs/shakespeare_char_memlm", help="MemLM checkpoint folder")
    p.add_argument("--gpt", default="runs/shakespeare_char_gpt", help="GPT checkpoint folder")
    p.add_argument("--stores", default="runs/knn", help="datastores: <stores>/memlm, <stores>/gpt")
    p.add_argument(
        "--tune", type=int, default=20000, help="held-out positions at the training split's end"
    )
    p.add_argument("--lams", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3, 0.5])
    p.add_argument("--ks", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--temps", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0, 16.0])
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument(
        "--models",
        nargs="+",
        default=["memlm", "gpt"],
        choices=["memlm", "gpt"],
        help="models to run; the others' entries of an existing --json are kept",
    )
    p.add_argument(
        "--smoke", type=int, default=0, help="use only this many training tokens (a test run)"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    out = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else {}
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "models")}
    with torch.no_grad():
        for name in args.models:
            out[name] = bench_model(name, getattr(args, name), args) | {"settings": settings}
    out["machine"] = {"platform": platform.platform(), "torch": torch.__version__, "threads": 1}
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
