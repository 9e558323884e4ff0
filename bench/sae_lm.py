"""Sparse autoencoders on the learned models: MemLM and the GPT baseline (docs/sae.md).

    python bench/sae_lm.py --json OUT.json [--memlm runs/shakespeare_char_memlm]
        [--gpt runs/shakespeare_char_gpt] [--hook layers.2.out] [--save runs/sae_lm]

Train both models first (``assocmem train examples/lm/shakespeare_char_{memlm,gpt}.toml``).
For each model, SAEs (TopK and ReLU + L1, width 4·d) are trained on the residual stream at
``--hook`` over random windows of the training split and scored on windows of the held-out
split: explained variance, L0, dead latents, and the loss recovered when the reconstruction
replaces the activation, ``(CE_zero − CE_sae) / (CE_zero − CE_clean)``. Then the two models'
TopK feature spaces are compared as in arXiv 2410.06981: each MemLM latent is paired with the
GPT latent whose activations over the same held-out text correlate best, and the SVCCA of the
paired decoder directions is set against randomly paired latents (``--random`` draws); as a
reference, the TopK and the ReLU SAE of one model are compared the same way. One thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from assocmem.sae import metrics
from assocmem.sae.lm import activations, load_lm, score_lm_sae, windows
from assocmem.sae.model import SAEConfig, save_sae
from assocmem.sae.train import SAETrainConfig, train_sae


def score_model(run, hook: str, args, tc: SAETrainConfig) -> tuple[list[dict], dict]:
    """Rows for each SAE kind on one model, and each SAE's held-out codes and decoder."""
    T = run.model.config.block_size
    train_w = windows(run.train_ids, T, args.train_windows, seed=2 * args.seed)  # (n, T+1)
    val_w = windows(run.val_ids, T, args.val_windows, seed=2 * args.seed + 1)  # (m, T+1)
    x_train = activations(run.model, train_w, hook)  # (n·T, d)
    d = x_train.shape[1]
    rows, kept = [], {}
    for kind in ("topk", "relu"):
        cfg = SAEConfig(d, args.expansion * d, kind, k=args.k, l1=args.l1)
        sae, hist = train_sae(x_train, cfg, tc, progress=args.progress)
        scores = score_lm_sae(run, sae, hook, val_w)
        codes = scores.pop("codes")  # (N, w)
        rows.append(
            {
                "model": run.name,
                "hook": hook,
                "kind": kind,
                "width": cfg.width,
                "k": cfg.k if kind == "topk" else None,
                "l1": cfg.l1 if kind == "relu" else None,
                **scores,
                "dead_fraction_train": hist.dead_fraction,
                "model_iter": run.meta.get("iter"),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        if args.save:
            meta = {"checkpoint": args.ckpt[run.name], "hook": hook}
            save_sae(sae, f"{args.save}/{run.name}_{kind}", meta)
        kept[kind] = {"codes": codes, "W_dec": sae.W_dec.detach()}
    return rows, kept


def compare(a: dict, b: dict, draws: int, seed: int = 0) -> dict:
    """2410.06981: pair A's latents to B's by activation correlation, SVCCA of the paired
    decoder rows, against random pairings. Latents that never fire are left out."""
    alive_a = (a["codes"] != 0).any(0)  # (w_a,)
    alive_b = (b["codes"] != 0).any(0)  # (w_b,)
    ca, cb = a["codes"][:, alive_a], b["codes"][:, alive_b]  # (N, a), (N, b)
    Wa, Wb = a["W_dec"][alive_a], b["W_dec"][alive_b]  # (a, d), (b, d)
    idx, corr = metrics.pair_by_correlation(ca, cb)  # (a,)
    paired = metrics.svcca(Wa, Wb[idx])
    g = torch.Generator().manual_seed(seed)
    rand = torch.tensor(
        [
            metrics.svcca(Wa, Wb[torch.randint(len(Wb), (len(Wa),), generator=g)])
            for _ in range(draws)
        ]
    )
    return {
        "pairs": len(Wa),
        "distinct_b": int(idx.unique().numel()),
        "mean_pair_correlation": float(corr.mean()),
        "svcca_paired": paired,
        "svcca_random_mean": float(rand.mean()),
        "svcca_random_std": float(rand.std()),
        "random_draws": draws,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="where to write the results")
    ap.add_argument("--memlm", default="runs/shakespeare_char_memlm", help="MemLM checkpoint")
    ap.add_argument("--gpt", default="runs/shakespeare_char_gpt", help="GPT checkpoint")
    ap.add_argument("--hook", default="layers.2.out", help="residual stream to decompose")
    ap.add_argument("--expansion", type=int, default=4, help="SAE width / d")
    ap.add_argument("--k", type=int, default=16, help="TopK: active latents")
    ap.add_argument("--l1", type=float, default=0.01, help="ReLU: L1 coefficient")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--train-windows", type=int, default=1000, help="64-token windows to train on")
    ap.add_argument("--val-windows", type=int, default=200, help="held-out windows to score on")
    ap.add_argument("--random", type=int, default=20, help="random pairings for the baseline")
    ap.add_argument(
        "--save", default="", help="folder to save the SAEs in (for assocmem sae inspect)"
    )
    ap.add_argument("--seed", type=int, default=0, help="SAE init and the windows drawn")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    tc = SAETrainConfig(steps=args.steps, batch_size=512, seed=args.seed)
    runs = {"memlm": load_lm(args.memlm), "gpt": load_lm(args.gpt)}
    args.ckpt = {"memlm": args.memlm, "gpt": args.gpt}
    if runs["memlm"].tok.state() != runs["gpt"].tok.state():
        raise SystemExit(
            "the two checkpoints use different tokenizers: no shared text to compare on"
        )
    rows, kept = [], {}
    for name, run in runs.items():
        r, kept[name] = score_model(run, args.hook, args, tc)
        rows += r
    cross = compare(kept["memlm"]["topk"], kept["gpt"]["topk"], args.random, args.seed)
    print(json.dumps(cross), flush=True)
    # the reference: two SAEs (TopK, ReLU) of the *same* model, compared the same way
    same = {n: compare(k["topk"], k["relu"], args.random, args.seed) for n, k in kept.items()}
    print(json.dumps(same), flush=True)
    meta = {
        "seconds": round(time.perf_counter() - t0, 1),
        "threads": 1,
        "steps": args.steps,
        "seed": args.seed,
        "train_tokens": args.train_windows * 64,
        "val_tokens": args.val_windows * 64,
        "checkpoints": {"memlm": args.memlm, "gpt": args.gpt},
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    with open(args.json, "w") as f:
        doc = {"rows": rows, "cross_model": cross, "same_model_topk_vs_relu": same, "meta": meta}
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
