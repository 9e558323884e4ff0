"""ReCL on class-incremental split digits: reconstruct old tasks' data from the weights.

ReCL (Janetzky et al. 2024, arXiv 2411.06916) slows forgetting by reconstructing, after
each task, training inputs from the trained network and mixing them into the next tasks'
batches. The reconstruction is Haim et al. 2022's: a network trained to near-zero loss
approaches a KKT point of margin maximisation, where ``θ = Σ_j λ_j ∇θ m(x_j, y_j; θ)``
with ``λ_j >= 0`` and ``m`` the multiclass margin ``Φ_y(x) − max_{c≠y} Φ_c(x)``; so
candidate inputs ``x_j`` and multipliers ``λ_j`` are found by minimising

    ||θ − Σ_j λ_j ∇θ m(x_j, y_j; θ)||² / ||θ||²  +  Σ_j relu(λ_min − λ_j)  +  Σ relu(|x| − 1)²

(the last two: multipliers bounded below, inputs kept in the data's range [-1, 1]).

The setting: ``sklearn.datasets.load_digits`` (8x8 images, 10 classes), five tasks of two
classes, one 10-way head, no task identity at test time; a bias-free ReLU MLP (homogeneous,
as the KKT condition above assumes). Methods: ``finetune`` (current task only),
``replay_real`` (a fixed buffer of real training examples per past task), ``recl`` (as
many reconstructions per past task, labelled by the model that made them) and the control
``noise_labelled`` (the reconstruction's starting inputs, not optimised, labelled alike).
``ACC`` = mean final test accuracy over the tasks; ``BWT`` = mean over all but the last task
of (final accuracy − accuracy right after learning it).
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from assocmem.errors import InputError

__all__ = [
    "DigitsConfig",
    "Split",
    "METHODS",
    "load_split",
    "make_mlp",
    "train_task",
    "margins",
    "reconstruct",
    "ALL_METHODS",
    "run_method",
    "summarize",
    "acc_bwt",
    "digits_benchmark",
]

METHODS = ("finetune", "replay_real", "recl")
# + a control: as many inputs as ReCL's, drawn as its reconstruction starts but not
# optimised, labelled by the model (does the reconstruction matter, or any labelled input?)
ALL_METHODS = (*METHODS, "noise_labelled")


@dataclass(frozen=True)
class DigitsConfig:
    """Every setting of the benchmark, fixed before any run (none tuned on the test split)."""

    tasks: tuple[tuple[int, int], ...] = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
    hidden: int = 100
    init_scale: float = 1.0  # the default initialisation's weights times this
    lr: float = 1e-3
    max_steps: int = 600  # full-batch Adam steps per task ...
    target_loss: float = 1e-3  # ... or until the current task's loss is below this
    per_task: int = 40  # buffer size per past task: real examples or reconstructions
    rec_steps: int = 1500
    rec_lr: float = 0.01
    rec_lambda_min: float = 0.05
    rec_init_std: float = 0.1
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train, val, test

    def __post_init__(self) -> None:
        classes = [c for t in self.tasks for c in t]
        if len(set(classes)) != len(classes) or not all(0 <= c <= 9 for c in classes):
            raise InputError(f"tasks must split distinct digit classes 0-9; got {self.tasks}")
        if self.per_task < len(self.tasks[0]) or self.max_steps < 1 or self.rec_steps < 1:
            raise InputError("per_task must hold one example per class; steps must be >= 1")
        if abs(sum(self.fractions) - 1) > 1e-9 or min(self.fractions) <= 0:
            raise InputError(f"fractions must be positive and sum to 1; got {self.fractions}")


@dataclass(frozen=True)
class Split:
    """Digits scaled to [-1, 1]: ``x`` ``(n, 64)``, ``y`` ``(n,)`` for train, val and test."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


