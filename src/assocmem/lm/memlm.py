"""MemLM: a language model in which every sublayer is one read of an associative memory.

Per layer and token (``q`` the normalised residual stream ``x``)::

    x += mem(q, K, V)        # associative bank: N learned slots, key K[i] -> value V[i]
    x += Wo mem(q, Xk, Xv)   # context bank: the earlier tokens (causal, multi-head, rotary)
    x += mem(q, V, K)        # "MLP" bank: the same slots read backwards (keys and values swapped)

The associative bank is a key-value memory with a softmax in place of an MLP's GELU: N
slots cost 2·N·d parameters, like an MLP with N hidden units, and the swapped read
reuses them for free. Each slot read costs about what an MLP with N hidden units does, so
the default N = 2d makes the two slot reads of a layer cost one nanoGPT MLP (4d² context +
4d² slot parameters, against nanoGPT's 12d²); N = 4d matches nanoGPT's parameters instead
and is 1.5x slower (docs/learned.md). No position embedding: the context bank is rotary (``pos="learned"``: nanoGPT's learned
absolute positions instead, an ablation).

Options (:class:`MemLMConfig`): ``mlp_bank="separate"`` gives the MLP bank its own slots,
``"none"`` drops it; ``joint=True`` reads slots and context in one softmax per head (the
"all-attention" layer of Sukhbaatar et al. 2019); ``temp="fixed"`` freezes the temperatures;
``residual`` changes what each read adds to the stream (LAuReL, PID: :mod:`assocmem.lm.residual`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from assocmem.lm import residual
from assocmem.lm.hooks import HookedLM
from assocmem.lm.residual import ResidualSettings, Stream
from assocmem.lm.rotary import Rotary
from assocmem.primitive import mem
from assocmem.settings import Problem, setting

__all__ = ["MemLMConfig", "MemLM"]


@dataclass(frozen=True)
class MemLMConfig(ResidualSettings):
    """MemLM's settings; each field is checked on construction (:mod:`assocmem.settings`).
    The ``residual`` keys come from :class:`~assocmem.lm.residual.ResidualSettings`."""

    vocab_size: int = setting(65, ge=1)  # Tiny Shakespeare's characters
    block_size: int = setting(64, ge=1)  # context length (rotary tables are built for it)
    n_layer: int = setting(4, ge=1)  # as the baseline
    n_head: int = setting(4, ge=1)  # heads of the context bank
    n_embd: int = setting(128, ge=4)  # a multiple of 4·n_head: rotary rotates half-heads in pairs
    n_slots: int = setting(
        256, ge=1
    )  # 2·d: the two slot reads cost one nanoGPT MLP (4·d matches its params, 1.5x slower)
    mlp_bank: Literal["swap", "separate", "none"] = (
        "swap"  # "swap": read the slots with K and V swapped; "separate"; "none"
    )
    joint: bool = False  # one softmax over [slots; context] instead of two reads
    temp: Literal["learned", "fixed"] = (
        "learned"  # "learned": one log-temperature per bank and layer; "fixed"
    )
    slot_std: float = setting(
        0.02, gt=0
    )  # slot init, like nanoGPT's linear layers; the temperature sets the score scale
    dropout: float = setting(0.0, ge=0, lt=1)  # 0 for small models on little data, as the baseline
    bias: bool = False  # LayerNorm without bias, as the baseline
    rope_base: float = setting(10000.0, gt=0)  # RoFormer's base (Su et al. 2021)
    # "rope": rotary context bank (the default); "learned": nanoGPT's absolute positions (ablation)
    pos: Literal["rope", "learned"] = "rope"
    # slots added per bank for a later task (lm/continual.py), held apart from the first n_slots
    n_grown: int = setting(0, ge=0)

    def relations(self):
        if self.n_embd % (4 * self.n_head):
            yield Problem(
                ("n_embd",),
                f"must be a multiple of 4·n_head = {4 * self.n_head} (got {self.n_embd}): "
                "each head's width is rotated in pairs of halves",
                f"e.g. n_embd = {4 * self.n_head * max(1, round(self.n_embd / (4 * self.n_head)))}.",
            )


class Bank(nn.Module):
    """N learned slots: keys ``K (N, d)``, values ``V (N, d)``, and the temperature of each read."""

    def __init__(self, cfg: MemLMConfig, n_reads: int):
        super().__init__()
        d, N = cfg.n_embd, cfg.n_slots
        self.K = nn.Parameter(torch.randn(N, d) * cfg.slot_std)  # (N, d)
        self.V = nn.Parameter(torch.randn(N, d) * cfg.slot_std)  # (N, d)
        self.K_new = self.V_new = None  # grown slots: separate, so the first N can stay frozen
        if cfg.n_grown:
            self.K_new = nn.Parameter(torch.randn(cfg.n_grown, d) * cfg.slot_std)  # (G, d)
            self.V_new = nn.Parameter(torch.randn(cfg.n_grown, d) * cfg.slot_std)  # (G, d)
        # Scores q·K with |q| ≈ sqrt(d) and K ~ N(0, std²) have spread std·sqrt(d): a
        # temperature of that size starts every read at unit-variance scores.
        t0 = math.log(cfg.slot_std * math.sqrt(d))
        log_t = torch.full((n_reads, 1, 1), t0)  # (reads, 1, 1): (1, 1) = one temp for all queries
        if cfg.temp == "learned":
            self.log_temp = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temp", log_t)

    def temp(self, i: int) -> torch.Tensor:
        return self.log_temp[i].exp()  # (1, 1)

    def keys(self) -> torch.Tensor:
        """Every slot's key, the grown ones last: ``(N + G, d)``."""
        return self.K if self.K_new is None else torch.cat([self.K, self.K_new])  # (N+G, d)

    def values(self) -> torch.Tensor:
        """Every slot's value, the grown ones last: ``(N + G, d)``."""
        return self.V if self.V_new is None else torch.cat([self.V, self.V_new])  # (N+G, d)


