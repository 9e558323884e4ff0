"""Continual learning: how much of task A does each method forget while it learns task B?

    python bench/continual.py --jobs 2 --json bench/continual.json

**LM part.** Task A: Tiny Shakespeare; task B: Pushkin's prose; one byte-level BPE tokenizer
trained over both (``[data] tokenizer_texts``), so the vocabulary is shared and every loss is
in nats per token of one tokenizer. A MemLM (nanoGPT's cpu shape: 4 layers x 128, context
64, batch 12) trains on A, then each method continues it on B with one ``assocmem train``
config (:func:`configs`):

- ``finetune``: B alone;
- ``replay_real``: a fixed budget of A's training tokens mixed into B's batches (stores A data);
- ``replay_self``: ReCL's idea for an LM: tokens sampled from the A model mixed in (no A data);
- ``slot_growth``: new slots per bank for B, the old slots frozen, every other weight slowed;
- ``joint``: a fresh model on A and B together, as many steps as A then B (the ceiling).

``forgetting = val_A(after B) - val_A(after A)`` (on A's val split); ``val_B`` on B's val
split; test-split losses are reported beside them and never used for a choice. The two
free choices (the replay fraction, growth's lr factor) are made on seed 1337's val losses
(:func:`choose`): the option with the least forgetting among those whose val_B is within
``GOAL_B`` of fine-tuning's, else the best mean of val_A and val_B.

Each run trains in its own child process (1 torch thread) and writes ``<out-dir>/<name>/seed<S>-<hash>.json``,
reused by any later call with the same configuration (the hash covers the run's config and,
for B runs, its A run's), so a deadline loses only the runs in progress (they resume from
their last checkpoint).

**Digits part.** ReCL in its own setting (split digits, ``assocmem.recl.digits_benchmark``),
when that module is present.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_vs_gpt import PRESETS, _sd, machine, train_jobs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEXT_A = ROOT / "../shared/data/tinyshakespeare/input.txt"
TEXT_B = ROOT / "../shared/data/pushkin/pushkin_prose.txt"
SEED0 = 1337
METHODS = ("finetune", "replay_real", "replay_self", "slot_growth", "joint")
GOAL_B = 0.02  # the issue's goal: val_B within this of fine-tuning's
GOAL_FORGET = 1 / 3  # ... and forgetting under this fraction of fine-tuning's
CHOICES = {  # the options tried on seed 1337's val split, per method (:func:`choose`)
    "replay_self": [{"replay_frac": f} for f in (0.1, 0.25, 0.5)]
    # a second round, added when no share above kept val_B within GOAL_B: one window of 12
    # is the least a batch can replay, so a smaller share replays into every k-th batch only
    + [{"replay_frac": 0.1, "replay_every": k} for k in (2, 4)],
    "slot_growth": [{"frozen_lr": v} for v in (0.0, 0.1, 0.3)],
}
# Other options run on every seed beside the chosen ones, reported as their own rows (not
# chosen by the rule): self replay in every batch (the first round's choice) and in every 4th.
OTHER_OPTIONS = {
    "replay_self_every1": ("replay_self", {"replay_frac": 0.1, "replay_every": 1}),
    "replay_self_every4": ("replay_self", {"replay_frac": 0.1, "replay_every": 4}),
}
STORES_A = {"finetune": False, "replay_real": True, "replay_self": False, "slot_growth": False,
            "joint": True}  # fmt: skip


def base(args) -> dict:
    """The shape, data and schedule every run shares (nanoGPT's cpu-small, BPE over A and B)."""
    p = PRESETS["cpu-small"]
    tr = {**p["train"], "eval_interval": 0, "ckpt_interval": 200, "eval_iters": args.eval_iters}
    return {"model": {"kind": "memlm", **p["model"]}, "train": tr, "vocab": args.vocab}


def configs(args, seed: int, choice: dict | None = None) -> dict[str, dict]:
    """Every run of one seed as a config table (``[data]``, ``[model]``, ``[train]``,
    ``[continual]``) with ``parent``: the run it starts from. ``choice``: overrides of the
    methods' free options (default: ``args``'s)."""
    b = base(args)
    data = {
        "tokenizer": "bpe",
        "vocab_size": b["vocab"],
        "tokenizer_texts": [str(TEXT_A), str(TEXT_B)],
    }

    def train(iters: int) -> dict:
        return {**b["train"], "seed": seed, "max_iters": iters, "lr_decay_iters": iters}

    a = {"data": {**data, "path": str(TEXT_A)}, "model": b["model"], "train": train(args.iters_a)}
    on_b = {"data": {**data, "path": str(TEXT_B)}, "train": train(args.iters_b)}
    c = {"replay_frac": args.replay_frac, "frozen_lr": args.frozen_lr, "replay_every": 1,
         **(choice or {})}  # fmt: skip
    rep = {"replay_tokens": args.replay_tokens, "replay_frac": c["replay_frac"]}
    if c["replay_every"] != 1:  # only when asked: the earlier runs' configs (and hashes) stay
        rep["replay_every"] = c["replay_every"]
    runs = {
        "A": {**a, "parent": None},
        "finetune": {**on_b, "continual": {}, "parent": "A"},
        "replay_real": {**on_b, "continual": {"replay": "real", "prev_path": str(TEXT_A), **rep},
                        "parent": "A"},
        "replay_self": {**on_b, "continual": {"replay": "self", **rep}, "parent": "A"},
        "slot_growth": {**on_b, "continual": {"grow_slots": args.grow_slots,
                                              "frozen_lr": c["frozen_lr"]}, "parent": "A"},
        "joint": {**on_b, "model": b["model"], "train": train(args.iters_a + args.iters_b),
                  "continual": {"replay": "real", "prev_path": str(TEXT_A), "replay_tokens": 0,
                                "replay_frac": 0.5}, "parent": None},
    }  # fmt: skip
    return runs


def run_path(args, runs: dict, name: str, seed: int) -> Path:
    """``<out-dir>/<name>/seed<S>-<hash>.json``; the hash covers the config and its parents'."""
    chain, n = [], name
    while n is not None:
        chain.append(runs[n])
        n = runs[n]["parent"]
    text = json.dumps([chain, args.eval_iters], sort_keys=True).replace(str(ROOT), "<root>")
    h = hashlib.sha256(text.encode()).hexdigest()  # the same wherever the checkout lies
    return Path(args.out_dir) / name / f"seed{seed}-{h[:10]}.json"


def _losses(model, tok, eval_iters: int) -> dict[str, float]:
    """val and test losses of A and B, on the same batches for every run (fixed seeds)."""
    import torch

    from assocmem.lm.data import load_text, split_three
    from assocmem.lm.train import evaluate

    out = {}
    for task, path in (("A", TEXT_A), ("B", TEXT_B)):
        s = split_three(tok.encode(load_text(path)))
        for split, seed in (("val", 1), ("test", 2)):
            data = getattr(s, split)
            out[f"{split}_{task}"] = evaluate(
                model, data, model.config.block_size, 12, eval_iters, seed, torch.device("cpu")
            )
    return out


def child(args) -> None:
    """Train one run (resuming its checkpoint if any), evaluate it on A and B, write its result."""
    import torch

    from assocmem import settings
    from assocmem.lm.checkpoint import checkpoint_json
    from assocmem.lm.train import RunConfig, load_model, train

    seed, name = args.seed, args.child
    runs = configs(args, seed, json.loads(args.choice) if args.choice else None)
    res = run_path(args, runs, name, seed)
    run_dir = res.with_suffix("")
    table = {k: v for k, v in runs[name].items() if k != "parent"}
    table["train"] = {**table["train"], "threads": 1}
    if runs[name]["parent"]:
        parent = run_path(args, runs, runs[name]["parent"], seed).with_suffix("")
        table["continual"] = {**table["continual"], "init_from": str(parent)}
    cfg = settings.parse(RunConfig, {"out_dir": str(run_dir), **table})
    res.with_suffix(".pid").write_text(str(os.getpid()))
    resume = checkpoint_json(run_dir).is_file()
    t0 = time.perf_counter()
    r = train(cfg, resume=resume, progress=False, log=lambda *_: None)
    seconds = time.perf_counter() - t0
    torch.set_num_threads(1)
    model, tok, meta = load_model(run_dir)
    losses = _losses(model, tok, args.eval_iters)
    out = {"name": name, "seed": seed, "params": r.params, "iters": len(r.losses),
           "seconds": seconds, "resumed": resume, **losses, "config": runs[name],
           "val_loss": losses["val_B"], "test_loss": losses["test_B"],  # lm_vs_gpt's log line
           "tokens_per_s": r.tokens_per_s}  # fmt: skip
    tmp = res.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, res)
    res.with_suffix(".pid").unlink(missing_ok=True)


