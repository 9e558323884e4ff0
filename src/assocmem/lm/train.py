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
import signal
import tempfile
import threading
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
from assocmem.lm import continual
from assocmem.lm.codec import INSTALL_HINT, Codec, missing
from assocmem.lm.continual import ContinualConfig
from assocmem.lm.data import (
    TEXT_HINT,
    build_tokenizer,
    get_batch,
    load_text,
    split_three,
    text_file_problem,
    tokenizer_from_state,
)
from assocmem.lm.gpt import GPT, GPTConfig
from assocmem.lm.memlm import MemLM, MemLMConfig
from assocmem.lm.sampling import generate
from assocmem.settings import Problem, Settings, setting

__all__ = [
    "DataConfig",
    "TrainConfig",
    "RunConfig",
    "TrainResult",
    "load_config",
    "config_reference",
    "build_model",
    "train",
    "evaluate",
    "generate",
    "load_model",
    "preflight",
    "DistEnv",
    "Interrupted",
    "count_params",
]

ModelKind = Literal["memlm", "gpt"]
MODELS = {"memlm": (MemLM, MemLMConfig), "gpt": (GPT, GPTConfig)}  # one entry per ModelKind


def _device_problem(name: str) -> str | None:
    """ "auto", "cpu", "cuda" or "cuda:N" """
    if name in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:[0-9]+", name):
        return None
    return f"must be 'auto', 'cpu', 'cuda' or 'cuda:N' (a GPU's index) (got {name!r})"


def _path_problem(text: str) -> str | None:
    """a path: not empty, no NUL character"""
    if not text.strip():
        return "must not be empty"
    return "must not hold a NUL character" if "\0" in text else None


@dataclass(frozen=True)
class DataConfig(Settings):
    path: str = setting(
        "../shared/data/tinyshakespeare/input.txt", check=_path_problem
    )  # relative to the working directory
    tokenizer: Literal["char", "bpe"] = "char"  # "bpe": byte-level BPE trained on the text
    vocab_size: int = setting(
        512, ge=1
    )  # bpe only (> 256, the byte alphabet); char takes every distinct character
    train_frac: float = setting(0.9, gt=0, lt=1)  # nanoGPT's 90/10 split: the last 10 % is test
    val_frac: float = setting(0.1, gt=0, lt=1)  # val: the last 10 % of the 90 % (every choice)
    # bpe: train the tokenizer on these texts' train parts too, so tasks share one vocabulary
    tokenizer_texts: tuple[str, ...] = ()

    def relations(self):
        if self.tokenizer == "bpe" and self.vocab_size <= 256:
            yield Problem(
                ("vocab_size",),
                f"must be > 256 for a bpe tokenizer, which starts from the 256 bytes (got {self.vocab_size})",
            )


@dataclass(frozen=True)
class TrainConfig(Settings):
    batch_size: int = setting(12, ge=1)  # global batch: split across torchrun processes
    max_iters: int = setting(
        2000, ge=1
    )  # nanoGPT's CPU setting (its README, "I only have a macbook")
    lr: float = setting(1e-3, gt=0)  # nanoGPT shakespeare_char: small models tolerate a high rate
    min_lr: float = setting(1e-4, ge=0)  # lr / 10, per Chinchilla
    warmup_iters: int = setting(100, ge=0)  # linear warmup, then cosine decay (nanoGPT)
    lr_decay_iters: int = setting(0, ge=0)  # 0: decay over max_iters
    weight_decay: float = setting(
        0.1, ge=0
    )  # on matrices and slots only, not norms or temperatures
    beta1: float = setting(0.9, ge=0, lt=1)  # AdamW's usual first-moment decay
    beta2: float = setting(
        0.99, ge=0, lt=1
    )  # nanoGPT: few tokens per iteration, so a shorter second-moment memory
    grad_clip: float = setting(1.0, ge=0)  # 0: no clipping
    eval_interval: int = setting(250, ge=0)  # 0: evaluate only at the end
    eval_iters: int = setting(200, ge=1)  # batches per split per evaluation
    ckpt_interval: int = setting(250, ge=0)  # 0: only at the end
    seed: int = setting(1337, ge=0, le=2**63 - 3)  # seed + 1, seed + 2 seed the evaluation batches
    device: str = setting("auto", check=_device_problem)  # "auto": cuda when available, else cpu
    threads: int = setting(0, ge=0, le=4096)  # torch CPU threads; 0: chosen from the machine
    compress: Codec = "none"  # checkpoint files; "zipnn": lossless, needs the zipnn package

    def relations(self):
        if self.min_lr > self.lr:
            yield Problem(
                ("min_lr",),
                f"must be <= lr = {self.lr:g} (got {self.min_lr:g}): the schedule decays from lr down to min_lr",
            )