class ContextBank(nn.Module):
    """Multi-head causal read of the earlier tokens (projected, rotary); optionally joint with slots."""

    def __init__(self, cfg: MemLMConfig):
        super().__init__()
        d, h = cfg.n_embd, cfg.n_head
        assert d % h == 0 and (d // h) % 4 == 0, (
            "head width must be a multiple of 4 (rotary halves)"
        )
        self.h, self.hd, self.joint = h, d // h, cfg.joint
        self.c_attn = nn.Linear(d, 3 * d, bias=cfg.bias)
        self.c_proj = nn.Linear(d, d, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)
        self.attn_dropout = cfg.dropout  # on the read weights, in training only
        # joint: rotary on the first half of each head only, and slot keys live in the
        # second half, so slot scores do not depend on the query's position.
        rot = self.hd // 2 if cfg.joint else self.hd
        self.rope = Rotary(cfg.block_size, rot, cfg.rope_base) if cfg.pos == "rope" else None

    def forward(self, q_in: torch.Tensor, bank: Bank | None = None) -> torch.Tensor:
        B, T, C = q_in.shape
        h, hd = self.h, self.hd
        p = self.attn_dropout if self.training else 0.0  # on the read weights, as nanoGPT
        if bank is None and self.rope is not None:
            # Fast path: rotary on q and k at once, in the projection's layout (Rotary.qkv,
            # the rotary GPT's code); SDPA reads the strided (B, h, T, hd) views without copies.
            q, k, v = self.rope.qkv(self.c_attn(q_in), h)  # 3 x (B, h, T, hd)
            y = mem(q, k, v, math.sqrt(hd), causal=True, dropout=p)  # (B, h, T, hd)
            y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
            return self.drop(self.c_proj(y))  # (B, T, C)
        q, k, v = self.c_attn(q_in).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, h, hd).transpose(1, 2) for t in (q, k, v))  # (B, h, T, hd)
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)  # (B, h, T, hd): first `rot` features rotated
        if bank is None:  # learned positions: a plain causal read
            y = mem(q, k, v, math.sqrt(hd), causal=True, dropout=p)  # (B, h, T, hd)
            y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
            return self.drop(self.c_proj(y))  # (B, T, C)
        Ks, Vs = joint_slots(bank, h)  # (h, N, hd), (h, N, hd)
        N = Ks.shape[1]
        Ks = Ks.expand(B, -1, -1, -1) / (
            bank.temp(0) / math.sqrt(hd)
        )  # (B, h, N, hd): slot temperature
        keys = torch.cat([Ks, k], dim=2)  # (B, h, N+T, hd)
        vals = torch.cat([Vs.expand(B, -1, -1, -1), v], dim=2)  # (B, h, N+T, hd)
        mask = torch.ones(
            T, N + T, dtype=torch.bool, device=q.device
        )  # (T, N+T): slots always readable
        mask[:, N:] = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()  # context: causal
        y = mem(q, keys, vals, math.sqrt(hd), mask=mask, dropout=p)  # (B, h, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.drop(self.c_proj(y))  # (B, T, C)