def train_runs(args, jobs: list[tuple[str, int, dict]]) -> None:
    """Train every ``(name, seed, choice)`` run without a result file, ``--jobs`` children at a
    time (:func:`lm_vs_gpt.train_jobs`); a run asked for twice trains once."""
    todo = {}
    for name, seed, choice in jobs:
        res = run_path(args, configs(args, seed, choice), name, seed)
        cmd = [sys.executable, __file__, "--child", name, "--seed", str(seed)]
        todo.setdefault(
            res, (name, seed, res, cmd + ["--choice", json.dumps(choice), *_shared_flags(args)])
        )
    train_jobs(list(todo.values()), args.jobs)


SHARED = ("iters_a", "iters_b", "eval_iters", "vocab", "replay_tokens", "grow_slots", "out_dir")


def _shared_flags(args) -> list[str]:
    """The options every child needs to rebuild the same configs."""
    return [x for k in SHARED for x in (f"--{k.replace('_', '-')}", str(getattr(args, k)))]


def result(args, name: str, seed: int, choice: dict) -> dict | None:
    p = run_path(args, configs(args, seed, choice), name, seed)
    return json.loads(p.read_text()) if p.is_file() else None


def choose(args, default: dict) -> tuple[dict, dict]:
    """The free options picked on seed 1337's val losses (see the module's docstring):
    ``(choice, what each option gave)``."""
    ft, a = result(args, "finetune", SEED0, default), result(args, "A", SEED0, default)
    chosen, tried = dict(default), {}
    for method, options in CHOICES.items():
        rows = []
        for opt in options:
            r = result(args, method, SEED0, {**default, **opt})
            if r and ft and a:
                rows.append({**opt, "forgetting": r["val_A"] - a["val_A"], "val_B": r["val_B"]})
        tried[method] = rows
        ok = [r for r in rows if r["val_B"] <= ft["val_B"] + GOAL_B] if ft else []
        best = None
        if ok:
            best = min(ok, key=lambda r: r["forgetting"])
        elif rows:
            best = min(rows, key=lambda r: r["forgetting"] + r["val_B"])
        if best:
            chosen.update({k: v for k, v in best.items() if k not in ("forgetting", "val_B")})
    return chosen, tried