def _model_problems(model: dict) -> list[Problem]:
    """a kind and that kind's settings (below)

    The problems of a ``[model]`` table: its kind, then its fields as that kind's config."""
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
        problems.append(
            Problem(
                ("vocab_size",),
                "is set by the tokenizer, not here",
                "Remove it; for a bpe tokenizer set [data] vocab_size instead.",
            )
        )
    values = {k: v for k, v in model.items() if k not in ("kind", "vocab_size")}
    try:
        settings.parse(MODELS[kind][1], values)
    except settings.SettingsError as e:
        problems.extend(e.problems)
    return problems


@dataclass(frozen=True)
class RunConfig(Settings):
    out_dir: str = setting(
        "runs/lm", check=_path_problem
    )  # the run's folder: checkpoint and samples
    data: DataConfig = field(default_factory=DataConfig)
    model: dict = setting(
        default_factory=lambda: {"kind": "memlm"}, check=_model_problems
    )  # kind ("memlm" or "gpt") + fields of MemLMConfig / GPTConfig (vocab_size comes from the tokenizer)
    train: TrainConfig = field(default_factory=TrainConfig)
    continual: ContinualConfig = field(default_factory=ContinualConfig)


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
    rank: int = 0  # this process's rank under torchrun (only rank 0 reports)
    val_prev: float | None = None  # [continual] prev_path's val loss at the end


def _model_config(model: dict, vocab_size: int):
    kind = model.get("kind", "memlm")
    values = {k: v for k, v in model.items() if k != "kind"}
    return settings.parse(MODELS[kind][1], {**values, "vocab_size": vocab_size}, ("model",))