@functools.cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits  # shipped with scikit-learn: no download

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 8 - 1  # (1797, 64) in [-1, 1]
    return x, torch.tensor(d.target, dtype=torch.long)  # (1797,)


def load_split(seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Split:
    """A stratified train/val/test split of ``load_digits``, shuffled by ``seed``."""
    x, y = _digits()
    g = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[], [], []]
    for c in range(10):
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        a = round(fractions[0] * len(idx))
        b = a + round(fractions[1] * len(idx))
        for p, part in zip(parts, (idx[:a], idx[a:b], idx[b:]), strict=True):
            p.append(part)
    tr, va, te = (torch.cat(p) for p in parts)
    return Split((x[tr], y[tr]), (x[va], y[va]), (x[te], y[te]))


def _task(data: tuple[torch.Tensor, torch.Tensor], classes: tuple[int, ...]):
    x, y = data
    keep = torch.isin(y, torch.tensor(classes))
    return x[keep], y[keep]


def make_mlp(hidden: int = 100, seed: int = 0, init_scale: float = 1.0) -> nn.Sequential:
    """A bias-free 64 → hidden → hidden → 10 ReLU network (homogeneous in its weights),
    its default initialisation scaled by ``init_scale`` (Haim et al. reconstruct best from
    networks started small: the weights are then mostly what training put there)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(64, hidden, bias=False),
        nn.ReLU(),
        nn.Linear(hidden, hidden, bias=False),
        nn.ReLU(),
        nn.Linear(hidden, 10, bias=False),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(init_scale)
    return net


def train_task(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: DigitsConfig,
    replay: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> float:
    """Full-batch Adam on the task (``x`` ``(n, 64)``, ``y`` ``(n,)``), plus the mean loss on
    ``replay`` with equal weight, until the task's loss reaches ``cfg.target_loss``; returns it."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss = torch.tensor(float("inf"))
    for _ in range(cfg.max_steps):
        loss = F.cross_entropy(model(x), y)
        total = loss if replay is None else loss + F.cross_entropy(model(replay[0]), replay[1])
        opt.zero_grad()
        total.backward()
        opt.step()
        if loss.item() < cfg.target_loss:
            break
    return loss.item()


def margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Multiclass margins ``Φ_y(x) − max_{c≠y} Φ_c(x)``, shape ``(n,)``."""
    out = model(x)  # (n, 10)
    own = out.gather(1, y[:, None]).squeeze(1)  # (n,)
    rival = out.scatter(1, y[:, None], float("-inf")).amax(1)  # (n,)
    return own - rival


def _kkt_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor, cfg):
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad((lam * margins(model, x, y)).sum(), params, create_graph=True)
    gap = sum(((p.detach() - g) ** 2).sum() for p, g in zip(params, grads, strict=True))
    norm = sum((p.detach() ** 2).sum() for p in params)
    lam_term = F.relu(cfg.rec_lambda_min - lam).sum()
    prior = (F.relu(x.abs() - 1) ** 2).sum()
    return gap / norm + lam_term + prior


def reconstruct(
    model: nn.Module,
    classes: tuple[int, ...],
    cfg: DigitsConfig,
    seed: int = 0,
    steps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Haim et al.'s reconstruction of ``cfg.per_task`` inputs of ``classes`` (balanced) from
    ``model``'s weights: ``(x (m, 64), labels the model gives them (m,), objective per step)``;
    ``steps`` (default ``cfg.rec_steps``) Adam steps on the inputs and multipliers."""
    g = torch.Generator().manual_seed(seed)
    m = cfg.per_task
    y = torch.tensor(classes).repeat(m // len(classes) + 1)[:m]  # (m,)
    x = (cfg.rec_init_std * torch.randn(m, 64, generator=g)).requires_grad_()  # (m, 64)
    lam = torch.full((m,), 2 * cfg.rec_lambda_min, requires_grad=True)  # (m,)
    opt = torch.optim.Adam([x, lam], lr=cfg.rec_lr)
    history = []
    for _ in range(cfg.rec_steps if steps is None else steps):
        loss = _kkt_loss(model, x, y, lam, cfg)
        x.grad, lam.grad = torch.autograd.grad(loss, [x, lam])  # the weights' grads untouched
        opt.step()
        history.append(loss.item())
    xr = x.detach().clamp(-1, 1)
    with torch.no_grad():
        labels = model(xr).argmax(1)
    return xr, labels, history


def _accuracy(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    with torch.no_grad():
        return (model(data[0]).argmax(1) == data[1]).float().mean().item()


def _real_buffer(x: torch.Tensor, y: torch.Tensor, classes, m: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    per = [(y == c).nonzero().squeeze(1) for c in classes]
    take = [p[torch.randperm(len(p), generator=g)[: m // len(classes)]] for p in per]
    idx = torch.cat(take)
    return x[idx], y[idx]


def run_method(method: str, seed: int, cfg: DigitsConfig = DigitsConfig()):
    """One run: ``{"val": R, "test": R}``, ``R[i][j]`` the accuracy on task ``j``'s part of
    that split after learning task ``i``."""
    if method not in ALL_METHODS:
        raise InputError(f"unknown method {method!r}: expected one of {', '.join(ALL_METHODS)}")
    data = load_split(seed, cfg.fractions)
    model = make_mlp(cfg.hidden, seed, cfg.init_scale)
    buffer: list[tuple[torch.Tensor, torch.Tensor]] = []
    R: dict[str, list[list[float]]] = {"val": [], "test": []}
    for t, classes in enumerate(cfg.tasks):
        x, y = _task(data.train, classes)
        replay = tuple(torch.cat(part) for part in zip(*buffer, strict=True)) if buffer else None
        train_task(model, x, y, cfg, replay)  # type: ignore[arg-type]
        for split, rows in R.items():
            rows.append([_accuracy(model, _task(getattr(data, split), c)) for c in cfg.tasks])
        if method == "replay_real":
            buffer.append(_real_buffer(x, y, classes, cfg.per_task, seed + t))
        elif method in ("recl", "noise_labelled") and t < len(cfg.tasks) - 1:
            steps = cfg.rec_steps if method == "recl" else 0  # the control: x as initialised
            xr, labels, _ = reconstruct(model, classes, cfg, seed=seed * 100 + t, steps=steps)
            buffer.append((xr, labels))
    return R


def acc_bwt(R: list[list[float]]) -> tuple[float, float]:
    """ACC (mean final accuracy) and BWT (mean final minus just-learned, all but the last)."""
    T = len(R)
    acc = sum(R[-1]) / T
    bwt = sum(R[-1][j] - R[j][j] for j in range(T - 1)) / (T - 1)
    return acc, bwt


def summarize(runs: list[list[list[float]]]) -> dict[str, float]:
    """``{"acc_mean", "acc_sd", "bwt_mean", "bwt_sd"}`` of runs' ``R`` (sample sd; 0 for one)."""
    accs, bwts = zip(*(acc_bwt(R) for R in runs), strict=True)
    sd = statistics.stdev if len(runs) > 1 else (lambda _: 0.0)
    return {
        "acc_mean": statistics.mean(accs),
        "acc_sd": sd(accs),
        "bwt_mean": statistics.mean(bwts),
        "bwt_sd": sd(bwts),
    }


def digits_benchmark(
    seeds: list[int],
    cfg: DigitsConfig = DigitsConfig(),
    split: str = "test",
    methods: tuple[str, ...] = METHODS,
) -> dict[str, dict[str, float]]:
    """``{METHOD: {"acc_mean", "acc_sd", "bwt_mean", "bwt_sd"}}`` over ``seeds`` for
    ``methods`` (default: finetune, replay_real, recl), measured on ``split``."""
    return {m: summarize([run_method(m, s, cfg)[split] for s in seeds]) for m in methods}
