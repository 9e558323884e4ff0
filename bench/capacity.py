"""How many random relations does a hand-set memory of dimension d hold before reads fail?

For each embedding (one-hot, random unit-norm Gaussian), dimension and temperature:
the capacity (the most relations at which >= 99 % of the reads ``mem(E[i], K, V, temp)``
decode to their value token, pooled over ``--seeds``; :mod:`assocmem.capacity`), whether
the search stopped at its ceiling (one-hot: d; random: ``--n-max``), and Ramsauer et al.'s
Theorem 3 lower bound for the same unit-norm patterns at beta = 1/temp (``null`` where the
theorem's condition does not hold). Per temperature, the slope of ln(capacity) against d
over the random rows that did not hit the ceiling (needs two).

    .venv/bin/python bench/capacity.py --json bench/capacity.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch

from assocmem.capacity import CapacitySearch, capacity, hopfield_bound
from assocmem.errors import write_atomic


def log_slope(rows: list[dict]) -> float | None:
    """Least-squares slope of ln(capacity) against dim over uncapped rows with capacity > 0."""
    pts = [(r["dim"], math.log(r["capacity"])) for r in rows if not r["capped"] and r["capacity"]]
    if len({d for d, _ in pts}) < 2:
        return None
    mx = sum(d for d, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((d - mx) * (y - my) for d, y in pts) / sum((d - mx) ** 2 for d, _ in pts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--dims", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128, 256])
    ap.add_argument("--temps", type=float, nargs="+", default=[1.0, 0.3, 0.1, 0.03, 0.01])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-max", type=int, default=1 << 16)
    ap.add_argument("--queries", type=int, default=1024)
    args = ap.parse_args()
    torch.set_num_threads(1)
    search = CapacitySearch(queries=args.queries, n_max=args.n_max)
    rows, t0 = [], time.perf_counter()
    for kind in ("onehot", "random"):
        for temp in args.temps:
            for dim in args.dims:
                cap, capped = capacity(kind, dim, temp, args.seeds, search)  # type: ignore[arg-type]
                bound = hopfield_bound(dim, 1 / temp) if kind == "random" else None
                rows.append(
                    {
                        "dim": dim,
                        "embedding": kind,
                        "temp": temp,
                        "capacity": cap,
                        "capped": capped,
                        "hopfield_bound": bound,
                    }  # fmt: skip
                )
                print(rows[-1], flush=True)
    slopes = {
        str(t): log_slope([r for r in rows if r["embedding"] == "random" and r["temp"] == t])
        for t in args.temps
    }
    doc = {
        "rows": rows,
        "log_capacity_slope_per_dim": slopes,
        "settings": {
            "need": search.need,
            "queries_per_seed": search.queries,
            "n_max": search.n_max,
            "seeds": args.seeds,
        },  # fmt: skip
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": f"{platform.processor() or platform.machine()}, torch 1 thread",
    }
    write_atomic(args.json, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.json} in {doc['seconds']} s")


if __name__ == "__main__":
    main()
