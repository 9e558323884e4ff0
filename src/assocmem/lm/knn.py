"""kNN-LM (Khandelwal et al. 2020): the training set as a memory, read beside the model.

The datastore holds one slot per position of the training split: the key is the model's
hidden state before the readout (the output of ``ln_f``, whose product with the embeddings
gives the logits), the value the next token. At each position the model's own distribution
is mixed with a read of the datastore:

    p(y) = λ·p_kNN(y) + (1 − λ)·p_LM(y),     p_kNN = mem(h, K_top, onehot(V_top), temp)

where ``K_top, V_top`` are the ``k`` slots whose keys score highest against ``h`` (inner
product, through an :mod:`assocmem.index` index). The read is :func:`assocmem.mem` like every
other: the kNN distribution *is* a softmax read whose values are one-hot next tokens (here
only the probability of the true next token is read: the values are ``[v_j == y]``).

Positions are covered by windows of ``block_size`` tokens moved by half a block; each
position is taken from the window where it has at least half a block of context (the first
window gives its first half too), so keys and queries see the same context lengths.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from assocmem.errors import InputError
from assocmem.index import IndexConfig, LargeMemory, read_slots

__all__ = [
    "KNNConfig",
    "windows",
    "hidden_states",
    "build_datastore",
    "knn_target_probs",
    "interpolated_nll",
    "readout_logp",
    "checkpoint_splits",
    "KNNEval",
    "lm_states",
    "evaluate_knn",
]


@dataclass(frozen=True)
class KNNConfig:
    """How the datastore is read: ``k`` slots, softmax ``temp``, interpolation weight ``lam``."""

    k: int = 32
    temp: float = 1.0
    lam: float = 0.25

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise InputError(f"kNN k must be an integer >= 1; got {self.k!r}")
        if not (math.isfinite(self.temp) and self.temp > 0):
            raise InputError(f"kNN temp must be a finite number > 0; got {self.temp!r}")
        if not 0.0 <= self.lam <= 1.0:
            raise InputError(f"kNN lam (λ) must be in [0, 1]; got {self.lam!r}")


def windows(n: int, block: int) -> list[tuple[int, int]]:
    """``(start, first owned offset)`` of windows of ``block`` positions, moved by half a
    block, that cover positions ``0 .. n-1`` once each (the last window may move less)."""
    if n <= block:
        return [(0, 0)]
    stride = max(1, block // 2)
    out, covered = [(0, 0)], block
    while covered < n:
        s = min(covered + stride - block, n - block)
        out.append((s, covered - s))
        covered = s + block
    return out


@torch.no_grad()
def hidden_states(
    model: nn.Module, ids: torch.Tensor, batch: int = 64
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """For the text ``ids`` ``(N,)``, in order and in batches of windows: ``(h, logp, y)``
    with ``h`` ``(b, C)`` the hidden states before the readout (``model.ln_f``'s output),
    ``logp`` ``(b,)`` the model's log-probability of the next token and ``y`` ``(b,)`` that
    token, for every position ``0 .. N-2`` once."""
    block = model.config.block_size
    x_all, y_all = ids[:-1], ids[1:]  # (N-1,) inputs and their next tokens
    n = len(x_all)
    block = min(block, n)
    seen: list[torch.Tensor] = []
    hook = model.ln_f.register_forward_hook(lambda mod, inp, out: seen.append(out))
    try:
        wins = windows(n, block)
        for b0 in range(0, len(wins), batch):
            part = wins[b0 : b0 + batch]
            x = torch.stack([x_all[s : s + block] for s, _ in part])  # (b, T)
            y = torch.stack([y_all[s : s + block] for s, _ in part])  # (b, T)
            seen.clear()
            logits, _ = model(x)  # (b, T, V)
            h = seen[-1]  # (b, T, C)
            logp = torch.log_softmax(logits.float(), -1).gather(-1, y[..., None])[..., 0]  # (b, T)
            keep = [slice(o, block) for _, o in part]
            yield (
                torch.cat([h[i, sl] for i, sl in enumerate(keep)]).float(),  # (b', C)
                torch.cat([logp[i, sl] for i, sl in enumerate(keep)]),  # (b',)
                torch.cat([y[i, sl] for i, sl in enumerate(keep)]),  # (b',)
            )
    finally:
        hook.remove()


def build_datastore(
    model: nn.Module,
    ids: torch.Tensor,
    config: IndexConfig = IndexConfig(),
    meta: dict | None = None,
) -> LargeMemory:
    """The datastore of the text ``ids``: keys the hidden states, values ``(m, 1)`` the next
    tokens (int64), indexed as ``config`` says."""
    hs, ys = [], []
    for h, _, y in hidden_states(model, ids):
        hs.append(h)
        ys.append(y)
    return LargeMemory(torch.cat(hs), torch.cat(ys)[:, None], config, meta=meta)


def knn_target_probs(
    store: LargeMemory,
    h: torch.Tensor,
    y: torch.Tensor,
    ks: list[int],
    temps: list[float],
    exclude: tuple[int, int] | None = None,
) -> dict[tuple[int, float], torch.Tensor]:
    """``p_kNN(y)`` ``(n,)`` for each ``(k, temp)``: the read of ``h`` ``(n, C)`` over its ``k``
    best slots with values ``[v_j == y]``. One search for the largest k; smaller k read its
    best-first prefix. ``exclude``: slots never read (a held-out stretch of the datastore)."""
    ids = store.index.search(h, max(ks), exclude)  # (n, kmax), best first
    j = ids.clamp_min(0)
    Kg = store.K[j]  # (n, kmax, C)
    hit = (store.V[j, 0] == y[:, None]).to(h.dtype)[..., None]  # (n, kmax, 1): [v_j == y]
    valid = ids >= 0  # (n, kmax)
    return {
        (k, t): read_slots(h, Kg[:, :k], hit[:, :k], valid[:, :k], t)[:, 0]  # (n,)
        for k in ks
        for t in temps
    }


def readout_logp(model: nn.Module, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``log p_LM(y)`` ``(n,)`` from hidden states ``h`` ``(n, C)`` before the readout: MemLM and
    GPT read out through their tied embeddings, ``logits = h · wteᵀ``."""
    logits = h @ model.wte.weight.T  # (n, V)
    return torch.log_softmax(logits.float(), -1).gather(1, y[:, None])[:, 0]


def interpolated_nll(logp_lm: torch.Tensor, p_knn: torch.Tensor, lam: float) -> torch.Tensor:
    """``−log(λ·p_kNN + (1 − λ)·p_LM)`` per position, from ``log p_LM`` (exact at λ = 0: the
    model's own loss)."""
    if lam == 0:
        return -logp_lm
    return -torch.logaddexp(math.log(lam) + torch.log(p_knn), math.log1p(-lam) + logp_lm)


def checkpoint_splits(meta: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The training and validation token ids of the text a checkpoint was trained on."""
    from assocmem.lm.data import load_text, split_ids, tokenizer_from_state

    data = meta["config"]["data"]
    path = Path(data["path"])
    if not path.is_file():
        raise InputError(
            f"the checkpoint's text {str(path)!r} is not there; run from the folder it was trained in"
        )
    tok = tokenizer_from_state(meta["tokenizer"])
    return split_ids(tok.encode(load_text(path)), data["train_frac"])


@dataclass(frozen=True)
class KNNEval:
    """Mean loss over ``positions`` without and with the datastore, and the speed of each
    (positions scored per second on this machine, measured in the same pass)."""

    positions: int
    loss: float
    loss_knn: float
    tokens_per_s: float
    tokens_per_s_knn: float
    curve: tuple[tuple[float, float], ...] = ()  # (λ, loss) for each λ asked for


def lm_states(
    model: nn.Module, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """``(h, log p_LM(y), y, seconds)`` over every position of ``ids`` (see :func:`hidden_states`)."""
    t0 = time.perf_counter()
    h, logp, y = (torch.cat(t) for t in zip(*hidden_states(model, ids), strict=True))
    return h, logp, y, time.perf_counter() - t0


def evaluate_knn(
    model: nn.Module,
    store: LargeMemory,
    ids: torch.Tensor,
    config: KNNConfig,
    exclude: tuple[int, int] | None = None,
    batch: int = 4096,
    lams: tuple[float, ...] = (),
) -> KNNEval:
    """The model's loss on ``ids`` alone and interpolated with the datastore, as ``config``
    says; the speeds of both (forward pass; forward, search and read) measured in this pass,
    and the loss at each λ of ``lams`` from the same kNN reads."""
    h, logp, y, t_lm = lm_states(model, ids)
    key = (config.k, config.temp)
    t0 = time.perf_counter()
    p_knn = torch.cat([
        knn_target_probs(store, h[i : i + batch], y[i : i + batch], [config.k], [config.temp], exclude)[key]
        for i in range(0, len(h), batch)
    ])  # fmt: skip
    loss_knn = float(interpolated_nll(logp, p_knn, config.lam).mean())
    t_knn = time.perf_counter() - t0
    n = len(h)
    curve = tuple((lam, float(interpolated_nll(logp, p_knn, lam).mean())) for lam in lams)
    return KNNEval(n, float(-logp.mean()), loss_knn, n / t_lm, n / (t_lm + t_knn), curve)
