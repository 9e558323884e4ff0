"""MemLM against three baselines and its own ablations, on Tiny Shakespeare characters, over seeds.

    python bench/lm_vs_gpt.py --preset cpu-small --seeds 3 --json OUT.json
    python bench/lm_vs_gpt.py --preset cpu-small --seeds 3 --no-train --json OUT.json  # finished runs only

Models (``MODELS``): ``memlm`` (the default MemLM), ``gpt`` (nanoGPT: learned absolute
positions), ``gpt_rope`` (nanoGPT with MemLM's rotary code, :mod:`assocmem.lm.rotary`) and
``llama`` (rotary + RMSNorm + SwiGLU at nanoGPT's parameter budget); ``ABLATIONS`` change one
thing of MemLM each (absolute positions, no swapped "MLP" read, 128 / 512 slots; 256 is the
default ``memlm``).

Data: nanoGPT's 90/10 split, the last 10 % the **test** set (reported only); **val** is the
last 10 % of the 90 % (every choice is made on it), train the first 81 %
(:func:`assocmem.lm.data.split_three`). Each (model, seed) run trains in its own child
process (so the peak memory is its own) with the same data, AdamW and schedule, the seed
changing the init and the batches; it writes ``<out-dir>/<preset>/<name>/seed<S>-<config
hash>.json`` and is reused by any later call with the same configuration, so a crash or a
deadline loses only the run in progress (it resumes from its last checkpoint). Losses are
means over ``eval_iters`` (200) batches. A difference is called a win only when larger than
twice the pooled sd of the two models' seeds.

``tokens_per_s`` is measured after training side by side (alternating rounds of training
steps on fresh models, median per model, ``--speed-rounds``) because a shared machine's load
changes between runs; the mean rate seen during each model's training runs is kept as
``tokens_per_s_in_run``. ``--compile`` measures the speed rounds with each model's layers
through ``torch.compile`` (its warm-up round includes the compilation).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "../shared/data/tinyshakespeare/input.txt"
SEED0 = 1337  # nanoGPT's seed; seed i of a run set is SEED0 + i

# nanoGPT README, "I only have a macbook": 4 layers, 128 wide, 4 heads, context 64, batch 12,
# 2000 iterations, lr 1e-3 cosine to 1e-4, dropout 0 -> val 1.88 at 0.80M params.
PRESETS = {
    "cpu-small": {
        "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "dropout": 0.0},
        "train": {
            "batch_size": 12,
            "max_iters": 2000,
            "lr": 1e-3,
            "min_lr": 1e-4,
            "warmup_iters": 100,
            "eval_iters": 200,
        },
    },
    # nanoGPT's config/train_shakespeare_char.py (val 1.47 on an A100).
    "gpu": {
        "model": {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "dropout": 0.2},
        "train": {
            "batch_size": 64,
            "max_iters": 5000,
            "lr": 1e-3,
            "min_lr": 1e-4,
            "warmup_iters": 100,
            "eval_iters": 200,
        },
    },
}

# What each model changes on top of the preset's shared shape.
MODELS = {
    "memlm": {"kind": "memlm"},
    "gpt": {"kind": "gpt"},
    "gpt_rope": {"kind": "gpt", "pos": "rope"},
    "llama": {"kind": "gpt", "pos": "rope", "norm": "rms", "mlp": "swiglu"},
}
ABLATIONS = {
    "memlm_abs_pos": {"kind": "memlm", "pos": "learned"},
    "memlm_no_mlp_read": {"kind": "memlm", "mlp_bank": "none"},
    "memlm_slots128": {"kind": "memlm", "n_slots": 128},
    "memlm_slots512": {"kind": "memlm", "n_slots": 512},
}


def _parse_value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    else:
        cpu = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        dev = f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return f"{dev}; torch {torch.__version__}; {platform.system()} {platform.release()}"


def config_for(args, model_extra: dict, seed: int) -> dict:
    """Everything one run depends on (its identity for reuse): the preset's shape and
    schedule, ``model_extra`` on top of the shape, the seed and the CLI's overrides."""
    p = PRESETS[args.preset]
    tr = {**p["train"], "eval_interval": 0, "ckpt_interval": 250, "seed": seed}
    if args.iters:
        tr["max_iters"] = args.iters
    if args.eval_iters:
        tr["eval_iters"] = args.eval_iters
    tr["lr_decay_iters"] = tr["max_iters"]
    model = {**p["model"], **model_extra}
    return {"preset": args.preset, "model": model, "train": tr, "threads": args.threads}