def summarize(args, seeds: list[int], choice: dict) -> dict:
    """Per method over the finished seeds: the issue's keys, plus test losses and the goal's check."""
    out = {}
    rows = [(m, m, choice) for m in METHODS]
    rows += [(name, m, {**choice, **opt}) for name, (m, opt) in OTHER_OPTIONS.items()]
    for name, m, ch in rows:
        pairs = [(result(args, "A", s, ch), result(args, m, s, ch)) for s in seeds]
        pairs = [(a, b) for a, b in pairs if a and b]
        if not pairs:
            continue
        forget = [b["val_A"] - a["val_A"] for a, b in pairs]
        mean = statistics.fmean
        out[name] = {
            "val_A_after_A": mean(a["val_A"] for a, _ in pairs),
            "val_A_after_B": mean(b["val_A"] for _, b in pairs),
            "forgetting_mean": mean(forget),
            "forgetting_sd": _sd(forget),
            "val_B_mean": mean(b["val_B"] for _, b in pairs),
            "val_B_sd": _sd([b["val_B"] for _, b in pairs]),
            "test_forgetting_mean": mean(b["test_A"] - a["test_A"] for a, b in pairs),
            "test_B_mean": mean(b["test_B"] for _, b in pairs),
            "params_added": pairs[0][1]["params"] - pairs[0][0]["params"],
            "stores_A_data": STORES_A[m],
            "seconds": mean(b["seconds"] for _, b in pairs),
            "seeds": [b["seed"] for _, b in pairs],
        }
    ft = out.get("finetune")
    for m, r in out.items():
        if ft and m != "finetune":
            r["forgetting_vs_finetune"] = r["forgetting_mean"] / ft["forgetting_mean"]
            r["val_B_vs_finetune"] = r["val_B_mean"] - ft["val_B_mean"]
            r["meets_goal"] = (r["forgetting_vs_finetune"] < GOAL_FORGET
                               and r["val_B_vs_finetune"] <= GOAL_B and not r["stores_A_data"])  # fmt: skip
    return out


