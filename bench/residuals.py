"""Does LAuReL or a PID-controlled residual pay on MemLM (and on the GPT baseline)?

    python bench/residuals.py --json OUT.json                    # MemLM and GPT, 3 seeds each
    python bench/residuals.py --families memlm --json OUT.json   # MemLM only
    python bench/residuals.py --gain-sweep --json OUT.json       # + PID / P-only at gains x0.3 and x3

Each family (``memlm``: the default MemLM; ``gpt``: nanoGPT) trains on the cpu-small preset of
``bench/lm_vs_gpt.py`` (Tiny Shakespeare characters, 2,000 iterations, its 81/9/10 split and
seeds) in every ``VARIANTS`` entry: the plain model, the ``residual`` options of
:mod:`assocmem.lm.residual` (LAuReL RW, LR at rank 4, PA; PID and P-only at their config
defaults, chosen before any run and not tuned), and the plain model with one more layer, the
LAuReL paper's yardstick. The plain runs are the ones ``bench/lm_vs_gpt.py`` trains (same
configuration, same result files: reused, not retrained).

Per variant (means over seeds): val and test loss; ``tokens_per_s_ratio`` against the plain
model, measured side by side after training (``lm_vs_gpt.speed``); ``noisy_val_loss``: val loss
with 5 % / 10 % of the input tokens replaced by uniformly random ones (targets clean), the
robustness PIDformer claims; ``last_layer_effective_rank``: the effective rank (Roy & Vetterli
2007, exp of the entropy of the normalised singular values) of each val sequence's last-layer
token states ``(T, d)``, averaged, PIDformer's claim on token diversity; ``gain_fraction``:
``(L_plain − L_variant) / (L_plain − L_one_more_layer)`` on val (LAuReL's measure), with
``param_fraction`` the same ratio of extra parameters. A test-loss difference to plain is called
real only beyond twice the pooled seed sd (``verdict``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import lm_vs_gpt as lv

VARIANTS = {
    "plain": {},
    "laurel-rw": {"residual": "laurel-rw"},
    "laurel-lr": {"residual": "laurel-lr", "laurel_rank": 4},
    "laurel-pa": {"residual": "laurel-pa", "laurel_rank": 4},
    "pid": {"residual": "pid"},
    "p-only": {"residual": "p-only"},
    "plain+1layer": {"n_layer": lv.PRESETS["cpu-small"]["model"]["n_layer"] + 1},
}
# --gain-sweep: PID / P-only at other gains than the a-priori defaults, MemLM, seed 1337, val only
# (does any gain help?); the defaults stay the table's variants whatever this finds.
GAIN_SWEEP = {
    "pid_p0.03": {"residual": "pid", "pid_p": 0.03, "pid_i": 0.003, "pid_d": 0.015},
    "pid_p0.3": {"residual": "pid", "pid_p": 0.3, "pid_i": 0.03, "pid_d": 0.15},
    "p-only_p0.03": {"residual": "p-only", "pid_p": 0.03},
    "p-only_p0.3": {"residual": "p-only", "pid_p": 0.3},
}
FAMILIES = ("memlm", "gpt")
NOISE = (0.05, 0.10)
EVAL_BATCHES = 50  # per noise level and for the rank: 50 x 12 windows of 64 tokens


def run_name(family: str, variant: str) -> str:
    """The plain runs share ``bench/lm_vs_gpt.py``'s names, so its result files are reused."""
    return family if variant == "plain" else f"{family}_{variant}"


def config(args, family: str, variant: str, seed: int) -> dict:
    return lv.config_for(args, {"kind": family, **{**VARIANTS, **GAIN_SWEEP}[variant]}, seed)


def result(args, family: str, variant: str, seed: int) -> Path:
    return lv.result_path(
        args.out_dir, run_name(family, variant), config(args, family, variant, seed)
    )


def command(args, family: str, variant: str, seed: int) -> list[str]:
    cmd = [sys.executable, __file__, "--child", f"{family}/{variant}", "--seed", str(seed)]
    cmd += ["--threads", str(args.threads), "--out-dir", args.out_dir, "--preset", args.preset]
    return cmd + ["--iters", str(args.iters), "--eval-iters", str(args.eval_iters)]


def effective_rank(states):
    """Mean over sequences of exp(H(σ / Σσ)), σ the singular values of one sequence's ``(T, d)``."""
    import torch

    s = torch.linalg.svdvals(states.double())  # (B, min(T, d))
    p = s / s.sum(-1, keepdim=True)  # (B, k)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)  # (B,)
    return float(h.exp().mean())


