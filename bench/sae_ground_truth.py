"""Sparse autoencoders scored against planted features (docs/sae.md).

    python bench/sae_ground_truth.py --json OUT.json [--seeds 2] [--steps 2000]
    python bench/sae_ground_truth.py --json OUT.json --replot --figure docs/img/sae_ground_truth.png

A random relation graph over ``tokens_per_dim · d`` tokens (d = 32) is compiled against random
unit embeddings and run by a one-layer MemTransformer (cosine reads at temperature ``temp``);
the residual stream after the layer is exactly a sum of token directions with known codes
(:mod:`assocmem.sae.ground_truth`). For every tokens-per-dimension ratio (0.5x to 4x: the
directions are in superposition beyond 1x), every read temperature (the sparsity knob: a
softer read mixes more rows, so more features per position; ``sparsity`` reports the measured
true L0, features with weight > 0.1) and both SAE kinds (TopK with k = the true L0 rounded,
ReLU + L1 with l1 = 0.01, chosen on graph seed 100 at 1x), an SAE of width 2·tokens is
trained and scored on held-out sequences of the same model. One thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from assocmem.errors import write_atomic
from assocmem.sae.ground_truth import PlantedSpec, planted_activations, score_planted
from assocmem.sae.model import SAEConfig
from assocmem.sae.train import SAETrainConfig

RATIOS = (0.5, 1.0, 2.0, 4.0)
TEMPS = (0.02, 0.2)
L1 = 0.01  # chosen on graph seed 100 at 1x (MMCS 0.914 against 0.897 at 0.03, 0.817 at 0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="where to write the results")
    ap.add_argument("--d", type=int, default=32, help="residual width")
    ap.add_argument("--seeds", type=int, default=2, help="graph seeds per setting")
    ap.add_argument("--steps", type=int, default=2000, help="SAE training steps")
    ap.add_argument("--ratios", type=float, nargs="+", default=RATIOS, help="tokens per dim")
    ap.add_argument("--figure", default="", help="also draw MMCS and MCC against tokens per dim")
    ap.add_argument("--replot", action="store_true", help="read --json, print the table, draw")
    ap.add_argument("--extra", nargs="*", default=[], help="--replot: more result files to add")
    args = ap.parse_args()
    if args.replot:
        rows = [
            r for p in [args.json, *args.extra] for r in json.loads(Path(p).read_text())["rows"]
        ]
        print(table(rows))
        if args.figure:
            draw(rows, args.figure)
        return
    torch.set_num_threads(1)
    tc = SAETrainConfig(steps=args.steps, batch_size=256)
    rows, t0 = [], time.perf_counter()
    for seed in range(args.seeds):  # seed outermost: a whole curve first, then its repeat
        for ratio in args.ratios:
            for temp in TEMPS:
                spec = PlantedSpec(d=args.d, tokens_per_dim=ratio, temp=temp, seed=seed)
                train = planted_activations(spec)
                test = planted_activations(dataclasses.replace(spec, seq_seed=1, n_seqs=500))
                k = max(1, round(test.true_l0))
                for kind in ("topk", "relu"):
                    cfg = SAEConfig(spec.d, 2 * spec.n_tokens, kind, k=k, l1=L1)
                    row = {
                        "tokens_per_dim": ratio,
                        "sparsity": round(test.true_l0, 3),
                        "temp": temp,
                        "seed": seed,
                        "d": spec.d,
                        "tokens": spec.n_tokens,
                        **score_planted(train, cfg, tc, test),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    write(
                        args.json, rows, args, tc, t0
                    )  # after every row: a partial run still reports


def write(path: str, rows: list[dict], args, tc: SAETrainConfig, t0: float) -> None:
    meta = {
        "seconds": round(time.perf_counter() - t0, 1),
        "threads": 1,
        "steps": args.steps,
        "batch_size": tc.batch_size,
        "seeds": args.seeds,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    write_atomic(Path(path), json.dumps({"rows": rows, "meta": meta}, indent=1))
    if args.figure:
        draw(rows, args.figure)


def _groups(rows: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault((r["kind"], r["temp"], r["tokens_per_dim"]), []).append(r)
    return out


def _mean_spread(rows: list[dict], key: str) -> str:
    v = [r[key] for r in rows]
    mean = sum(v) / len(v)
    return f"{mean:.3f}" + (f" ± {(max(v) - min(v)) / 2:.3f}" if len(v) > 1 else "")


def table(rows: list[dict]) -> str:
    """A markdown table: mean over graph seeds ± half their range."""
    keys = ("mmcs", "mcc", "l0", "sparsity", "explained_variance", "dead_fraction")
    head = "| kind | temp | tokens/dim | seeds | " + " | ".join(keys) + " |"
    lines = [head, "|" + "---|" * (4 + len(keys))]
    for (kind, temp, ratio), g in sorted(_groups(rows).items()):
        cells = " | ".join(_mean_spread(g, k) for k in keys)
        lines.append(f"| {kind} | {temp} | {ratio} | {len(g)} | {cells} |")
    return "\n".join(lines)


def draw(rows: list[dict], path: str) -> None:
    """MMCS (solid) and MCC (dashed) against tokens per dimension, per SAE kind and temperature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from assocmem.views.figures import save_figure

    fig, ax = plt.subplots(figsize=(6, 3.6))
    curves: dict[tuple, list] = {}
    for (kind, temp, ratio), g in sorted(_groups(rows).items()):
        curves.setdefault((kind, temp), []).append(
            (ratio, *(sum(r[k] for r in g) / len(g) for k in ("mmcs", "mcc", "sparsity")))
        )
    for (kind, temp), pts in curves.items():
        x, mmcs, mcc, l0 = zip(*pts, strict=True)
        line = ax.plot(x, mmcs, "o-", label=f"{kind}, temp {temp} (true L0 ≈ {l0[0]:.1f})")[0]
        ax.plot(x, mcc, "--", color=line.get_color())
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.axhline(0.9, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens per dimension (superposition beyond 1)")
    ax.set_ylabel("MMCS (solid), MCC (dashed)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    stem = Path(path)
    save_figure(fig, stem.with_suffix(""), (stem.suffix.lstrip(".") or "png",))


if __name__ == "__main__":
    main()