DIGIT_SEEDS = [0, 1, 2]  # bench/recl_digits.py's, so its table and this part agree


def digits() -> dict | str:
    """ReCL on split digits (``assocmem.recl``, test split), or why it is not here."""
    try:
        from assocmem.recl import digits_benchmark
    except ImportError:
        return "digits: not yet available (assocmem.recl is not on this branch)"
    return digits_benchmark(DIGIT_SEEDS)


def digits_part(args) -> dict | str:
    """The digits results: computed, or read from ``--digits-from``."""
    if args.digits_from:
        return json.loads(Path(args.digits_from).read_text())["digits"]
    return digits()


def markdown(lm: dict) -> str:
    rows = ["| method | val_A after A | val_A after B | forgetting (val) | val_B | test forgetting "
            "| test_B | params added | stores A data | s per run |", "|" + " --- |" * 10]  # fmt: skip
    for m, r in lm.items():
        rows.append(
            f"| {m} | {r['val_A_after_A']:.3f} | {r['val_A_after_B']:.3f} | "
            f"{r['forgetting_mean']:+.3f} ± {r['forgetting_sd']:.3f} | {r['val_B_mean']:.3f} | "
            f"{r['test_forgetting_mean']:+.3f} | {r['test_B_mean']:.3f} | {r['params_added']:,} | "
            f"{'yes' if r['stores_A_data'] else 'no'} | {r['seconds']:.0f} |"
        )
    return "\n".join(rows)


EXAMPLES = {"A": "continual_a", "finetune": "continual_b_finetune",
            "replay_real": "continual_b_replay_real", "replay_self": "continual_b_replay_self",
            "slot_growth": "continual_b_slot_growth", "joint": "continual_joint"}  # fmt: skip


def _toml(v) -> str:
    if isinstance(v, str):
        return json.dumps(v.replace(f"{ROOT}/", ""))  # relative to the repository root
    if isinstance(v, list):
        return "[" + ", ".join(map(_toml, v)) + "]"
    return repr(v)


