"""Does ReCL's reconstruction slow forgetting on class-incremental split digits?

Five tasks of two digit classes, one bias-free MLP, methods ``finetune``, ``replay_real``,
``recl`` and the control ``noise_labelled`` (:mod:`assocmem.recl`): ACC and BWT, mean and
sample sd over ``--seeds``, on the test split (``"digits"``, the shape
:func:`assocmem.recl.digits_benchmark` returns) and on the val split (``"digits_val"``).
``reconstruction`` says how data-like the reconstructions are for the first task of the
first seed: the mean, over reconstructions, of the best cosine similarity to a real
training image of that task, optimised (``recl``) and as initialised (``noise``), and the
reconstruction objective at its first and last step.

    .venv/bin/python bench/recl_digits.py --json bench/recl_digits.json

``--sweep``: instead, ReCL's ACC and BWT on the val split for the defaults and each variant of
``VARIANTS`` (one setting changed at a time): how the defaults were checked, never on test.

    .venv/bin/python bench/recl_digits.py --sweep --json bench/recl_digits_sweep.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F

from assocmem.errors import write_atomic
from assocmem.recl import (
    ALL_METHODS,
    DigitsConfig,
    load_split,
    make_mlp,
    reconstruct,
    run_method,
    summarize,
    train_task,
)

VARIANTS: dict[str, dict] = {
    "defaults": {},
    "rec_lr=0.05": {"rec_lr": 0.05},
    "rec_lambda_min=0.5": {"rec_lambda_min": 0.5},
    "rec_init_std=0.5": {"rec_init_std": 0.5},
    "rec_steps=4000": {"rec_steps": 4000},
    "init_scale=0.1": {"init_scale": 0.1},
}


def sweep(seeds: list[int]) -> dict[str, dict[str, float]]:
    """ReCL on the val split for each of ``VARIANTS``."""
    out = {}
    for name, change in VARIANTS.items():
        cfg = DigitsConfig(**change)
        out[name] = summarize([run_method("recl", s, cfg)["val"] for s in seeds])
        print(name, out[name], flush=True)
    return out


def reconstruction_check(cfg: DigitsConfig, seed: int) -> dict[str, float]:
    """How close the first task's reconstructions come to its real training images."""
    x, y = load_split(seed, cfg.fractions).train
    keep = torch.isin(y, torch.tensor(cfg.tasks[0]))
    real = F.normalize(x[keep], dim=1)  # (n, 64)
    model = make_mlp(cfg.hidden, seed, cfg.init_scale)
    train_task(model, x[keep], y[keep], cfg)
    out = {}
    for name, steps in (("recl", None), ("noise", 0)):
        xr, _, hist = reconstruct(model, cfg.tasks[0], cfg, seed=seed * 100, steps=steps)
        out[f"{name}_best_cosine"] = (F.normalize(xr, dim=1) @ real.T).amax(1).mean().item()
        if hist:
            out["objective_first"], out["objective_last"] = hist[0], hist[-1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sweep", action="store_true", help="the val-split check of the defaults")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = DigitsConfig()
    t0 = time.perf_counter()
    if args.sweep:
        doc = {"recl_val": sweep(args.seeds), "seeds": args.seeds}
        doc["seconds"] = round(time.perf_counter() - t0, 1)
        write_atomic(args.json, json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json} in {doc['seconds']} s")
        return
    runs = {}
    for m in ALL_METHODS:
        runs[m] = [run_method(m, s, cfg) for s in args.seeds]
        print(m, summarize([r["test"] for r in runs[m]]), flush=True)
    doc = {
        split_key: {m: summarize([r[split] for r in rs]) for m, rs in runs.items()}
        for split_key, split in (("digits", "test"), ("digits_val", "val"))
    }
    doc["reconstruction"] = reconstruction_check(cfg, args.seeds[0])
    doc["final_row_test"] = {m: [r["test"][-1] for r in rs] for m, rs in runs.items()}
    doc["seeds"] = args.seeds
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    doc["machine"] = f"{platform.processor() or platform.machine()}, torch 1 thread"
    write_atomic(args.json, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.json} in {doc['seconds']} s")


if __name__ == "__main__":
    main()
