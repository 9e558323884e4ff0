"""Which memory settings for the Winograd pronoun test? A grid on the dev split only.

The slot banks' threshold ``min_score`` is tried at the open vocabulary's 0.5 (a word with no
matching slot reads nothing) and at -2 (no threshold: every word reads the slots' mean).
Every setting is scored on the same items (the memory's decisions only; the baselines are
``assocmem winograd``'s). The default configuration (src/assocmem/data/winograd_default.toml)
is the row this grid ranks first; with ~99 items and a dozen rows, the best row's dev accuracy
is biased upwards by the choice itself: only the held-out split says what it is worth.

Usage::

    python bench/winograd_grid.py ../shared/data/winograd/xwino_ru_dev.jsonl --json out.json

About six minutes on one core (the co-occurrence counts of the Pushkin prose: ~20 s).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from dataclasses import replace

import torch

from assocmem.winograd import (
    binomial_p,
    load_config,
    load_items,
    make_associations,
    run_item,
    wilson,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="a Winograd JSONL file (the dev split)")
    ap.add_argument("--json", help="write every row as JSON here")
    ap.add_argument("--temps", default="0.1,0.2,0.5", help="temperatures tried (all banks)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    items = load_items(args.data)
    base = load_config()
    rows = []
    sources = {kind: make_associations(replace(base.builder, kind=kind)) for kind in
               ("none", "vectors", "cooccur")}  # fmt: skip
    temps = [float(t) for t in args.temps.split(",")]
    grid = itertools.product(
        ("none", "vectors", "cooccur"), ("candidates", "all"), (0.0, 0.1, 0.3), (True, False),
        temps, (0.5, -2.0),
    )  # fmt: skip
    for kind, targets, threshold, agreement, temp, min_score in grid:
        if kind == "none" and (targets, threshold) != ("candidates", 0.0):
            continue  # no associations: targets and threshold change nothing
        builder = replace(base.builder, kind=kind, targets=targets, threshold=threshold)
        model = replace(
            base.model, temp_assoc=temp, temp_context=temp, temp_mlp=temp, min_score=min_score
        )
        cfg = replace(base, builder=builder, model=model, agreement=agreement)
        results = [run_item(it, cfg, sources[kind]) for it in items]
        k, n = sum(r.correct for r in results), len(results)
        lo, hi = wilson(k, n)
        rows.append({
            "builder": kind, "targets": targets, "threshold": threshold, "agreement": agreement,
            "temp": temp, "min_score": min_score, "correct": k, "n": n, "accuracy": k / n, "ci95": [lo, hi],
            "p_value": binomial_p(k, n), "ties": sum(r.margin == 0 for r in results),
        })  # fmt: skip
        print(
            f"{kind:8s} {targets:10s} thr {threshold:.1f} agree {agreement!s:5s} temp {temp:.1f} "
            f"min_score {min_score:+.1f}: "
            f"{k}/{n} = {k / n:.1%} [{lo:.1%}, {hi:.1%}]",
            flush=True,
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"data": args.data, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