def run_config(args, name: str, seed: int) -> dict:
    """Everything one (model, seed) run depends on: its identity for reuse."""
    extra = dict({**MODELS, **ABLATIONS}[name])
    if name == "memlm":
        extra.update({k: _parse_value(v) for k, v in (kv.split("=", 1) for kv in args.memlm)})
    return config_for(args, extra, seed)


def result_path(out_dir: str, name: str, cfg: dict) -> Path:
    """``<out_dir>/<preset>/<name>/seed<S>-<config hash>.json``: the run's result file."""
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:10]
    return Path(out_dir) / cfg["preset"] / name / f"seed{cfg['train']['seed']}-{h}.json"


def run_path(args, name: str, seed: int) -> Path:
    return result_path(args.out_dir, name, run_config(args, name, seed))


def child(args) -> None:
    """Train one (model, seed) run and write its result file (resuming a checkpoint if any)."""
    name, seed = args.child, args.seed
    train_one(name, run_config(args, name, seed), run_path(args, name, seed), args)


def train_one(name: str, cfg: dict, res: Path, args) -> None:
    """Train the run ``cfg`` into ``res``'s folder (resuming its checkpoint if any) and write
    the result file ``res`` atomically."""
    from assocmem.lm.checkpoint import checkpoint_json
    from assocmem.lm.train import DataConfig, RunConfig, TrainConfig, train

    seed = cfg["train"]["seed"]
    run_dir = res.with_suffix("")
    rc = RunConfig(
        out_dir=str(run_dir),
        data=DataConfig(path=str(DATA)),
        model=dict(cfg["model"]),
        train=TrainConfig(**cfg["train"], threads=args.threads),
    )
    res.with_suffix(".pid").write_text(str(os.getpid()))  # another runner leaves this run alone
    resume = checkpoint_json(run_dir).is_file()
    r = train(rc, resume=resume, progress=not args.quiet)
    out = {
        "name": name,
        "seed": seed,
        "params": r.params,
        "val_loss": r.val_loss,
        "test_loss": r.test_loss,
        "train_loss": r.evals[-1]["train"],
        "tokens_per_s": r.tokens_per_s,
        "peak_mem_mb": r.peak_mem_mb,
        "iters": len(r.losses),
        "resumed": resume,
        "config": cfg,
    }
    tmp = res.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, res)  # atomic: a result file is whole or absent
    res.with_suffix(".pid").unlink(missing_ok=True)