def config_reference() -> str:
    """The reference of every training-config key as markdown tables, generated from the
    dataclasses (docs/learned.md holds its output; a test keeps the two equal)."""
    parts = [("Top level", settings.reference(RunConfig)),
             ("`[data]`", settings.reference(DataConfig)),
             ("`[train]`", settings.reference(TrainConfig)),
             ("`[continual]`", settings.reference(ContinualConfig))]  # fmt: skip
    for kind, (_, cls) in MODELS.items():
        parts.append((f'`[model]` with `kind = "{kind}"` (`vocab_size` comes from the tokenizer)',
                      settings.reference(cls, skip=("vocab_size",))))  # fmt: skip
    return "\n\n".join(f"{title}:\n\n{table}" for title, table in parts)


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
    if not doc:  # every setting has a default, but an empty file is a mistake, not a request
        raise InputError(
            f"{p}: holds no settings. A training config sets out_dir, [data], [model] and "
            "[train]; start from examples/lm/tiny.toml."
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


def _optimizer(model: nn.Module, t: TrainConfig, scale=lambda name: 1.0) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; ``scale(name)``: a parameter's lr factor (slot growth)."""
    # nanoGPT: decay every tensor of 2+ dims (matrices, embeddings, slots), not norms or temperatures.
    groups: dict[tuple[float, bool], list] = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((scale(n), p.dim() >= 2 and "log_temp" not in n), []).append(p)
    return torch.optim.AdamW(
        [{"params": ps, "weight_decay": t.weight_decay if decay else 0.0, "lr_scale": s}
         for (s, decay), ps in sorted(groups.items(), key=lambda g: (-g[0][0], not g[0][1]))],
        lr=t.lr, betas=(t.beta1, t.beta2),
    )  # fmt: skip


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


@dataclass(frozen=True)
class DistEnv:
    """The ``torchrun`` environment, read once: the number of processes and this one's ranks."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistEnv:
        names = {"world": "WORLD_SIZE", "rank": "RANK", "local_rank": "LOCAL_RANK"}
        values = {}
        for f, var in names.items():
            raw = os.environ.get(var, "1" if f == "world" else "0")
            if not raw.isdigit():
                raise InputError(
                    f"environment variable {var}={raw!r} is not a whole number; torchrun sets it."
                )
            values[f] = int(raw)
        return cls(**values)

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def ddp(self) -> bool:
        return self.world > 1


class Interrupted(Exception):
    """Training stopped by Ctrl-C after ``it`` iterations; ``saved`` is the checkpoint then
    written (None when there was nothing to save)."""

    def __init__(self, it: int, saved: Path | None):
        self.it, self.saved = it, saved
        super().__init__(f"interrupted after iteration {it}")


def _device(name: str, env: DistEnv) -> tuple[torch.device, list[Problem]]:
    """The device ``name`` means for this process, and why it cannot be used (if so)."""
    key = ("train", "device")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu"), []
    if not torch.cuda.is_available():
        return torch.device("cpu"), [
            Problem(
                key,
                f"asks for {name!r}, but no CUDA GPU is available here",
                "Use device = 'auto' or 'cpu'.",
            )
        ]
    n = torch.cuda.device_count()
    index = env.local_rank if ":" not in name else int(name.split(":")[1])
    if ":" in name and env.ddp:
        return torch.device("cpu"), [
            Problem(
                key,
                f"names one GPU ({name!r}) for {env.world} processes",
                "Use 'cuda' or 'auto': each torchrun process takes the GPU of its local rank.",
            )
        ]
    if index >= n:
        return torch.device("cpu"), [
            Problem(key, f"asks for GPU {index}, but this machine has {n} (cuda:0..cuda:{n - 1})")
        ]
    return torch.device("cuda", index), []


def _out_dir_problems(out_dir: str, *, resume: bool, refuse_existing: bool) -> list[Problem]:
    """Whether the run folder can be written (made now if missing) and fits the mode:
    ``resume`` needs a checkpoint there, ``refuse_existing`` wants none."""
    key, out = ("out_dir",), Path(out_dir)
    if out.exists() and not out.is_dir():
        return [Problem(key, f"{out} is a file, not a folder", "Name a folder for the run.")]
    above = next(p for p in (out, *out.parents) if p.exists())
    if not above.is_dir():
        return [
            Problem(
                key,
                f"{above} is a file, so no folder can be made under it",
                "Name a folder for the run.",
            )
        ]
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        return [
            Problem(
                key,
                f"cannot write in {out} ({e.strerror or e})",
                "Choose a folder you can write, or fix its permissions.",
            )
        ]
    saved = ckpt.checkpoint_json(out)
    if resume and not saved.is_file():
        return [
            Problem(
                key,
                f"{out} holds no checkpoint to resume",
                "Run without --resume to start the run.",
            )
        ]
    if refuse_existing and not resume and saved.is_file():
        return [
            Problem(
                key,
                f"{out} already holds a run (its checkpoint {saved})",
                "Pass --resume to continue it, or --force to start over and replace it.",
            )
        ]
    return []


def _memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _size_problems(cfg: RunConfig, device: torch.device) -> list[Problem]:
    """Whether the model's parameters, gradients and AdamW moments fit the device's memory,
    counted on a model built on the meta device (no memory taken)."""
    vocab = cfg.data.vocab_size if cfg.data.tokenizer == "bpe" else 256  # char: a typical text's
    try:
        with torch.device("meta"):
            model = build_model(cfg.model, vocab)
    except (RuntimeError, ValueError, OverflowError, MemoryError) as e:
        return [
            Problem(("model",), f"cannot be built: {str(e).splitlines()[0]}", "Lower its sizes.")
        ]
    n = count_params(model)
    need = 16 * n + 4 * sum(b.numel() for b in model.buffers())  # fp32: weights, grads, 2 moments
    have = _memory_bytes(device)
    m = _model_config(cfg.model, vocab)
    if need > have:
        sizes = ["n_slots"] * hasattr(m, "n_slots") + ["n_embd", "n_layer", "block_size"]
        sizes += ["laurel_rank"] * (m.residual in ("laurel-lr", "laurel-pa"))
        return [
            Problem(
                ("model",),
                f"needs about {need / 2**30:.1f} GiB for its {n:,} parameters (weights, gradients "
                f"and AdamW's two moments), more than the {have / 2**30:.1f} GiB of {device}",
                f"Lower {', '.join(sizes[:-1])} or {sizes[-1]}.",
            )
        ]
    acts = _activation_bytes(m, cfg.train.batch_size)
    if need + acts <= have:
        return []
    return [
        Problem(
            ("train", "batch_size"),
            f"a batch of {cfg.train.batch_size} windows of {m.block_size} tokens needs at "
            f"least {acts / 2**30:.1f} GiB of activations beside the model's {need / 2**30:.1f} GiB, "
            f"more than the {have / 2**30:.1f} GiB of {device}",
            "Lower batch_size (or block_size, n_embd, n_layer).",
        )
    ]


def _activation_bytes(m, batch_size: int) -> int:
    """About the least one step's fp32 activations and their gradients take (``m``: a MemLM
    or GPT config): per token, the logits and each layer's residual stream and attention row.
    A batch refused on this could not run; one accepted may still not fit."""
    per_token = m.vocab_size + m.n_layer * (m.n_embd + m.n_head * m.block_size)
    return 2 * 4 * batch_size * m.block_size * per_token


def preflight(
    cfg: RunConfig, env: DistEnv, *, resume: bool = False, refuse_existing: bool = False
) -> torch.device:
    """Check what the config asks of this machine before any work: the device exists, the
    batch splits over the processes, the run folder can be written (and fits ``resume`` /
    ``refuse_existing``), the model fits in memory, the checkpoint codec is installed.
    Returns the device; every problem is raised together as a
    :class:`~assocmem.settings.SettingsError` keyed like the config."""
    device, problems = _device(cfg.train.device, env)
    if cfg.train.batch_size % env.world:
        problems.append(
            Problem(
                ("train", "batch_size"),
                f"{cfg.train.batch_size} does not split over the {env.world} processes",
                "Make it a multiple of --nproc_per_node: each process takes an equal slice.",
            )
        )
    data_problem = text_file_problem(cfg.data.path)
    if data_problem:
        problems.append(Problem(("data", "path"), data_problem, TEXT_HINT))
    codec_problem = missing(cfg.train.compress)
    if codec_problem:
        problems.append(Problem(("train", "compress"), codec_problem, INSTALL_HINT))
    problems += _continual_problems(cfg)
    if env.master:
        problems += _out_dir_problems(cfg.out_dir, resume=resume, refuse_existing=refuse_existing)
    if not problems:
        problems += _size_problems(cfg, device)
    if problems:
        raise settings.SettingsError(problems)
    return device


def _continual_problems(cfg: RunConfig) -> list[Problem]:
    """The files the continual keys name exist: the earlier run's checkpoint, the texts."""
    c, problems = cfg.continual, []
    if c.init_from and set(cfg.model) - {"kind"}:
        problems.append(Problem(("model",), "is set, but the model comes from [continual] init_from's run",
                                "Remove the [model] table (grow_slots adds slots to that model)."))  # fmt: skip
    if c.init_from and not ckpt.checkpoint_json(c.init_from).is_file():
        problems.append(Problem(("continual", "init_from"), f"{c.init_from!r} holds no checkpoint",
                                "Name the out_dir of a finished run."))  # fmt: skip
    if c.replay != "none" and c.replay_frac and round(c.replay_frac * cfg.train.batch_size) == 0:
        problems.append(Problem(("continual", "replay_frac"),
            f"is {c.replay_frac:g}, which gives round({c.replay_frac:g} · batch_size {cfg.train.batch_size}) = 0 "
            "replay windows per batch: nothing would be replayed",
            f"Use at least {0.5 / cfg.train.batch_size:.3g}; for a smaller share, replay_every = k mixes into every k-th batch."))  # fmt: skip
    texts = [(("continual", "prev_path"), c.prev_path)] if c.prev_path else []
    texts += [(("data", "tokenizer_texts"), t) for t in cfg.data.tokenizer_texts]
    for key, path in texts:
        problem = text_file_problem(path)
        if problem:
            problems.append(Problem(key, problem, TEXT_HINT))
    return problems


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def train(
    cfg: RunConfig,
    *,
    resume: bool = False,
    refuse_existing: bool = False,
    stop_at: int | None = None,
    progress: bool = True,
    log=print,
    env: DistEnv | None = None,
) -> TrainResult:
    """Train ``cfg``'s model; under ``torchrun`` (``WORLD_SIZE`` > 1) with DistributedDataParallel.

    Everything the config asks of the machine is checked first (:func:`preflight`).
    ``resume`` continues from the checkpoint in ``cfg.out_dir``, reproducing the losses the
    uninterrupted run would have had; ``refuse_existing`` refuses to start over a run that
    has a checkpoint (the command line's default). ``stop_at`` ends the loop after that
    iteration without a checkpoint (a simulated crash, for tests). Ctrl-C stops after the
    current iteration with a checkpoint and raises :class:`Interrupted`. ``env``: the
    torchrun environment when the caller has read it already (default: read it here).
    """
    env = env or DistEnv.from_env()
    device = preflight(cfg, env, resume=resume, refuse_existing=refuse_existing)
    own_group = env.ddp and not dist.is_initialized()
    if own_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        with _StopFlag(log if env.master else None) as stop:
            return _train(
                cfg,
                env,
                device,
                resume=resume,
                stop_at=stop_at,
                stop=stop,
                progress=progress,
                log=log if env.master else lambda *_: None,
            )
    finally:
        if own_group:  # a group this call opened is closed by it, error or not
            dist.destroy_process_group()