def joint_slots(bank: Bank, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The slots split into ``h`` heads for a joint read: keys ``(h, N, hd)`` zero on the rotary half, values ``(h, N, hd)``."""
    K, V = bank.keys(), bank.values()  # (N, d) each
    N, d = K.shape
    hd = d // h
    Kh = K.view(N, h, hd).transpose(0, 1)  # (h, N, hd)
    Ks = torch.cat([torch.zeros_like(Kh[..., : hd // 2]), Kh[..., hd // 2 :]], dim=-1)  # (h, N, hd)
    Vs = V.view(N, h, hd).transpose(0, 1)  # (h, N, hd)
    return Ks, Vs


class Layer(nn.Module):
    def __init__(self, cfg: MemLMConfig, index: int = 0):
        super().__init__()
        d = cfg.n_embd
        self.cfg = cfg
        swap = cfg.mlp_bank == "swap"
        self.slots = Bank(cfg, n_reads=2 if swap else 1)
        self.mlp_slots = Bank(cfg, n_reads=1) if cfg.mlp_bank == "separate" else None
        self.ln_a = None if cfg.joint else nn.LayerNorm(d, bias=cfg.bias)
        self.ln_c = nn.LayerNorm(d, bias=cfg.bias)
        self.ctx = ContextBank(cfg)
        self.ln_m = None if cfg.mlp_bank == "none" else nn.LayerNorm(d, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)
        n = self.reads(cfg)
        self.res = residual.adds(cfg, d, index * n, n)  # None unless a LAuReL residual

    @staticmethod
    def reads(cfg: MemLMConfig) -> int:
        """How many reads (residual adds) a layer makes: slots, context, swapped slots."""
        return (1 if cfg.joint else 2) + (cfg.mlp_bank != "none")

    def _add(self, i: int, x: torch.Tensor, y: torch.Tensor, s: Stream | None) -> torch.Tensor:
        if s is None:
            return x + y  # (B, T, C): the plain residual, the fast path
        return s.add(None if self.res is None else self.res[i], x, y)  # (B, T, C)

    def forward(self, x: torch.Tensor, s: Stream | None = None) -> torch.Tensor:
        u, m = x, self.slots  # u: the layer's input, PID's measured state
        if self.cfg.joint:
            x = self._add(0, x, self.ctx(self.ln_c(x), bank=m), s)  # (B, T, C): [slots; context]
        else:
            y = self.drop(mem(_ln_over(self.ln_a, x, m.temp(0)), m.keys(), m.values()))  # (B, T, C)
            x = self._add(0, x, y, s)  # (B, T, C): associative bank
            x = self._add(1, x, self.ctx(self.ln_c(x)), s)  # (B, T, C): context bank
        if self.cfg.mlp_bank != "none":
            t = 1
            if self.cfg.mlp_bank == "separate":
                m, t = self.mlp_slots, 0
            K, V = (m.values(), m.keys()) if self.cfg.mlp_bank == "swap" else (m.keys(), m.values())
            y = self.drop(mem(_ln_over(self.ln_m, x, m.temp(t)), K, V))  # (B, T, C)
            x = self._add(self.reads(self.cfg) - 1, x, y, s)  # (B, T, C): slots V -> K, or own
        return x if s is None else s.control(u, x)  # (B, T, C)


def _ln_over(ln: nn.LayerNorm, x: torch.Tensor, temp: torch.Tensor) -> torch.Tensor:
    """``ln(x) / temp`` with the temperature folded into the LayerNorm's gain ``(d,)``: the
    query of ``mem(ln(x), K, V, temp)`` at the cost of a ``(d,)`` division instead of a
    ``(B, T, d)`` one (forward and backward); ``mem`` is then called with ``temp = 1``, which
    it does not divide by."""
    temp = temp.reshape(())  # a bank's temperature is (1, 1)
    w = None if ln.weight is None else ln.weight / temp  # (d,)
    b = None if ln.bias is None else ln.bias / temp  # (d,)
    return F.layer_norm(x, ln.normalized_shape, w, b, ln.eps)  # (B, T, d)


class MemLM(HookedLM):
    """``forward(idx (B, T), targets (B, T) | None) -> (logits (B, T, V), loss | None)``."""

    def __init__(self, cfg: MemLMConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)
        self.wpe = None
        if cfg.pos == "learned":  # the ablation: nanoGPT's learned absolute positions
            self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
            nn.init.normal_(self.wpe.weight, mean=0.0, std=0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Layer(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        for name, p in self.named_parameters():
            if name.endswith("c_attn.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02)
            elif name.endswith("c_proj.weight"):  # GPT-2: scale residual writes by depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.shape
        x = self.wte(idx)  # (B, T, C): no position embedding by default, the context bank is rotary
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))  # (B, T, C): learned positions
        x = self.drop(x)  # (B, T, C)
        s = residual.stream(self.config, x)  # None: the plain residual
        for layer in self.h:
            x = layer(x, s)  # (B, T, C)
        logits = self.ln_f(x) @ self.wte.weight.T  # (B, T, V): readout tied to the embeddings
        loss = (
            None
            if targets is None
            else F.cross_entropy(logits.view(B * T, -1), targets.reshape(-1))
        )
        return logits, loss