def speed(args, configs: dict[str, dict]) -> dict[str, float]:
    """Training tokens/s of each model measured side by side: rounds of ``steps`` AdamW steps,
    alternating models, the median round per model (a shared machine's load hits all alike).
    ``configs`` maps each name to its run config (:func:`run_config`)."""
    import time

    import torch

    from assocmem.lm.data import CharTokenizer, get_batch, load_text, split_three
    from assocmem.lm.train import TrainConfig, _optimizer, build_model

    text = load_text(DATA)
    tok = CharTokenizer.train(text)
    data = split_three(tok.encode(text)).train
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models = {}
    for name, cfg in configs.items():
        m = build_model(dict(cfg["model"]), tok.vocab_size).to(device)
        if args.compile:  # each layer through torch.compile (inductor); the maths is unchanged
            for i, layer in enumerate(m.h):
                m.h[i] = torch.compile(layer)
        t = TrainConfig(**cfg["train"])
        models[name] = (m, _optimizer(m, t), t, cfg["model"]["block_size"])
    gen = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {n: [] for n in configs}
    for r in range(args.speed_rounds + 1):
        for name, (m, opt, t, block) in models.items():
            batches = [get_batch(data, block, t.batch_size, gen) for _ in range(args.speed_steps)]
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for x, y in batches:
                _, loss = m(x.to(device), y.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(m.parameters(), t.grad_clip)
                opt.step()
            loss.item()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r:  # round 0 warms up
                times[name].append(time.perf_counter() - t0)
    return {
        n: args.speed_steps * models[n][2].batch_size * models[n][3] / statistics.median(v)
        for n, v in times.items()
    }


def _in_progress(res: Path) -> bool:
    """True while a live process is training this run (its child wrote ``<run>.pid``)."""
    pid = res.with_suffix(".pid")
    try:
        os.kill(int(pid.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def train_missing(args, names: list[str], seeds: list[int]) -> None:
    """Train every (model, seed) run without a result file, ``--jobs`` child processes at a
    time, seed by seed (so a partial run set has whole seeds of every model)."""

    def command(name: str, seed: int) -> list[str]:
        cmd = [sys.executable, __file__, "--preset", args.preset, "--child", name]
        cmd += ["--seed", str(seed), "--threads", str(args.threads), "--out-dir", args.out_dir]
        cmd += ["--iters", str(args.iters), "--eval-iters", str(args.eval_iters), "--quiet"]
        return cmd + (["--memlm", *args.memlm] if args.memlm else [])

    jobs = [(n, s, run_path(args, n, s), command(n, s)) for s in seeds for n in names]
    train_jobs(jobs, args.jobs)


def train_jobs(jobs: list[tuple[str, int, Path, list[str]]], n_jobs: int) -> None:
    """Run each ``(name, seed, result path, child command)`` whose result file is missing
    (and that no live process is training), ``n_jobs`` children at a time."""
    todo = [j for j in jobs if not j[2].is_file() and not _in_progress(j[2])]
    print(f"{len(todo)} run(s) to train: {', '.join(f'{n}/{s}' for n, s, *_ in todo) or 'none'}")

    def one(job: tuple[str, int, Path, list[str]]) -> None:
        name, seed, res, cmd = job
        res.parent.mkdir(parents=True, exist_ok=True)
        with open(res.with_suffix(".log"), "a") as log:
            ok = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode == 0
        if ok:
            r = json.loads(res.read_text())
            print(
                f"{name} seed {seed}: {r['params']:,} params, val {r['val_loss']:.4f}, "
                f"test {r['test_loss']:.4f}, {r['tokens_per_s']:.0f} tok/s in run",
                flush=True,
            )
        else:
            print(f"{name} seed {seed}: FAILED, see {res.with_suffix('.log')}", flush=True)

    with ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        list(pool.map(one, todo))


def _sd(v: list[float]) -> float:
    return statistics.stdev(v) if len(v) > 1 else 0.0


def summarize(runs: list[dict]) -> dict:
    """One model's figures over its finished seeds (sd: sample sd, 0 for one seed)."""
    test = [r["test_loss"] for r in runs]
    val = [r["val_loss"] for r in runs]
    return {
        "params": runs[0]["params"],
        "test_loss_mean": statistics.fmean(test),
        "test_loss_sd": _sd(test),
        "val_loss_mean": statistics.fmean(val),
        "val_loss_sd": _sd(val),
        "val_loss": statistics.fmean(val),  # old key: the loss on held-out text (now val)
        "seeds": [r["seed"] for r in runs],
        "test_losses": test,
        "val_losses": val,
        "tokens_per_s_in_run": statistics.fmean(r["tokens_per_s"] for r in runs),
        "peak_mem_mb": max(r["peak_mem_mb"] for r in runs),
        "model": runs[0]["config"]["model"],
    }


def compare(a: dict, b: dict) -> dict:
    """``a`` minus ``b`` on test loss; a win (for the lower) only beyond twice the pooled sd."""
    diff = a["test_loss_mean"] - b["test_loss_mean"]
    pooled = ((a["test_loss_sd"] ** 2 + b["test_loss_sd"] ** 2) / 2) ** 0.5
    n = min(len(a["seeds"]), len(b["seeds"]))
    verdict = "win" if diff < -2 * pooled else "loss" if diff > 2 * pooled else "tie"
    if n < 2:
        verdict = "undecided (one seed)"
    return {"test_diff": diff, "pooled_sd": pooled, "verdict": verdict, "seeds": n}


def markdown(results: dict) -> str:
    """The results as the markdown tables of ``bench/RESULTS.md``."""
    rows = [
        "| model | params | test loss (mean ± sd) | val loss | seeds | tokens/s | vs gpt | vs gpt_rope | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    every = {n: r for n, r in results.items() if n in MODELS} | results["ablations"]
    for name, m in every.items():
        rows.append(
            f"| {name} | {m['params']:,} | {m['test_loss_mean']:.4f} ± {m['test_loss_sd']:.4f} "
            f"| {m['val_loss_mean']:.4f} | {len(m['seeds'])} | {m['tokens_per_s']:,.0f} "
            f"| {m.get('speed_vs_gpt', float('nan')):.2f} | {m.get('speed_vs_gpt_rope', float('nan')):.2f} "
            f"| {m['peak_mem_mb']:.0f} MB |"
        )
    rows += [
        "",
        "| MemLM minus | test loss | 2 × pooled sd | seeds | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for k, c in results["comparisons"].items():
        rows.append(
            f"| {k.split(' - ')[1]} | {c['test_diff']:+.4f} | {2 * c['pooled_sd']:.4f} | {c['seeds']} | {c['verdict']} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per model (1337, 1338, ...)")
    ap.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated, from: " + ", ".join(MODELS)
    )
    ap.add_argument("--no-ablations", action="store_true", help="skip the MemLM ablations")
    ap.add_argument(
        "--no-train", action="store_true", help="only finished runs: summarize and measure speed"
    )
    ap.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    ap.add_argument(
        "--iters", type=int, default=0, help="override max_iters (short exploratory runs)"
    )
    ap.add_argument(
        "--eval-iters", type=int, default=0, help="override the 200 eval batches (exploration only)"
    )
    ap.add_argument(
        "--memlm", nargs="*", default=[], metavar="KEY=VALUE", help="MemLMConfig overrides"
    )
    # 1 thread by default: on a 2-core machine shared with other work, 2 OpenMP threads stall
    # whenever a core is taken, and side-by-side speed ratios swing from 0.1x to 2x.
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: auto)")
    ap.add_argument("--out-dir", default=str(ROOT / "runs/bench"))
    ap.add_argument(
        "--speed-rounds", type=int, default=7, help="side-by-side speed rounds (0: skip)"
    )
    ap.add_argument(
        "--speed-steps", type=int, default=20, help="training steps per model per speed round"
    )
    ap.add_argument(
        "--compile",
        action="store_true",
        help="speed rounds with every model's layers through torch.compile (training stays eager)",
    )
    ap.add_argument(
        "--speed-from",
        metavar="JSON",
        help="take tokens/s from an earlier --json output's side-by-side rounds instead of measuring",
    )
    ap.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    ap.add_argument("--quiet", action="store_true", help="no progress bar (children always quiet)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=SEED0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not DATA.is_file():
        sys.exit(
            f"Tiny Shakespeare not found at {DATA}; this benchmark needs ../shared/data/tinyshakespeare/input.txt."
        )
    if args.child:
        return child(args)
    names = [n for n in args.models.split(",") if n]
    if unknown := [n for n in names if n not in MODELS]:
        sys.exit(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    abl = [] if args.no_ablations else list(ABLATIONS)
    seeds = [SEED0 + i for i in range(args.seeds)]
    if not args.no_train:
        train_missing(args, names + abl, seeds)
    results: dict = {"ablations": {}, "comparisons": {}, "missing": []}
    for name in names + abl:
        runs = []
        for s in seeds:
            p = run_path(args, name, s)
            if p.is_file():
                runs.append(json.loads(p.read_text()))
            else:
                results["missing"].append(f"{name}/seed{s}")
        if runs:
            (results["ablations"] if name in ABLATIONS else results)[name] = summarize(runs)
    models = {n: r for n, r in results.items() if n in MODELS}
    models.update(results["ablations"])
    import torch

    torch.set_num_threads(args.threads or 1)
    tps = {}
    if args.speed_from:  # an earlier command's side-by-side rounds (they train fresh models)
        tps = json.loads(Path(args.speed_from).read_text())["tokens_per_s_side_by_side"]
        tps = {n: v for n, v in tps.items() if n in names + abl}
        results["speed_from"] = args.speed_from
    elif args.speed_rounds:  # every model asked for, finished or not (fresh models)
        tps = speed(args, {n: run_config(args, n, SEED0) for n in names + abl})
    if tps:
        results["tokens_per_s_side_by_side"] = tps
        for name, v in tps.items():
            ratios = {f"speed_vs_{r}": v / tps[r] for r in ("gpt", "gpt_rope") if r in tps}
            print(f"{name}: {v:.0f} tokens/s side by side, {ratios}", flush=True)
            if name in models:
                models[name].update(tokens_per_s=v, **ratios)
    if "memlm" in models:
        for name, m in models.items():
            if name != "memlm":
                results["comparisons"][f"memlm - {name}"] = compare(models["memlm"], m)
    for name, m in models.items():
        m.setdefault("tokens_per_s", m["tokens_per_s_in_run"])  # without speed rounds
        print(
            f"{name:18} {m['params']:>9,} params  test {m['test_loss_mean']:.4f} ± {m['test_loss_sd']:.4f}"
            f"  val {m['val_loss_mean']:.4f}  ({len(m['seeds'])} seeds)"
            f"  speed vs gpt {m.get('speed_vs_gpt', float('nan')):.2f}"
            f"  vs gpt_rope {m.get('speed_vs_gpt_rope', float('nan')):.2f}"
        )
    for k, c in results["comparisons"].items():
        print(
            f"{k:28} test {c['test_diff']:+.4f}  2·pooled sd {2 * c['pooled_sd']:.4f}  {c['verdict']}"
        )
    if results["missing"]:
        print("not finished:", ", ".join(results["missing"]))
    results["machine"] = machine()
    results["preset"] = args.preset
    results["threads"] = args.threads
    results["speed_compiled"] = args.compile
    if args.markdown:
        print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
