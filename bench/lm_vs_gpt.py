"""MemLM vs the nanoGPT baseline on Tiny Shakespeare characters, one after the other.

    python bench/lm_vs_gpt.py --preset cpu-small --json OUT.json
    python bench/lm_vs_gpt.py --preset cpu-small --iters 400 --memlm n_slots=256 mlp_bank=separate

Each model trains in its own child process (so the peak memory is its own) with the same
data, seed, AdamW and schedule; the val loss is the mean over ``eval_iters`` (200) batches
of the held-out 10%. tokens/s counts training steps only; because a shared machine's load
changes between the two runs, ``tokens_per_s`` is measured afterwards side by side
(alternating rounds of training steps, median per model; ``--speed-rounds``) and the
rate seen during each training run is kept as ``tokens_per_s_in_run``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "../shared/data/tinyshakespeare/input.txt"

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


def child(args) -> None:
    import torch

    from assocmem.lm.train import DataConfig, RunConfig, TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    p = PRESETS[args.preset]
    model = {"kind": args.child, **p["model"]}
    if args.child == "memlm":
        model.update({k: _parse_value(v) for k, v in (kv.split("=", 1) for kv in args.memlm)})
    tr = {**p["train"], "eval_interval": 0, "ckpt_interval": 0}
    if args.iters:
        tr["max_iters"] = args.iters
    if args.eval_iters:
        tr["eval_iters"] = args.eval_iters
    tr["lr_decay_iters"] = tr["max_iters"]
    cfg = RunConfig(
        out_dir=str(Path(args.out_dir) / args.child),
        data=DataConfig(path=str(DATA)),
        model=model,
        train=TrainConfig(**tr),
    )
    r = train(cfg, progress=not args.quiet)
    out = {
        "params": r.params,
        "val_loss": r.val_loss,
        "train_loss": r.evals[-1]["train"],
        "tokens_per_s": r.tokens_per_s,
        "peak_mem_mb": r.peak_mem_mb,
        "iters": len(r.losses),
        "eval_batches": tr["eval_iters"],
        "model": model,
    }
    Path(args.result).write_text(json.dumps(out))


def speed(args, configs: dict[str, dict]) -> dict[str, float]:
    """Training tokens/s of each model measured side by side: rounds of ``steps`` AdamW steps,
    alternating models, the median round per model (a shared machine's load hits both alike).
    ``configs`` maps each name to the model config it was trained (or reused) with."""
    import statistics
    import time

    import torch

    from assocmem.lm.data import CharTokenizer, get_batch, load_text, split_ids
    from assocmem.lm.train import TrainConfig, _optimizer, build_model

    p = PRESETS[args.preset]
    text = load_text(DATA)
    tok = CharTokenizer.train(text)
    data, _ = split_ids(tok.encode(text))
    t = TrainConfig(**p["train"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models = {}
    for name, model in configs.items():
        m = build_model(dict(model), tok.vocab_size).to(device)
        models[name] = (m, _optimizer(m, t))
    gen = torch.Generator().manual_seed(0)
    block, steps = p["model"]["block_size"], args.speed_steps
    times: dict[str, list[float]] = {n: [] for n in configs}
    for r in range(args.speed_rounds + 1):
        for name, (m, opt) in models.items():
            batches = [get_batch(data, block, t.batch_size, gen) for _ in range(steps)]
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
    return {n: steps * t.batch_size * block / statistics.median(v) for n, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument(
        "--iters", type=int, default=0, help="override max_iters (short exploratory runs)"
    )
    ap.add_argument(
        "--eval-iters", type=int, default=0, help="override the 200 eval batches (exploration only)"
    )
    ap.add_argument("--models", default="memlm,gpt", help="comma-separated, run in this order")
    ap.add_argument(
        "--memlm", nargs="*", default=[], metavar="KEY=VALUE", help="MemLMConfig overrides"
    )
    # 1 thread by default: on a 2-core machine shared with other work, 2 OpenMP threads stall
    # whenever a core is taken, and side-by-side speed ratios swing from 0.1x to 2x.
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch default)")
    ap.add_argument("--out-dir", default=str(ROOT / "runs/bench"))
    ap.add_argument(
        "--speed-rounds",
        type=int,
        default=5,
        help="side-by-side speed rounds after training (0: skip)",
    )
    ap.add_argument(
        "--speed-steps", type=int, default=20, help="training steps per model per speed round"
    )
    ap.add_argument(
        "--reuse",
        help="take the results of the models not named in --models from this earlier --json output (e.g. --models '' to measure speed only)",
    )
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not DATA.is_file():
        sys.exit(
            f"Tiny Shakespeare not found at {DATA}; this benchmark needs ../shared/data/tinyshakespeare/input.txt."
        )
    if args.child:
        return child(args)
    results: dict = {}
    train_now = [n for n in args.models.split(",") if n]
    if args.reuse:  # results of an earlier run for the models not trained now
        old = json.loads(Path(args.reuse).read_text())
        results = {k: v for k, v in old.items() if k in ("memlm", "gpt") and k not in train_now}
    for name in train_now:
        with tempfile.TemporaryDirectory() as tmp:
            res = Path(tmp) / "r.json"
            cmd = [
                sys.executable,
                __file__,
                "--preset",
                args.preset,
                "--child",
                name,
                "--result",
                str(res),
                "--threads",
                str(args.threads),
                "--out-dir",
                args.out_dir,
                "--iters",
                str(args.iters),
                "--eval-iters",
                str(args.eval_iters),
            ]
            cmd += ["--memlm", *args.memlm] if args.memlm else []
            cmd += ["--quiet"] if args.quiet else []
            subprocess.run(cmd, check=True)
            results[name] = json.loads(res.read_text())
        r = results[name]
        print(
            f"{name}: {r['params']:,} params, val loss {r['val_loss']:.4f}, {r['tokens_per_s']:.0f} tokens/s, peak {r['peak_mem_mb']:.0f} MB",
            flush=True,
        )
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in ("memlm", "gpt") if n in results]
    if args.speed_rounds and names:
        for name, tps in speed(args, {n: results[n]["model"] for n in names}).items():
            results[name]["tokens_per_s_side_by_side"] = tps
            results[name].setdefault("tokens_per_s_in_run", results[name]["tokens_per_s"])
            results[name]["tokens_per_s"] = tps
            print(f"{name}: {tps:.0f} tokens/s side by side", flush=True)
    results["machine"] = machine()
    results["preset"] = args.preset
    if "memlm" in results and "gpt" in results:
        m, g = results["memlm"], results["gpt"]
        print(
            f"memlm - gpt val loss: {m['val_loss'] - g['val_loss']:+.4f}; speed ratio {m['tokens_per_s'] / g['tokens_per_s']:.2f}; params ratio {m['params'] / g['params']:.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
