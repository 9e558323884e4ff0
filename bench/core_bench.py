"""Core benchmarks: the cold start of the seed demo, and throughput on a long input.

    python bench/core_bench.py [--json OUT.json] [--tokens 1000] [--relations 10000]

1. Cold time of ``assocmem run examples/masha.toml``: a fresh process each time
   (imports included), best and median of several runs.
2. Throughput of ``MemTransformer`` on one long input (1,000 tokens) over a random
   graph of 10,000 relations (random unit embeddings): the fast path (SDPA, no weights),
   the traced path (every weight, residual and logit lens kept), measured side by side.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from assocmem.compiler import compile_graph
from assocmem.embedding import Vocabulary, make_embedding
from assocmem.graph import parse_graph
from assocmem.model import MemTransformer, ModelConfig

ROOT = Path(__file__).resolve().parents[1]


def cold_runs(repeats: int, cmd: list[str] | None = None) -> list[float]:
    """Wall times of fresh processes running ``cmd`` (default: the seed demo)."""
    exe = Path(sys.executable).with_name("assocmem")
    cmd = cmd or [str(exe), "run", str(ROOT / "examples/masha.toml")]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def random_graph(relations: int, vocab: int, seed: int = 0) -> str:
    """A random graph: each line a 1-2 token key and a 1-3 token weighted value."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    lines = []
    for _ in range(relations):
        key = " + ".join(rng.sample(words, rng.randint(1, 2)))
        val = " + ".join(
            f"{rng.uniform(0.2, 1):.2f}*{w}" for w in rng.sample(words, rng.randint(1, 3))
        )
        lines.append(f"{key} = {val}")
    return "\n".join(lines)


def throughput(model: MemTransformer, ids: torch.Tensor, traced: bool, repeats: int) -> float:
    """Best tokens/s over ``repeats`` runs of the whole input."""
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            if traced:
                model.run_with_trace(ids)
            else:
                model(ids)
            best = min(best, time.perf_counter() - t0)
    return ids.numel() / best


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--relations", type=int, default=10_000)
    ap.add_argument("--vocab", type=int, default=2_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    cold = cold_runs(args.repeats)
    floor = cold_runs(
        args.repeats, [sys.executable, "-c", "import torch"]
    )  # what no torch program avoids
    print(
        f"cold `assocmem run examples/masha.toml`: best {min(cold):.2f} s, median {statistics.median(cold):.2f} s"
    )
    print(
        f"cold `python -c 'import torch'`:         best {min(floor):.2f} s (the floor; run/floor = {min(cold) / min(floor):.2f}x)"
    )

    t0 = time.perf_counter()
    graph = parse_graph(random_graph(args.relations, args.vocab))
    t_parse = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb = make_embedding(
        Vocabulary.from_tokens(graph.tokens), "random", dim=args.dim, seed=0, dtype=torch.float32
    )
    memory = compile_graph(graph, emb)
    t_compile = time.perf_counter() - t0
    model = MemTransformer(
        memory,
        emb,
        ModelConfig(layers=2, readout_layer=3, temp_assoc=0.1, temp_context=0.5, temp_mlp=1.0),
    )
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(len(emb.vocab), (args.tokens,), generator=g)  # (n,)
    fast = throughput(model, ids, traced=False, repeats=args.repeats)
    traced = throughput(model, ids, traced=True, repeats=max(2, args.repeats // 2))
    print(
        f"graph of {args.relations} relations over {len(emb.vocab)} tokens: parse {t_parse:.2f} s, embed+compile {t_compile:.2f} s"
    )
    print(
        f"{args.tokens} tokens x {model.config.depth} layers, d={args.dim}, float32, {torch.get_num_threads()} threads:"
    )
    print(f"  fast path   {fast:10.0f} tokens/s")
    print(f"  traced path {traced:10.0f} tokens/s   (fast/traced = {fast / traced:.1f}x)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
                    "cold_run_s": {"best": min(cold), "median": statistics.median(cold)},
                    "import_torch_s": {"best": min(floor), "median": statistics.median(floor)},
                    "graph": {
                        "relations": args.relations,
                        "vocab": len(emb.vocab),
                        "dim": args.dim,
                        "parse_s": t_parse,
                        "compile_s": t_compile,
                    },
                    "throughput_tokens_per_s": {
                        "fast": fast,
                        "traced": traced,
                        "tokens": args.tokens,
                        "layers": model.config.depth,
                    },
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
