"""Training: config (TOML), the loop (AdamW, warmup + cosine decay, as nanoGPT), evaluation,
checkpoints with exact resume, DistributedDataParallel under ``torchrun``, sampling.

Batches: every process draws the same *global* batch (``batch_size`` windows) from one
seeded generator and trains on its own slice, so N processes compute the gradient of
the same combined batch as one process would, and the generator state is the data
position a checkpoint saves.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from assocmem.errors import InputError, did_you_mean, read_text
from assocmem.lm import checkpoint as ckpt
from assocmem.lm.data import (
    build_tokenizer,
    get_batch,
    load_text,
    split_three,
    tokenizer_from_state,
)
from assocmem.lm.gpt import GPT, GPTConfig
from assocmem.lm.memlm import MemLM, MemLMConfig

__all__ = [
    "DataConfig",
    "TrainConfig",
    "RunConfig",
    "TrainResult",
    "load_config",
    "build_model",
    "train",
    "evaluate",
    "generate",
    "load_model",
    "count_params",
]

MODELS = {"memlm": (MemLM, MemLMConfig), "gpt": (GPT, GPTConfig)}


@dataclass
class DataConfig:
    path: str = "../shared/data/tinyshakespeare/input.txt"  # relative to the working directory
    tokenizer: str = "char"  # "char" or "bpe" (byte-level BPE trained on the text)
    vocab_size: int = 512  # bpe only; char takes every distinct character
    train_frac: float = 0.9  # nanoGPT's 90/10 split: the last 10 % is the test set
    val_frac: float = 0.1  # val = the last 10 % of that 90 % (choices, early stopping)


@dataclass
class TrainConfig:
    batch_size: int = 12  # global batch: split across torchrun processes
    max_iters: int = 2000
    lr: float = 1e-3  # nanoGPT shakespeare_char: small models tolerate a high rate
    min_lr: float = 1e-4  # lr / 10, per Chinchilla
    warmup_iters: int = 100
    lr_decay_iters: int = 0  # 0: decay over max_iters
    weight_decay: float = 0.1  # on matrices and slots only, not norms or temperatures
    beta1: float = 0.9
    beta2: float = 0.99  # nanoGPT: few tokens per iteration, so a shorter second-moment memory
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 200  # batches per split per evaluation
    ckpt_interval: int = 250  # 0: only at the end
    seed: int = 1337
    device: str = "auto"  # "auto": cuda when available, else cpu
    threads: int = 0  # torch CPU threads; 0: chosen from the machine (auto_threads)


@dataclass
class RunConfig:
    out_dir: str = "runs/lm"
    data: DataConfig = field(default_factory=DataConfig)
    model: dict = field(
        default_factory=lambda: {"kind": "memlm"}
    )  # kind + fields of MemLMConfig / GPTConfig
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class TrainResult:
    params: int
    losses: list[float]  # training loss of every iteration (mean over processes)
    evals: list[dict]  # {"iter", "train", "val"} at each evaluation
    val_loss: float
    test_loss: float  # at the end only: reported, never used for a choice
    tokens_per_s: float  # training steps only (evaluation and checkpoints excluded)
    peak_mem_mb: float  # cuda: max allocated; cpu: the process's peak RSS
    out_dir: str


def _fill(cls, values: dict, where: str):
    names = [f.name for f in dataclasses.fields(cls)]
    for k in values:
        if k not in names:
            raise InputError(
                f"unknown setting {k!r} in [{where}].{did_you_mean(k, names)} Known: {', '.join(names)}."
            )
    return cls(**values)


def _model_config(model: dict, vocab_size: int):
    kind = model.get("kind", "memlm")
    if kind not in MODELS:
        raise InputError(f"unknown model kind {kind!r} in [model]; use 'memlm' or 'gpt'.")
    values = {k: v for k, v in model.items() if k != "kind"}
    return _fill(MODELS[kind][1], {**values, "vocab_size": vocab_size}, "model")


def load_config(path: str | Path) -> RunConfig:
    """Parse a TOML run config: top-level ``out_dir`` and sections ``[data]``, ``[model]``, ``[train]``."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"config file {str(p)!r} not found; see examples/lm/*.toml.")
    try:
        doc = tomllib.loads(read_text(p, "training config"))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"config {str(p)!r} is not valid TOML: {e}.") from None
    top = {k: v for k, v in doc.items() if k not in ("data", "model", "train")}
    cfg = _fill(RunConfig, top, "top level")
    cfg.data = _fill(DataConfig, doc.get("data", {}), "data")
    cfg.model = dict(doc.get("model", {"kind": "memlm"}))
    _model_config(cfg.model, 1)  # validate the names now, not after loading data
    cfg.train = _fill(TrainConfig, doc.get("train", {}), "train")
    return cfg


def build_model(model: dict, vocab_size: int) -> nn.Module:
    """The model named by ``model["kind"]`` with the other entries as its config fields."""
    mcfg = _model_config(model, vocab_size)
    return MODELS[model.get("kind", "memlm")][0](mcfg)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def auto_threads() -> tuple[int, str]:
    """Torch CPU threads for this machine: the cores this process may use minus the other
    work running (the 1-minute load average, rounded up), at least 1, at most torch's
    default. On a loaded 2-core machine two OpenMP threads stall whenever a core is taken
    (8-30x slower than one thread), so a busy machine gets one. Returns ``(threads, why)``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    n = max(1, min(torch.get_num_threads(), (cores or 1) - math.ceil(load)))
    return n, f"chosen from the machine: {cores} cores, load {load:.1f}; [train] threads sets it"


def _lr(it: int, t: TrainConfig) -> float:
    """Linear warmup, then cosine decay to ``min_lr`` (nanoGPT's schedule)."""
    decay = t.lr_decay_iters or t.max_iters
    if it < t.warmup_iters:
        return t.lr * (it + 1) / (t.warmup_iters + 1)
    if it > decay:
        return t.min_lr
    ratio = (it - t.warmup_iters) / max(1, decay - t.warmup_iters)
    return t.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (t.lr - t.min_lr)


def _optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.AdamW:
    # nanoGPT: decay every tensor of 2+ dims (matrices, embeddings, slots), not norms or temperatures.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "log_temp" not in n]
    no_decay = [
        p for n, p in model.named_parameters() if not (p.dim() >= 2 and "log_temp" not in n)
    ]
    groups = [
        {"params": decay, "weight_decay": t.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: torch.Tensor,
    block: int,
    batch: int,
    iters: int,
    seed: int,
    device: torch.device,
) -> float:
    """Mean loss over ``iters`` batches drawn from ``data`` by a generator seeded with ``seed``
    (the same batches at every evaluation; the training RNGs are not touched)."""
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(iters):
        x, y = get_batch(data, block, batch, gen)  # (B, T) each
        _, loss = model(x.to(device), y.to(device))
        total += loss.item()
    model.train(was)
    return total / iters


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                "device 'cuda' requested but no CUDA GPU is available; use device = 'auto' or 'cpu'."
            )
        return torch.device("cuda", local_rank)
    return torch.device(name)


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def train(
    cfg: RunConfig,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    progress: bool = True,
    log=print,
) -> TrainResult:
    """Train ``cfg``'s model; under ``torchrun`` (``WORLD_SIZE`` > 1) with DistributedDataParallel.

    ``resume`` continues from the checkpoint in ``cfg.out_dir``, reproducing the losses the
    uninterrupted run would have had. ``stop_at`` ends the loop after that iteration
    without a checkpoint (a simulated crash, for tests).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = _device(cfg.train.device, int(os.environ.get("LOCAL_RANK", "0")))
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(cfg, device, resume=resume, stop_at=stop_at, progress=progress, log=log)
    finally:
        if own_group:  # a group this call opened is closed by it, error or not
            dist.destroy_process_group()


def _train(
    cfg: RunConfig,
    device: torch.device,
    *,
    resume: bool,
    stop_at: int | None,
    progress: bool,
    log,
) -> TrainResult:
    t = cfg.train
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    ddp = world > 1
    if t.batch_size % world:
        raise InputError(
            f"batch_size {t.batch_size} is not divisible by the {world} processes; the global batch is split evenly."
        )
    threads, why = (t.threads, "[train] threads") if t.threads else auto_threads()
    torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    master = rank == 0

    text = load_text(cfg.data.path)
    state_t: dict[str, torch.Tensor] = {}
    if resume:
        model_t, state_t, meta = ckpt.load_checkpoint(cfg.out_dir)
        tok = tokenizer_from_state(meta["tokenizer"])
    else:
        n_train_chars = int(cfg.data.train_frac * len(text))
        tok = build_tokenizer(
            cfg.data.tokenizer,
            text if cfg.data.tokenizer == "char" else text[:n_train_chars],
            cfg.data.vocab_size,
        )
    train_data, val_data, test_data = split_three(
        tok.encode(text), cfg.data.train_frac, cfg.data.val_frac
    )  # (n_train,), (n_val,), (n_test,)

    torch.manual_seed(t.seed)
    model = build_model(cfg.model, tok.vocab_size).to(device)
    block = model.config.block_size
    opt = _optimizer(model, t)
    gen = torch.Generator().manual_seed(t.seed)  # the data position
    start, losses, evals = 0, [], []
    if resume:
        model.load_state_dict(model_t)
        osd = opt.state_dict()
        for i in meta["optim_state_ids"]:
            osd["state"][i] = {
                k[len(f"optim.{i}.") :]: v.to(device)
                for k, v in state_t.items()
                if k.startswith(f"optim.{i}.")
            }
        for k in ("step",):  # AdamW keeps step on the CPU unless capturable
            for s in osd["state"].values():
                s[k] = s[k].cpu()
        opt.load_state_dict(osd)
        gen.set_state(state_t["rng.data"])
        torch.set_rng_state(state_t["rng.torch"])
        if device.type == "cuda" and "rng.cuda" in state_t:
            torch.cuda.set_rng_state(state_t["rng.cuda"], device)
        start, losses, evals = meta["iter"], list(meta["losses"]), list(meta["evals"])
        if master:
            log(f"resumed from {cfg.out_dir} at iteration {start}")
    raw = model
    if ddp:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None
        )
    n_params = count_params(raw)
    per = t.batch_size // world

    def save(it: int) -> None:
        if not master:
            return
        osd = opt.state_dict()
        state = {f"optim.{i}.{k}": v for i, s in osd["state"].items() for k, v in s.items()}
        state["rng.data"] = gen.get_state()
        state["rng.torch"] = torch.get_rng_state()
        if device.type == "cuda":
            state["rng.cuda"] = torch.cuda.get_rng_state(device)
        meta = {
            "config": dataclasses.asdict(cfg),
            "model_kind": cfg.model.get("kind", "memlm"),
            "model_config": dataclasses.asdict(raw.config),
            "tokenizer": tok.state(),
            "iter": it,
            "losses": losses,
            "evals": evals,
            "optim_state_ids": list(osd["state"].keys()),
            "params": n_params,
        }
        ckpt.save_checkpoint(cfg.out_dir, raw.state_dict(), state, meta)

    def run_eval(it: int) -> float:
        tr = evaluate(raw, train_data, block, t.batch_size, t.eval_iters, t.seed + 1, device)
        va = evaluate(raw, val_data, block, t.batch_size, t.eval_iters, t.seed + 2, device)
        evals.append({"iter": it, "train": tr, "val": va})
        if master:
            log(f"iter {it}: train loss {tr:.4f}, val loss {va:.4f}")
        return va

    if master:
        log(
            f"{cfg.model.get('kind', 'memlm')}: {n_params:,} parameters, {world} process(es) on {device}, "
            f"{threads} torch thread(s) ({why})"
        )
    bar = None
    if progress and master:
        from tqdm import tqdm

        bar = tqdm(total=t.max_iters, initial=start, desc="train", dynamic_ncols=True)
    train_s, steps = 0.0, 0
    model.train()
    for it in range(start, t.max_iters):
        if (
            t.eval_interval
            and it % t.eval_interval == 0
            and it > 0
            and not any(e["iter"] == it for e in evals)
        ):
            run_eval(it)
        t0 = time.perf_counter()
        lr = _lr(it, t)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = get_batch(train_data, block, t.batch_size, gen)  # (B, T) each: the global batch
        x, y = (
            x[rank * per : (rank + 1) * per].to(device),
            y[rank * per : (rank + 1) * per].to(device),
        )  # (B/world, T)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP averages the gradients over processes
        if t.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        lv = loss.detach()
        if ddp:
            dist.all_reduce(lv, op=dist.ReduceOp.SUM)
            lv = lv / world
        losses.append(lv.item())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_s += time.perf_counter() - t0
        steps += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}")
        if stop_at is not None and it + 1 >= stop_at:
            break
        if (t.ckpt_interval and (it + 1) % t.ckpt_interval == 0) or it + 1 == t.max_iters:
            if it + 1 == t.max_iters:
                run_eval(it + 1)
            save(it + 1)
    if bar is not None:
        bar.close()
    if not evals or evals[-1]["iter"] != len(losses):
        run_eval(len(losses))
    tokens = steps * t.batch_size * block
    test = evaluate(raw, test_data, block, t.batch_size, t.eval_iters, t.seed + 3, device)
    if master:
        log(f"test loss {test:.4f} (reported only)")
    return TrainResult(
        params=n_params,
        losses=losses,
        evals=evals,
        val_loss=evals[-1]["val"],
        test_loss=test,
        tokens_per_s=tokens / train_s if train_s else 0.0,
        peak_mem_mb=_peak_mem_mb(device),
        out_dir=cfg.out_dir,
    )


def load_model(path: str | Path, device: str = "cpu") -> tuple[nn.Module, object, dict]:
    """``(model in eval mode, tokenizer, checkpoint meta)`` from a checkpoint folder or its JSON."""
    model_t, _, meta = ckpt.load_checkpoint(path)
    tok = tokenizer_from_state(meta["tokenizer"])
    kind = meta["model_kind"]
    model = MODELS[kind][0](MODELS[kind][1](**meta["model_config"]))
    model.load_state_dict(model_t)
    return model.to(device).eval(), tok, meta


@torch.no_grad()
def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 200,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend ``idx`` ``(B, T0)`` by sampling ``max_new_tokens`` tokens; returns ``(B, T0 + max_new_tokens)``."""
    block = model.config.block_size
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -block:])  # (B, t, V)
        logits = logits[:, -1, :] / temperature  # (B, V)
        if top_k is not None:
            v, _ = torch.topk(logits, min(top_k, logits.size(-1)))  # (B, k)
            logits[logits < v[:, [-1]]] = -float("inf")
        probs = torch.softmax(logits, dim=-1)  # (B, V)
        nxt = torch.multinomial(probs, 1, generator=gen)  # (B, 1)
        idx = torch.cat([idx, nxt], dim=1)  # (B, t+1)
    return idx
