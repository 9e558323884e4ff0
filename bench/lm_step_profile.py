"""Where a training step's time goes: torch.profiler over cpu-small training steps, per model.

    python bench/lm_step_profile.py --models memlm,gpt_rope --steps 20 --json OUT.json

Models and shapes are ``bench/lm_vs_gpt.py``'s (same names). 1 torch thread by default; the
table is self CPU time per op summed over the profiled steps (after ``--warmup`` steps).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_vs_gpt import ABLATIONS, DATA, MODELS, PRESETS  # noqa: E402

from assocmem.lm.data import CharTokenizer, get_batch, load_text, split_three  # noqa: E402
from assocmem.lm.train import TrainConfig, _optimizer, build_model  # noqa: E402


def step_profile(name: str, args) -> list[dict]:
    """The ``--top`` ops by self CPU time over ``--steps`` training steps of model ``name``."""
    p = PRESETS["cpu-small"]
    text = load_text(DATA)
    tok = CharTokenizer.train(text)
    data = split_three(tok.encode(text)).train
    torch.manual_seed(0)
    m = build_model({**p["model"], **{**MODELS, **ABLATIONS}[name]}, tok.vocab_size)
    t = TrainConfig(**p["train"])
    opt = _optimizer(m, t)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        x, y = get_batch(data, p["model"]["block_size"], t.batch_size, gen)  # (B, T) each
        _, loss = m(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), t.grad_clip)
        opt.step()

    for _ in range(args.warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    ev = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ev)
    return [
        {
            "op": e.key,
            "self_ms_per_step": e.self_cpu_time_total / 1e3 / args.steps,
            "share": e.self_cpu_time_total / total,
            "calls_per_step": e.count / args.steps,
        }
        for e in ev[: args.top]
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="memlm,gpt_rope")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {}
    for name in args.models.split(","):
        out[name] = step_profile(name, args)
        total = sum(r["self_ms_per_step"] for r in out[name])
        print(f"\n{name}: top {args.top} ops, {total:.1f} ms/step among them")
        for r in out[name]:
            print(
                f"  {r['op']:40} {r['self_ms_per_step']:7.2f} ms  {r['share']:5.1%}  x{r['calls_per_step']:.0f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