def example_tomls(args, choice: dict) -> dict[str, str]:
    """Seed 1337's runs as ``assocmem train`` configs: ``{file name: TOML text}``
    (examples/lm/continual_*.toml; a test keeps those equal to these)."""
    out = {}
    for name, run in configs(args, SEED0, choice).items():
        lines = [f"# bench/continual.py's {name!r} run, seed {SEED0} (docs/continual.md)",
                 f'out_dir = "runs/{EXAMPLES[name]}"']  # fmt: skip
        for sec in ("data", "model", "train", "continual"):
            table = dict(run.get(sec) or {})
            if sec == "continual" and run["parent"]:
                table["init_from"] = f"runs/{EXAMPLES[run['parent']]}"
            if sec == "model" and run["parent"]:
                continue  # the model comes from init_from's run
            lines += [f"\n[{sec}]", *(f"{k} = {_toml(v)}" for k, v in table.items())]
        out[f"{EXAMPLES[name]}.toml"] = "\n".join(lines) + "\n"
    return out


def parser() -> argparse.ArgumentParser:
    """The command line (its defaults are the benchmark's sizes)."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--seeds", type=int, default=3, help="seeds (1337, 1338, ...)")
    ap.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    ap.add_argument("--iters-a", type=int, default=800, help="iterations on A")
    ap.add_argument("--iters-b", type=int, default=500, help="iterations on B (joint: both)")
    ap.add_argument("--eval-iters", type=int, default=100, help="batches per loss")
    ap.add_argument("--vocab", type=int, default=512, help="BPE vocabulary over A and B")
    ap.add_argument("--replay-tokens", type=int, default=16384, help="replay budget (tokens)")
    ap.add_argument("--grow-slots", type=int, default=64, help="slots added per bank")
    ap.add_argument("--replay-frac", type=float, default=0.25, help=argparse.SUPPRESS)
    ap.add_argument("--frozen-lr", type=float, default=0.1, help=argparse.SUPPRESS)
    ap.add_argument("--no-train", action="store_true", help="only summarize finished runs")
    ap.add_argument("--no-digits", action="store_true", help="skip the split-digits part")
    ap.add_argument(
        "--digits-from",
        metavar="JSON",
        help="take the digits part from an earlier --json output (it does not depend on the LM runs)",
    )
    ap.add_argument("--examples", metavar="DIR", help="write seed 1337's runs as configs there")
    ap.add_argument("--out-dir", default=str(ROOT / "runs/continual"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--choice", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=SEED0, help=argparse.SUPPRESS)
    return ap


def main() -> None:
    args = parser().parse_args()
    for t in (TEXT_A, TEXT_B):
        if not t.is_file():
            sys.exit(f"{t} not found: this benchmark needs ../shared/data/ (see its SOURCES.md).")
    if args.child:
        return child(args)
    os.environ["OMP_NUM_THREADS"] = "1"  # the children's: one thread each
    seeds = [SEED0 + i for i in range(args.seeds)]
    default = {"replay_frac": args.replay_frac, "frozen_lr": args.frozen_lr}
    sweep = [(m, SEED0, {**default, **opt}) for m, opts in CHOICES.items() for opt in opts]
    if not args.no_train:
        train_runs(args, [("A", s, default) for s in seeds])
        train_runs(args, [("finetune", SEED0, default), *sweep]
                   + [(m, s, default) for s in seeds for m in ("finetune", "joint")])  # fmt: skip
    chosen, tried = choose(args, default)
    print(f"chosen on seed {SEED0}'s val split: {chosen}")
    if not args.no_train:
        train_runs(args, [(m, s, chosen) for s in seeds
                          for m in ("replay_real", "replay_self", "slot_growth")]
                   + [(m, s, {**chosen, **opt}) for s in seeds for m, opt in OTHER_OPTIONS.values()])  # fmt: skip
    if args.examples:
        for name, text in example_tomls(args, chosen).items():
            (Path(args.examples) / name).write_text(text)
    lm = summarize(args, seeds, chosen)
    print(markdown(lm))
    results = {
        "lm": lm,
        "digits": None if args.no_digits else digits_part(args),
        "digits_from": args.digits_from,
        "chosen": chosen,
        "choices_tried_on_val": tried,
        "sizes": {k: getattr(args, k) for k in SHARED if k != "out_dir"},
        "machine": machine(),
    }
    print(results["digits"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
