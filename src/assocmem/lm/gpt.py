"""The baselines: nanoGPT's model (Karpathy, ``model.py``), with its attention read done by
:func:`assocmem.mem` (the same fused SDPA kernel nanoGPT calls, so nothing is lost).

Faithful to nanoGPT: learned absolute positions, pre-LayerNorm (no bias), causal
self-attention, a 4x GELU MLP, tied input/output embeddings, N(0, 0.02) init with the
residual projections scaled by 1/sqrt(2L), dropout on the attention weights (``mem``'s
``dropout``, as nanoGPT's ``dropout_p``), the residual branches and the embeddings.

Options for the stronger baselines (:class:`GPTConfig`): ``pos="rope"`` replaces the learned
positions with the rotary code MemLM's context bank uses (:mod:`assocmem.lm.rotary`, the
same function); ``norm="rms"`` RMSNorm instead of LayerNorm; ``mlp="swiglu"`` a SwiGLU MLP of
width ``int(8·d/3)`` (the 4x GELU MLP's parameters, rounded down). All three together are the
Llama recipe at nanoGPT's parameter budget.
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

__all__ = ["GPTConfig", "GPT"]


@dataclass(frozen=True)
class GPTConfig(ResidualSettings):
    """nanoGPT's settings; each field is checked on construction (:mod:`assocmem.settings`).
    ``pos``, ``norm``, ``mlp`` default to nanoGPT's choices; ``("rope", "rms", "swiglu")`` is
    the Llama-style baseline. The ``residual`` keys (LAuReL, PID on both sublayers) come from
    :class:`~assocmem.lm.residual.ResidualSettings`."""

    vocab_size: int = setting(65, ge=1)  # Tiny Shakespeare's characters
    block_size: int = setting(64, ge=1)  # context length
    n_layer: int = setting(4, ge=1)  # nanoGPT's CPU setting (with n_head 4, n_embd 128)
    n_head: int = setting(4, ge=1)
    n_embd: int = setting(128, ge=1)  # a multiple of n_head: the heads split it evenly
    dropout: float = setting(
        0.0, ge=0, lt=1
    )  # 0 for small models on little data (nanoGPT's CPU setting)
    bias: bool = False  # nanoGPT's default: a little better and faster
    pos: Literal["learned", "rope"] = "learned"  # learned absolute positions (nanoGPT) or rotary
    norm: Literal["layer", "rms"] = "layer"  # LayerNorm (nanoGPT) or RMSNorm (Llama)
    mlp: Literal["gelu", "swiglu"] = "gelu"  # 4x GELU MLP (nanoGPT) or SwiGLU (Llama)
    rope_base: float = setting(10000.0, gt=0)  # rotary only: MemLM's (RoFormer's) base

    def relations(self):
        if self.n_embd % self.n_head:
            yield Problem(
                ("n_embd",),
                f"must be a multiple of n_head = {self.n_head} (got {self.n_embd}): the heads split it evenly",
                f"e.g. n_embd = {self.n_head * max(1, round(self.n_embd / self.n_head))}.",
            )
        elif self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            yield Problem(
                ("n_embd",),
                f"with pos = 'rope' each head's width must be even (got {self.n_embd // self.n_head})",
                f"e.g. n_embd = {2 * self.n_head * max(1, round(self.n_embd / (2 * self.n_head)))}.",
            )


def _norm(cfg: GPTConfig) -> nn.Module:
    if cfg.norm == "rms":
        return nn.RMSNorm(cfg.n_embd, eps=1e-5)
    return nn.LayerNorm(cfg.n_embd, bias=cfg.bias)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.attn_dropout = cfg.dropout  # on the read weights, in training only
        self.n_head = cfg.n_head
        hd = cfg.n_embd // cfg.n_head
        self.rope = Rotary(cfg.block_size, hd, cfg.rope_base) if cfg.pos == "rope" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        if self.rope is not None:
            q, k, v = self.rope.qkv(self.c_attn(x), self.n_head)  # 3 x (B, h, T, hd), rotary
        else:
            q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
            q, k, v = (
                t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v)
            )  # (B, h, T, hd)
        p = self.attn_dropout if self.training else 0.0
        y = mem(q, k, v, math.sqrt(C // self.n_head), causal=True, dropout=p)  # (B, h, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))  # (B, T, C)


class SwiGLU(nn.Module):
    """Llama's MLP: ``W2 (silu(W1 x) * W3 x)``, hidden width ``int(8d/3)`` (W1, W3 fused)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.hidden = 8 * cfg.n_embd // 3
        self.c_fc = nn.Linear(cfg.n_embd, 2 * self.hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(self.hidden, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_fc(x).split(self.hidden, dim=-1)  # 2 x (B, T, H)
        return self.dropout(self.c_proj(F.silu(gate) * up))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, index: int = 0):
        super().__init__()
        self.ln_1 = _norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = _norm(cfg)
        self.mlp = SwiGLU(cfg) if cfg.mlp == "swiglu" else MLP(cfg)
        self.res = residual.adds(cfg, cfg.n_embd, 2 * index, 2)  # None unless a LAuReL residual

    def forward(self, x: torch.Tensor, s: Stream | None = None) -> torch.Tensor:
        if s is None:  # the plain residual, the fast path
            x = x + self.attn(self.ln_1(x))  # (B, T, C)
            return x + self.mlp(self.ln_2(x))  # (B, T, C)
        res = self.res or (None, None)
        u = x  # the block's input, PID's measured state
        x = s.add(res[0], x, self.attn(self.ln_1(x)))  # (B, T, C)
        x = s.add(res[1], x, self.mlp(self.ln_2(x)))  # (B, T, C)
        return s.control(u, x)  # (B, T, C)


class GPT(HookedLM):
    """nanoGPT (and its rotary / Llama-style variants, see :class:`GPTConfig`).
    ``forward(idx (B, T), targets (B, T) | None) -> (logits (B, T, V), loss | None)``."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = _norm(cfg)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale residual writes by depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T = idx.shape
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))  # (B, T, C): learned positions
        x = self.drop(x)  # (B, T, C)
        s = residual.stream(self.config, x)  # None: the plain residual
        for block in self.h:
            x = block(x, s)  # (B, T, C)
        logits = self.ln_f(x) @ self.wte.weight.T  # (B, T, V): readout tied to the embeddings
        loss = (
            None
            if targets is None
            else F.cross_entropy(logits.view(B * T, -1), targets.reshape(-1))
        )
        return logits, loss