class _StopFlag:
    """While active, a first Ctrl-C (SIGINT) only sets ``hit`` (the loop stops after the
    current iteration, with a checkpoint); a second one interrupts at once."""

    def __init__(self, log):
        self.hit, self.log, self.prev = False, log, None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self.prev = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame) -> None:
        self.hit = True
        signal.signal(signal.SIGINT, self.prev)
        if self.log is not None:
            self.log(
                "Ctrl-C: stopping after this iteration with a checkpoint (Ctrl-C again: stop now, without one)"
            )

    def __exit__(self, *exc) -> None:
        if self.prev is not None:
            signal.signal(signal.SIGINT, self.prev)


@dataclass
class _Run:
    """What the training stages share: the config, the process, the data, the model and its optimiser."""

    cfg: RunConfig
    env: DistEnv
    device: torch.device
    tok: object
    train_data: torch.Tensor  # (n_train,) token ids
    val_data: torch.Tensor  # (n_val,)
    test_data: torch.Tensor  # (n_test,): evaluated once, at the end
    raw: nn.Module  # the model itself
    model: nn.Module  # the model as trained: wrapped in DDP under torchrun
    opt: torch.optim.AdamW
    gen: torch.Generator  # the data position
    replay: torch.Tensor | None = None  # (n,) token ids mixed into the batches ([continual])
    prev_val: torch.Tensor | None = (
        None  # (n,) the earlier task's val split ([continual] prev_path)
    )
    losses: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)

    @property
    def block(self) -> int:
        return self.raw.config.block_size


