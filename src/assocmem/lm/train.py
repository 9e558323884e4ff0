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
import re
import resource
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn as nn

from assocmem import settings
from assocmem.errors import InputError, did_you_mean
from assocmem.lm import checkpoint as ckpt
from assocmem.lm.data import build_tokenizer, get_batch, load_text, split_ids, tokenizer_from_state
from assocmem.lm.gpt import GPT, GPTConfig
from assocmem.lm.memlm import MemLM, MemLMConfig
from assocmem.settings import Problem, Settings, setting

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

ModelKind = Literal["memlm", "gpt"]
MODELS = {"memlm": (MemLM, MemLMConfig), "gpt": (GPT, GPTConfig)}  # one entry per ModelKind


def _device_problem(name: str) -> str | None:
    if name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:[0-9]+", name):
        return None
    return f"must be 'auto', 'cpu', 'cuda' or 'cuda:N' (a GPU's index) (got {name!r})"


def _nonempty(text: str) -> str | None:
    return None if text.strip() else "must not be empty"


@dataclass(frozen=True)
class DataConfig(Settings):
    path: str = setting(
        "../shared/data/tinyshakespeare/input.txt", check=_nonempty
    )  # relative to the working directory
    tokenizer: Literal["char", "bpe"] = "char"  # "bpe": byte-level BPE trained on the text
    vocab_size: int = setting(
        512, ge=1
    )  # bpe only (> 256, the byte alphabet); char takes every distinct character
    train_frac: float = setting(0.9, gt=0, lt=1)  # nanoGPT's 90/10 split

    def relations(self):
        if self.tokenizer == "bpe" and self.vocab_size <= 256:
            yield Problem(
                ("vocab_size",),
                f"must be > 256 for a bpe tokenizer, which starts from the 256 bytes (got {self.vocab_size})",
            )


@dataclass(frozen=True)
class TrainConfig(Settings):
    batch_size: int = setting(12, ge=1)  # global batch: split across torchrun processes
    max_iters: int = setting(2000, ge=1)
    lr: float = setting(1e-3, gt=0)  # nanoGPT shakespeare_char: small models tolerate a high rate
    min_lr: float = setting(1e-4, ge=0)  # lr / 10, per Chinchilla
    warmup_iters: int = setting(100, ge=0)
    lr_decay_iters: int = setting(0, ge=0)  # 0: decay over max_iters
    weight_decay: float = setting(
        0.1, ge=0
    )  # on matrices and slots only, not norms or temperatures
    beta1: float = setting(0.9, ge=0, lt=1)
    beta2: float = setting(
        0.99, ge=0, lt=1
    )  # nanoGPT: few tokens per iteration, so a shorter second-moment memory
    grad_clip: float = setting(1.0, ge=0)  # 0: no clipping
    eval_interval: int = setting(250, ge=0)  # 0: evaluate only at the end
    eval_iters: int = setting(200, ge=1)  # batches per split per evaluation
    ckpt_interval: int = setting(250, ge=0)  # 0: only at the end
    seed: int = setting(1337, ge=0, le=2**63 - 3)  # seed + 1, seed + 2 seed the evaluation batches
    device: str = setting("auto", check=_device_problem)  # "auto": cuda when available, else cpu
    threads: int = setting(0, ge=0, le=4096)  # torch CPU threads; 0 leaves torch's default

    def relations(self):
        if self.min_lr > self.lr:
            yield Problem(
                ("min_lr",),
                f"must be <= lr = {self.lr:g} (got {self.min_lr:g}): the schedule decays from lr down to min_lr",
            )


def _model_problems(model: dict) -> list[Problem]:
    """The problems of a ``[model]`` table: its kind, then its fields as that kind's config."""
    kind = model.get("kind", "memlm")
    choices = typing.get_args(ModelKind)
    if kind not in choices:
        hint = did_you_mean(kind, choices).strip() if isinstance(kind, str) else ""
        return [
            Problem(
                ("kind",),
                f"must be one of {', '.join(map(repr, choices))} (got {settings.describe(kind)})",
                hint,
            )
        ]
    problems = []
    if "vocab_size" in model:
        problems.append(Problem(("vocab_size",), "is set by the tokenizer, not here",
                                "Remove it; for a bpe tokenizer set [data] vocab_size instead."))  # fmt: skip
    values = {k: v for k, v in model.items() if k not in ("kind", "vocab_size")}
    try:
        settings.parse(MODELS[kind][1], values)
    except settings.SettingsError as e:
        problems.extend(e.problems)
    return problems


@dataclass(frozen=True)
class RunConfig(Settings):
    out_dir: str = setting("runs/lm", check=_nonempty)
    data: DataConfig = field(default_factory=DataConfig)
    model: dict = setting(
        default_factory=lambda: {"kind": "memlm"}, check=lambda m: _model_problems(m)
    )  # kind ("memlm" or "gpt") + fields of MemLMConfig / GPTConfig (vocab_size comes from the tokenizer)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class TrainResult:
    params: int
    losses: list[float]  # training loss of every iteration (mean over processes)
    evals: list[dict]  # {"iter", "train", "val"} at each evaluation
    val_loss: float
    tokens_per_s: float  # training steps only (evaluation and checkpoints excluded)
    peak_mem_mb: float  # cuda: max allocated; cpu: the process's peak RSS
    out_dir: str
    rank: int = 0  # this process's rank under torchrun (only rank 0 reports)


def _model_config(model: dict, vocab_size: int):
    kind = model.get("kind", "memlm")
    values = {k: v for k, v in model.items() if k != "kind"}
    return settings.parse(MODELS[kind][1], {**values, "vocab_size": vocab_size}, ("model",))


def load_config(path: str | Path) -> RunConfig:
    """Parse and check a TOML run config: top-level ``out_dir`` and sections ``[data]``,
    ``[model]``, ``[train]``. Every bad value is reported at once, each with its file,
    line and key (a :class:`~assocmem.settings.SettingsError`)."""
    p = Path(path)
    if not p.is_file() and not p.is_dir():
        raise InputError(f"config file {str(p)!r} not found; see examples/lm/*.toml.")
    doc, text = settings.read_toml(p, "training config")
    if {"case", "graph", "graph_file"} & set(doc):
        raise InputError(
            f"{p} is an experiment file (it has a graph and [[case]] tables), not a training config: run it with `assocmem run {p}`."
        )
    try:
        return settings.parse(RunConfig, doc)
    except settings.SettingsError as e:
        raise e.located(p, text) from None


def build_model(model: dict, vocab_size: int) -> nn.Module:
    """The model named by ``model["kind"]`` with the other entries as its config fields."""
    mcfg = _model_config(model, vocab_size)
    return MODELS[model.get("kind", "memlm")][0](mcfg)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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
    if t.threads:
        torch.set_num_threads(t.threads)
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
    train_data, val_data = split_ids(tok.encode(text), cfg.data.train_frac)  # (n_train,), (n_val,)

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
            f"{cfg.model.get('kind', 'memlm')}: {n_params:,} parameters, {world} process(es) on {device}"
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
    return TrainResult(
        params=n_params,
        losses=losses,
        evals=evals,
        val_loss=evals[-1]["val"],
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
