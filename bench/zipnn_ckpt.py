"""How much smaller, and how fast, is a MemLM checkpoint compressed with ZipNN than with zstd?

ZipNN (arXiv 2411.05239) claims lossless savings of about 33 % on bfloat16 weights and 17 % on
float32 ones. Here: a trained MemLM (the cpu-small shapes of examples/lm/shakespeare_char_memlm.toml,
trained here for ``--iters`` iterations on one thread, or an existing run's ``--ckpt``), its
weights in float32 and in bfloat16, and the whole float32 checkpoint as ``assocmem train``
writes it (two files: the weights; AdamW moments and RNG states), each stored

- ``zipnn``: the checkpoint codec of ``[train] compress = "zipnn"`` (:mod:`assocmem.lm.codec`),
- ``zstd``: the plain safetensors file compressed with zstandard at level 3 (ZipNN's own
  back end without its byte grouping: the baseline the paper compares with),

against the plain safetensors file. ``ratio`` is compressed size / plain size; speeds are MB
(10^6 bytes) of plain file per second, the median of ``--repeats`` runs, from tensors to bytes
and back, torch and ZipNN on one thread; ``bit_exact``: every tensor came back with the same
dtype, shape and bytes; ``input_unchanged``: the tensors handed to the codec still hold their
bytes afterwards (ZipNN rewrites the buffer it is given; the codec hands it a copy).

    .venv/bin/python bench/zipnn_ckpt.py --json bench/zipnn_ckpt.json
    .venv/bin/python bench/zipnn_ckpt.py --ckpt runs/shakespeare_char_memlm --json OUT.json
    .venv/bin/python bench/zipnn_ckpt.py --keep runs/zipnn_memlm --json OUT.json  # keeps the run
    .venv/bin/python bench/zipnn_ckpt.py --table bench/zipnn_ckpt.json  # the markdown table
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import zstandard
from safetensors.torch import load, save

from assocmem.lm import checkpoint as ckpt
from assocmem.lm import codec
from assocmem.lm.train import load_config, train

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples/lm/shakespeare_char_memlm.toml"
ZSTD_LEVEL = 3


def trained(out_dir: Path, iters: int) -> Path:
    """A cpu-small MemLM trained for ``iters`` iterations on one thread into ``out_dir``."""
    cfg = load_config(CONFIG)
    t = dataclasses.replace(cfg.train, max_iters=iters, eval_interval=0, eval_iters=20,
                            ckpt_interval=0, threads=1)  # fmt: skip
    data = dataclasses.replace(cfg.data, path=str(ROOT / cfg.data.path))
    train(dataclasses.replace(cfg, out_dir=str(out_dir), data=data, train=t), progress=False,
          log=lambda *_: None)  # fmt: skip
    return out_dir


def zipnn_pair():
    return (
        lambda t: codec.encode(t, "zipnn", threads=1, check=False),
        lambda raw: codec.decode(raw, "zipnn", threads=1),
    )


def zstd_pair():
    c, d = zstandard.ZstdCompressor(level=ZSTD_LEVEL), zstandard.ZstdDecompressor()
    return (lambda t: c.compress(save(t)), lambda raw: load(d.decompress(raw)))


def _snapshot(tensors: dict[str, torch.Tensor]) -> dict[str, tuple]:
    return {k: (v.dtype, tuple(v.shape), codec.tensor_bytes(v)) for k, v in tensors.items()}


def _median_s(fn, repeats: int):
    """(median seconds of ``fn()``, its last result)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def row(part: str, dtype: str, files: list[dict], name: str, repeats: int) -> dict:
    """One codec on one or more tensor files (each a tensor dict): summed sizes and times,
    exactness."""
    before = [_snapshot(t) for t in files]
    plain = sum(len(save(t)) for t in files)
    enc, dec = zipnn_pair() if name == "zipnn" else zstd_pair()
    t_c, packed = _median_s(lambda: [enc(t) for t in files], repeats)
    t_d, back = _median_s(lambda: [dec(raw) for raw in packed], repeats)
    size = sum(len(raw) for raw in packed)
    return {
        "part": part,
        "dtype": dtype,
        "codec": name,
        "plain_bytes": plain,
        "compressed_bytes": size,
        "ratio": round(size / plain, 4),
        "compress_mb_s": round(plain / 1e6 / t_c, 1),
        "decompress_mb_s": round(plain / 1e6 / t_d, 1),
        "bit_exact": [_snapshot(t) for t in back] == before,
        "input_unchanged": [_snapshot(t) for t in files] == before,
    }


def parts(path: Path) -> list[tuple[str, str, dict]]:
    """(part, dtype, tensor files): the weights in float32 and bfloat16; the float32
    checkpoint as its two files (weights; AdamW moments and RNG states), as training writes it."""
    model, state, _ = ckpt.load_checkpoint(path)
    bf16 = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in model.items()}
    return [
        ("weights", "float32", [model]),
        ("weights", "bfloat16", [bf16]),
        ("checkpoint", "float32", [model, state]),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", default="", help="write the rows here (required unless --table)")
    p.add_argument("--ckpt", default="", help="an existing run's folder (default: train one)")
    p.add_argument("--iters", type=int, default=2000, help="training iterations when training")
    p.add_argument(
        "--keep", default="", help="train into this folder (kept) instead of a temporary one"
    )
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--table", default="", help="only print the table of this JSON (no run)")
    args = p.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())["rows"]))
        return
    if not args.json:
        p.error("--json OUT.json is required (or --table JSON to print a table)")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(args.keep) if args.keep else Path(tmp) / "run"
        path = Path(args.ckpt) if args.ckpt else trained(where, args.iters)
        _, _, meta = ckpt.load_checkpoint(path)
        rows = [row(*part, name, args.repeats) for part in parts(path) for name in ("zipnn", "zstd")]  # fmt: skip
    out = {
        "rows": rows,
        "checkpoint": {
            "source": args.ckpt or f"trained here: {CONFIG.relative_to(ROOT)}",
            "iter": meta["iter"],
            "params": meta["params"],
            "val_loss": meta["evals"][-1]["val"] if meta["evals"] else None,
        },  # fmt: skip
        "zstd_level": ZSTD_LEVEL,
        "repeats": args.repeats,
        "threads": 1,
        "versions": {
            "torch": torch.__version__,
            "zstandard": zstandard.__version__,
            "zipnn": _version("zipnn"),
        },  # fmt: skip
        "machine": platform.processor() or platform.machine(),
    }
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(table(rows))


def table(rows: list[dict]) -> str:
    """The rows as the markdown table of bench/RESULTS.md and docs/learned.md."""
    lines = ["| part | dtype | codec | size / plain | smaller by | compress MB/s | decompress MB/s | bit-exact | input unchanged |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['part']} | {r['dtype']} | {r['codec']} | {r['ratio']:.3f} | "
                     f"{1 - r['ratio']:.1%} | {r['compress_mb_s']:.0f} | {r['decompress_mb_s']:.0f} | "
                     f"{'yes' if r['bit_exact'] else 'NO'} | {'yes' if r['input_unchanged'] else 'NO'} |")  # fmt: skip
    return "\n".join(lines)


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