def auto_threads() -> tuple[int, str]:
    """Torch CPU threads for this machine: the cores this process may use minus the other
    work running (the 1-minute load average, rounded up), at least 1, at most torch's
    default. On a loaded 2-core machine two OpenMP threads stall whenever a core is taken
    (8-30x slower than one thread), so a busy machine gets one. Returns ``(threads, why)``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    n = max(1, min(torch.get_num_threads(), (cores or 1) - math.ceil(load)))
    return n, f"chosen from the machine: {cores} cores, load {load:.1f}; [train] threads sets it"


def _set_up(t: TrainConfig, device: torch.device) -> str:
    """Threads and device state; the log's note on the thread count."""
    threads, why = (t.threads, "[train] threads") if t.threads else auto_threads()
    torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    return f"{threads} torch thread(s) ({why})"


def _tokenized(cfg: RunConfig, tok) -> tuple[object, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tokenizer (``tok``, or one trained on train + val) and the train, val, test ids.

    bpe with ``tokenizer_texts``: trained on the train + val part of every text named (the
    data's and those), in sorted path order, so runs naming one set share one tokenizer."""
    text = load_text(cfg.data.path)
    if tok is None:
        d = cfg.data
        paths = sorted({str(Path(p).resolve()) for p in (d.path, *d.tokenizer_texts)})
        texts = [load_text(p) for p in paths] if d.tokenizer == "bpe" else [text]
        sample = "\n".join(t[: int(d.train_frac * len(t))] for t in texts)
        tok = build_tokenizer(d.tokenizer, text if d.tokenizer == "char" else sample, d.vocab_size)
    splits = split_three(tok.encode(text), cfg.data.train_frac, cfg.data.val_frac)
    return tok, *splits


def _start(
    cfg: RunConfig, env: DistEnv, device: torch.device, resume: bool, log
) -> tuple[_Run, int]:
    """The run at its first iteration: fresh, or restored from the checkpoint in out_dir."""
    saved = _checked_checkpoint(cfg.out_dir) if resume else None
    cfg, init = _continued(cfg, saved)
    tok, train_data, val_data, test_data = _tokenized(
        cfg, saved.tok if saved else init.tok if init else None
    )
    block = _model_config(cfg.model, tok.vocab_size).block_size
    for name, part in (("training", train_data), ("validation", val_data), ("test", test_data)):
        if len(part) <= block:  # before the model takes its memory
            raise settings.SettingsError([Problem(("model", "block_size"),
                f"is {block}, but the {name} split holds only {len(part)} tokens (a window needs block_size + 1)",
                "Use a longer text, a shorter block_size, or other [data] train_frac / val_frac.")])  # fmt: skip
    torch.manual_seed(cfg.train.seed)
    raw = build_model(cfg.model, tok.vocab_size).to(device)
    if saved is not None and saved.model_config != raw.config:
        raise InputError(_differs(cfg.out_dir, saved.model_config, raw.config))
    if init is not None:
        _load_init(raw, init)
    c = cfg.continual
    scale = continual.freeze_for_growth(raw, c.frozen_lr) if c.grow_slots else (lambda n: 1.0)
    run = _Run(
        cfg,
        env,
        device,
        tok,
        train_data,
        val_data,
        test_data,
        raw,
        raw,
        _optimizer(raw, cfg.train, scale),
        torch.Generator().manual_seed(cfg.train.seed),
    )
    run.replay, run.prev_val = _replay_data(run, saved)
    start = 0
    if saved is not None:
        start = _restore(run, saved)
        log(f"resumed from {cfg.out_dir} at iteration {start}")
    if env.ddp:
        run.model = nn.parallel.DistributedDataParallel(
            raw, device_ids=[device.index] if device.type == "cuda" else None
        )
    return run, start


def _continued(cfg: RunConfig, saved: _Saved | None) -> tuple[RunConfig, _Saved | None]:
    """With ``[continual] init_from``: the config holding the earlier run's model (grown by
    ``grow_slots``), and that run's checkpoint (None when resuming: the weights are this run's)."""
    c = cfg.continual
    if not c.init_from:
        return cfg, None
    if saved is not None:
        return dataclasses.replace(cfg, model=dict(saved.meta["config"]["model"])), None
    init = _checked_checkpoint(c.init_from)
    model = dict(init.meta["config"]["model"])
    if c.grow_slots:
        kind, grown = init.meta["model_kind"], getattr(init.model_config, "n_grown", 0)
        if kind != "memlm" or grown:
            why = f"is a {kind} model" if kind != "memlm" else f"has {grown} grown slots already"
            raise settings.SettingsError([Problem(("continual", "grow_slots"),
                f"needs a MemLM without grown slots, but the run in {c.init_from} {why}",
                "Grow a MemLM trained without grow_slots.")])  # fmt: skip
        model["n_grown"] = c.grow_slots
    return dataclasses.replace(cfg, model=model), init


def _load_init(raw: nn.Module, init: _Saved) -> None:
    """The earlier run's weights into ``raw``; its grown slots (if any) keep their fresh init."""
    missing, unexpected = raw.load_state_dict(init.model, strict=False)
    assert not unexpected and all(n.rsplit(".", 1)[-1] in continual.GROWN for n in missing), (
        missing,
        unexpected,
    )


def _replay_data(
    run: _Run, saved: _Saved | None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(replay ids, the earlier task's val ids)`` for ``[continual]``: real replay from
    prev_path's train split; self replay sampled from the init model (or, resuming, the samples
    the checkpoint holds)."""
    c, d = run.cfg.continual, run.cfg.data
    replay = prev_val = None
    if c.prev_path:
        prev = split_three(run.tok.encode(load_text(c.prev_path)), d.train_frac, d.val_frac)
        prev_val = prev.val
        if c.replay == "real":
            replay = continual.real_replay(prev.train, c.replay_tokens)
    if c.replay == "self":
        if saved is not None:
            replay = saved.state["replay.self"]
        else:
            gen = torch.Generator().manual_seed(run.cfg.train.seed + 4)
            start = continual.start_token(run.tok)
            replay = continual.sample_replay(run.raw, start, c.replay_tokens, gen)
    return replay, prev_val


def _differs(out_dir: str, saved, now) -> str:
    diff = [
        f"{f.name} {getattr(saved, f.name)!r} there, {getattr(now, f.name)!r} here"
        for f in dataclasses.fields(now)
        if getattr(saved, f.name) != getattr(now, f.name)
    ]
    return (
        f"the checkpoint in {out_dir} is of another model than the config's [model]: "
        f"{'; '.join(diff)}. Resume with the config it was trained with, or start over with --force."
    )


def _restore(run: _Run, saved: _Saved) -> int:
    """Load the checkpoint's weights, optimiser and RNG states into ``run``; the iteration it resumes at."""
    run.raw.load_state_dict(saved.model)
    osd, rngs = ckpt.unflatten_state(
        saved.state, saved.meta["optim_state_ids"], run.opt.state_dict()["param_groups"]
    )
    for s in osd["state"].values():
        for k, v in s.items():  # AdamW keeps step on the CPU unless capturable
            s[k] = v.cpu() if k == "step" else v.to(run.device)
    run.opt.load_state_dict(osd)
    run.gen.set_state(rngs["data"])
    torch.set_rng_state(rngs["torch"])
    if run.device.type == "cuda" and "cuda" in rngs:
        torch.cuda.set_rng_state(rngs["cuda"], run.device)
    run.losses, run.evals = list(saved.meta["losses"]), list(saved.meta["evals"])
    return saved.meta["iter"]


def _save(run: _Run, it: int) -> Path | None:
    """Checkpoint ``run`` after ``it`` iterations (rank 0 only); the path of its JSON."""
    if not run.env.master:
        return None
    rngs = {"data": run.gen.get_state(), "torch": torch.get_rng_state()}
    if run.device.type == "cuda":
        rngs["cuda"] = torch.cuda.get_rng_state(run.device)
    state, ids = ckpt.flatten_state(run.opt.state_dict(), rngs)
    if run.cfg.continual.replay == "self":  # the samples, so a resumed run mixes the same ones
        state["replay.self"] = run.replay
    meta = {
        "config": dataclasses.asdict(run.cfg),
        "model_kind": run.cfg.model.get("kind", "memlm"),
        "model_config": dataclasses.asdict(run.raw.config),
        "tokenizer": run.tok.state(),
        "iter": it,
        "losses": run.losses,
        "evals": run.evals,
        "optim_state_ids": ids,
        "params": count_params(run.raw),
    }
    return ckpt.save_checkpoint(
        run.cfg.out_dir,
        run.raw.state_dict(),
        state,
        meta,
        codec=run.cfg.train.compress,
        threads=torch.get_num_threads(),
    )


def _evaluate(run: _Run, it: int, log) -> float:
    t = run.cfg.train
    tr = evaluate(
        run.raw, run.train_data, run.block, t.batch_size, t.eval_iters, t.seed + 1, run.device
    )
    va = evaluate(
        run.raw, run.val_data, run.block, t.batch_size, t.eval_iters, t.seed + 2, run.device
    )
    run.evals.append({"iter": it, "train": tr, "val": va})
    log(f"iter {it}: train loss {tr:.4f}, val loss {va:.4f}")
    return va


def _step(run: _Run, it: int, stop: _StopFlag) -> tuple[float, bool]:
    """One AdamW step on this process's slice of the global batch: ``(mean loss over the
    processes, whether any process was asked to stop)``."""
    t, env = run.cfg.train, run.env
    lr = _lr(it, t)
    for g in run.opt.param_groups:
        g["lr"] = lr * g["lr_scale"]
    per = t.batch_size // env.world
    c = run.cfg.continual
    frac = c.replay_frac if it % c.replay_every == 0 else 0.0  # replay_every: only every k-th batch
    x, y = continual.mixed_batch(
        run.train_data, run.replay, run.block, t.batch_size, frac, run.gen
    )  # (B, T) each: the global batch
    x, y = (
        x[env.rank * per : (env.rank + 1) * per].to(run.device),
        y[env.rank * per : (env.rank + 1) * per].to(run.device),
    )  # (B/world, T)
    _, loss = run.model(x, y)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()  # DDP averages the gradients over processes
    if t.grad_clip:
        nn.utils.clip_grad_norm_(run.model.parameters(), t.grad_clip)
    run.opt.step()
    lv = loss.detach()
    if not env.ddp:
        return lv.item(), stop.hit
    both = torch.stack([lv, torch.tensor(float(stop.hit), device=lv.device)])  # (2,)
    dist.all_reduce(both, op=dist.ReduceOp.SUM)  # one exchange: the loss and the stop flag
    return (both[0] / env.world).item(), bool(both[1].item())


def _train(
    cfg: RunConfig,
    env: DistEnv,
    device: torch.device,
    *,
    resume: bool,
    stop_at: int | None,
    stop: _StopFlag,
    progress: bool,
    log,
) -> TrainResult:
    """The stages of a run: set up, start (fresh or resumed), the loop, the final evaluation."""
    threads = _set_up(cfg.train, device)
    run, start = _start(cfg, env, device, resume, log)
    kind = cfg.model.get("kind", "memlm")
    log(
        f"{kind}: {count_params(run.raw):,} parameters, {env.world} process(es) on {device}, {threads}"
    )
    if stop.hit:  # Ctrl-C while the data loaded: nothing new to save
        raise Interrupted(start, ckpt.checkpoint_json(cfg.out_dir) if resume else None)
    steps, train_s = _loop(run, start, stop_at, stop, progress and env.master, log)
    if not run.evals or run.evals[-1]["iter"] != len(run.losses):
        _evaluate(run, len(run.losses), log)
    t = cfg.train
    test = evaluate(
        run.raw, run.test_data, run.block, t.batch_size, t.eval_iters, t.seed + 3, run.device
    )
    log(f"test loss {test:.4f} (reported only)")
    prev = None
    if run.prev_val is not None:
        prev = evaluate(
            run.raw, run.prev_val, run.block, t.batch_size, t.eval_iters, t.seed + 2, device
        )
        log(f"val loss on the earlier task ({cfg.continual.prev_path}): {prev:.4f}")
    return TrainResult(
        params=count_params(run.raw),
        losses=run.losses,
        evals=run.evals,
        val_loss=run.evals[-1]["val"],
        test_loss=test,
        tokens_per_s=steps * cfg.train.batch_size * run.block / train_s if train_s else 0.0,
        peak_mem_mb=_peak_mem_mb(device),
        out_dir=cfg.out_dir,
        rank=env.rank,
        val_prev=prev,
    )


def _loop(
    run: _Run, start: int, stop_at: int | None, stop: _StopFlag, progress: bool, log
) -> tuple[int, float]:
    """Iterations ``start`` .. ``max_iters`` with evaluations and checkpoints on schedule;
    ``(steps taken, seconds in them)``. Ctrl-C: checkpoint, then :class:`Interrupted`."""
    t, device = run.cfg.train, run.device
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=t.max_iters, initial=start, desc="train", dynamic_ncols=True)
    train_s, steps = 0.0, 0
    run.model.train()
    try:
        for it in range(start, t.max_iters):
            due = t.eval_interval and it % t.eval_interval == 0 and it > 0
            if due and not any(e["iter"] == it for e in run.evals):
                _evaluate(run, it, log)
            t0 = time.perf_counter()
            loss, stopping = _step(run, it, stop)
            run.losses.append(loss)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_s += time.perf_counter() - t0
            steps += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{_lr(it, t):.2e}")
            if stop_at is not None and it + 1 >= stop_at:
                break
            if stopping:
                raise Interrupted(it + 1, _save(run, it + 1))
            if (t.ckpt_interval and (it + 1) % t.ckpt_interval == 0) or it + 1 == t.max_iters:
                if it + 1 == t.max_iters:
                    _evaluate(run, it + 1, log)
                _save(run, it + 1)
    finally:
        if bar is not None:
            bar.close()
    return steps, train_s


@dataclass(frozen=True)
class _Saved:
    """A checkpoint read back and checked: tensors, meta, tokenizer and model config."""

    model: dict[str, torch.Tensor]
    state: dict[str, torch.Tensor]
    meta: dict
    tok: object
    model_config: object


def _meta_problems(meta: dict) -> list[Problem]:
    """What is wrong with a checkpoint's JSON entries: their presence and types, then the
    iteration against the loss history."""
    problems = []
    kinds = typing.get_args(ModelKind)
    if meta.get("model_kind") not in kinds:
        got = settings.describe(meta.get("model_kind"))
        problems.append(Problem(("model_kind",), f"must be one of {', '.join(map(repr, kinds))} (got {got})"))  # fmt: skip
    for key, tp in (("model_config", dict), ("tokenizer", dict), ("losses", list),
                    ("evals", list), ("optim_state_ids", list)):  # fmt: skip
        if not isinstance(meta.get(key), tp):
            got = settings.describe(meta[key]) if key in meta else "nothing"
            problems.append(Problem((key,), f"must be a {'table' if tp is dict else 'list'} (got {got})"))  # fmt: skip
    it = meta.get("iter")
    if not isinstance(it, int) or isinstance(it, bool) or it < 0:
        got = settings.describe(it) if "iter" in meta else "nothing"
        problems.append(Problem(("iter",), f"must be a whole number >= 0 (got {got})"))
    return problems or _history_problems(meta)


def _history_problems(meta: dict) -> list[Problem]:
    """The loss history, evaluations and optimiser ids hold what they should, one loss per iteration."""

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    problems = []
    if not all(number(v) for v in meta["losses"]):
        problems.append(Problem(("losses",), "must hold numbers only"))
    elif len(meta["losses"]) != meta["iter"]:
        n = len(meta["losses"])
        problems.append(Problem(("iter",), f"is {meta['iter']}, but the checkpoint holds {n} losses (one per iteration)"))  # fmt: skip
    if not all(isinstance(e, dict) and isinstance(e.get("iter"), int) for e in meta["evals"]):
        problems.append(Problem(("evals",), "must hold tables with an integer 'iter'"))
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in meta["optim_state_ids"]):
        problems.append(Problem(("optim_state_ids",), "must hold integers only"))
    return problems


def _tensor_problems(saved_model, state, meta, mcfg) -> list[Problem]:
    """Whether the tensors fit the model config, and the optimiser's step count the iteration."""
    with torch.device("meta"):
        want = MODELS[meta["model_kind"]][0](mcfg).state_dict()
    for name, ref in want.items():
        got = saved_model.get(name)
        if got is None or got.shape != ref.shape:
            shape = "missing" if got is None else f"{tuple(got.shape)}"
            return [
                Problem(
                    ("model_config",),
                    f"does not fit the saved weights: {name} is {shape}, the config makes {tuple(ref.shape)}",
                )
            ]
    extra = sorted(set(saved_model) - set(want))
    if extra:
        return [
            Problem(
                ("model_config",),
                f"does not fit the saved weights: {extra[0]} is not part of that model",
            )
        ]
    problems = [
        Problem(("files",), f"the state file lacks the RNG state rng.{r}")
        for r in ("data", "torch")
        if f"rng.{r}" not in state
    ]
    for i in meta["optim_state_ids"]:
        step = state.get(f"optim.{i}.step")
        if step is None or step.numel() != 1:
            problems.append(
                Problem(
                    ("optim_state_ids",), f"names parameter {i}, whose optimiser state is missing"
                )
            )
            break
        if int(step.item()) != meta["iter"]:
            problems.append(
                Problem(
                    ("iter",),
                    f"is {meta['iter']}, but the optimiser has taken {int(step.item())} steps",
                )
            )
            break
    return problems


def _checked_checkpoint(path: str | Path) -> _Saved:
    """The checkpoint at ``path`` (folder or JSON) read and checked entry by entry; every
    problem an :class:`InputError` naming the JSON file, line and entry."""
    model_t, state_t, meta = ckpt.load_checkpoint(path)
    jp = ckpt.checkpoint_json(path)
    problems = _meta_problems(meta)
    tok = mcfg = None
    if not problems:
        try:
            mcfg = settings.parse(MODELS[meta["model_kind"]][1], meta["model_config"])
        except settings.SettingsError as e:
            problems += [p.under(("model_config",)) for p in e.problems]
        try:
            tok = tokenizer_from_state(meta["tokenizer"])
        except InputError as e:
            problems.append(Problem(("tokenizer",), str(e).rstrip(".")))
        except Exception as e:  # noqa: BLE001 - a damaged tokenizer raises whatever its parser does
            problems.append(Problem(("tokenizer",), f"does not load ({type(e).__name__}: {e})"))
    if not problems and tok.vocab_size != mcfg.vocab_size:
        problems.append(
            Problem(("tokenizer",), f"has {tok.vocab_size} tokens, the model {mcfg.vocab_size}")
        )
    if not problems:
        problems += _tensor_problems(model_t, state_t, meta, mcfg)
    if problems:
        text = jp.read_text(encoding="utf-8")
        raise settings.SettingsError(problems).located(
            jp, text, lambda key: ckpt.json_line(text, key[0])
        ) from None
    return _Saved(model_t, state_t, meta, tok, mcfg)


def load_model(path: str | Path, device: str = "cpu") -> tuple[nn.Module, object, dict]:
    """``(model in eval mode, tokenizer, checkpoint meta)`` from a checkpoint folder or its JSON."""
    saved = _checked_checkpoint(path)
    model = MODELS[saved.meta["model_kind"]][0](saved.model_config)
    model.load_state_dict(saved.model)
    return model.to(device).eval(), saved.tok, saved.meta