def extras(run_dir: Path) -> dict:
    """The trained model's noisy val losses and last-layer effective rank."""
    import torch

    from assocmem.lm.data import get_batch, load_text, split_three
    from assocmem.lm.train import load_model

    model, tok, _ = load_model(run_dir)
    model.eval()
    val = split_three(tok.encode(load_text(lv.DATA))).val
    block, batch = model.config.block_size, 12
    out: dict = {"noisy_val_loss": {}}
    with torch.no_grad():
        for rate in NOISE:
            gen = torch.Generator().manual_seed(7)  # the same batches and noise for every model
            losses = []
            for _ in range(EVAL_BATCHES):
                x, y = get_batch(val, block, batch, gen)  # (B, T) each
                hit = torch.rand(x.shape, generator=gen) < rate  # (B, T)
                noise = torch.randint(0, tok.vocab_size, x.shape, generator=gen)  # (B, T)
                losses.append(model(torch.where(hit, noise, x), y)[1].item())
            out["noisy_val_loss"][f"{rate:.2f}"] = statistics.fmean(losses)
        gen = torch.Generator().manual_seed(8)
        last = model.hook_names[-1]
        ranks = []
        for _ in range(EVAL_BATCHES // 5):
            x, _ = get_batch(val, block, batch, gen)
            _, cache = model.run_with_cache(x, names_filter=lambda n: n == last)
            ranks.append(effective_rank(cache[last]))  # cache: (B, T, d)
    out["last_layer_effective_rank"] = statistics.fmean(ranks)
    return out


def measured(args, family: str, variant: str, seed: int) -> dict | None:
    """The run's result merged with its extras (computed once, kept beside the result)."""
    res = result(args, family, variant, seed)
    if not res.is_file():
        return None
    side = res.with_suffix(".extras.json")
    if not side.is_file():
        tmp = side.with_suffix(".tmp")
        tmp.write_text(json.dumps(extras(res.with_suffix(""))))
        tmp.replace(side)
    return {**json.loads(res.read_text()), **json.loads(side.read_text())}


def _mean_sd(v: list[float]) -> tuple[float, float]:
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def summarize(runs: list[dict]) -> dict:
    val_m, val_sd = _mean_sd([r["val_loss"] for r in runs])
    test_m, test_sd = _mean_sd([r["test_loss"] for r in runs])
    return {
        "params": runs[0]["params"],
        "seeds": [r["seed"] for r in runs],
        "val_loss_mean": val_m,
        "val_loss_sd": val_sd,
        "test_loss_mean": test_m,
        "test_loss_sd": test_sd,
        "noisy_val_loss": {
            k: statistics.fmean(r["noisy_val_loss"][k] for r in runs)
            for k in runs[0]["noisy_val_loss"]
        },
        "last_layer_effective_rank": statistics.fmean(r["last_layer_effective_rank"] for r in runs),
        "tokens_per_s_in_run": statistics.fmean(r["tokens_per_s"] for r in runs),
    }


def against_plain(fam: dict) -> None:
    """Gain fraction, parameter fraction and the test verdict of each variant vs plain."""
    plain, more = fam.get("plain"), fam.get("plain+1layer")
    for v in fam.values():
        if plain is None:
            break
        diff = v["test_loss_mean"] - plain["test_loss_mean"]
        pooled = math.sqrt((v["test_loss_sd"] ** 2 + plain["test_loss_sd"] ** 2) / 2)
        v["test_diff_vs_plain"] = diff
        v["verdict"] = (
            "better" if diff < -2 * pooled else "worse" if diff > 2 * pooled else "no difference"
        )
        if len(v["seeds"]) < 2 or len(plain["seeds"]) < 2:
            v["verdict"] = "undecided (one seed)"
        if more is not None and more is not plain:
            gain = plain["val_loss_mean"] - more["val_loss_mean"]
            extra = more["params"] - plain["params"]
            v["gain_fraction"] = (
                (plain["val_loss_mean"] - v["val_loss_mean"]) / gain if gain else None
            )
            v["param_fraction"] = (v["params"] - plain["params"]) / extra


def speeds(args, families: list[str]) -> dict[str, float]:
    """tokens/s ratio to the plain model of each family, measured side by side in one run."""
    configs = {f"{f}/{v}": config(args, f, v, lv.SEED0) for f in families for v in VARIANTS}
    tps = lv.speed(args, configs)
    return {k: tps[k] / tps[f"{k.split('/')[0]}/plain"] for k in tps}


def markdown(results: dict) -> str:
    rows = []
    for family in FAMILIES:
        if family not in results:
            continue
        rows += [f"\n{family}:\n",
                 "| variant | params | val loss | test loss (mean ± sd) | vs plain (test) | noisy val 5 % | 10 % | eff. rank | gain fraction | param fraction | speed |",
                 "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name, v in results[family].items():
            g, pf = v.get("gain_fraction"), v.get("param_fraction")
            rows.append(
                f"| {name} | {v['params']:,} | {v['val_loss_mean']:.4f} | {v['test_loss_mean']:.4f} ± {v['test_loss_sd']:.4f} "
                f"| {v.get('test_diff_vs_plain', 0):+.4f} {v.get('verdict', '')} "
                f"| {v['noisy_val_loss']['0.05']:.4f} | {v['noisy_val_loss']['0.10']:.4f} "
                f"| {v['last_layer_effective_rank']:.1f} | {'' if g is None else f'{g:+.2f}'} "
                f"| {'' if pf is None else f'{pf:.3f}'} | {v.get('tokens_per_s_ratio', float('nan')):.2f} |"
            )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated: memlm, gpt")
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated, from: " + ", ".join(VARIANTS),
    )
    ap.add_argument("--seeds", type=int, default=3, help="seeds per variant (1337, 1338, ...)")
    ap.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    ap.add_argument("--no-train", action="store_true", help="only finished runs")
    ap.add_argument(
        "--speed-rounds", type=int, default=5, help="side-by-side speed rounds (0: skip)"
    )
    ap.add_argument("--speed-steps", type=int, default=20, help="steps per model per speed round")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads per run (1: see lm_vs_gpt.py)"
    )
    ap.add_argument("--out-dir", default=str(lv.ROOT / "runs/bench"))
    ap.add_argument("--preset", choices=sorted(lv.PRESETS), default="cpu-small")
    ap.add_argument("--iters", type=int, default=0, help="override max_iters (exploration only)")
    ap.add_argument(
        "--eval-iters", type=int, default=0, help="override eval batches (exploration only)"
    )
    ap.add_argument(
        "--gain-sweep",
        action="store_true",
        help="also PID / P-only at other gains (MemLM, seed 1337, val)",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=lv.SEED0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.quiet, args.compile = True, False
    if not lv.DATA.is_file():
        sys.exit(f"Tiny Shakespeare not found at {lv.DATA}.")
    families = [f for f in args.families.split(",") if f]
    variants = [v for v in args.variants.split(",") if v]
    if bad := [f for f in families if f not in FAMILIES] + [
        v for v in variants if v not in VARIANTS
    ]:
        sys.exit(
            f"unknown family or variant {bad}; families {list(FAMILIES)}, variants {list(VARIANTS)}"
        )
    if args.child:
        family, variant = args.child.split("/")
        cfg = config(args, family, variant, args.seed)
        return lv.train_one(
            run_name(family, variant), cfg, result(args, family, variant, args.seed), args
        )
    seeds = [lv.SEED0 + i for i in range(args.seeds)]
    if not args.no_train:  # seed by seed, so a partial set has whole seeds of every variant
        jobs = [(run_name(f, v), s, result(args, f, v, s), command(args, f, v, s))
                for s in seeds for f in families for v in variants]  # fmt: skip
        lv.train_jobs(jobs, args.jobs)
    if args.gain_sweep and not args.no_train:
        lv.train_jobs([(run_name("memlm", v), lv.SEED0, result(args, "memlm", v, lv.SEED0),
                        command(args, "memlm", v, lv.SEED0)) for v in GAIN_SWEEP], args.jobs)  # fmt: skip
    import torch

    torch.set_num_threads(args.threads or 1)
    results: dict = {"missing": []}
    sweep = {v: result(args, "memlm", v, lv.SEED0) for v in ("plain", "pid", "p-only", *GAIN_SWEEP)}
    if args.gain_sweep:  # val loss of seed 1337 at each gain (the defaults' runs beside them)
        results["gain_sweep_val_seed1337"] = {
            v: json.loads(p.read_text())["val_loss"] for v, p in sweep.items() if p.is_file()
        }
    for f in families:
        results[f] = {}
        for v in variants:
            runs = [r for s in seeds if (r := measured(args, f, v, s)) is not None]
            results["missing"] += [f"{f}/{v}/seed{s}" for s in seeds[len(runs) :]]
            if runs:
                results[f][v] = summarize(runs)
        against_plain(results[f])
    if args.speed_rounds:
        for k, ratio in speeds(args, families).items():
            f, v = k.split("/")
            if v in results[f]:
                results[f][v]["tokens_per_s_ratio"] = ratio
    results.update(machine=lv.machine(), preset=args.preset, threads=args.threads)
    print(markdown(results))
    if results["missing"]:
        print("not finished:", ", ".join(results["missing"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
