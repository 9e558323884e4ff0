"""Rotary position code (Su et al. 2021), one implementation for every model of ``assocmem.lm``.

MemLM's context bank, the rotary GPT and the Llama-style baseline all call
:meth:`Rotary.qkv`, so a comparison between them never compares two rotary codes.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["Rotary", "rope_tables", "rotate_half"]


def rope_tables(T: int, dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each ``(T, dim)``, for rotating ``dim`` features (dim even)."""
    inv = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (dim/2,)
    ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)  # (T, dim/2)
    ang = torch.cat([ang, ang], dim=-1)  # (T, dim)
    return ang.cos(), ang.sin()


def rotate_half(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotary position code on the last dim of ``x``: ``x·cos + [-b, a]·sin`` for halves
    ``a, b``, with the sign folded into the table (``sin_signed = [-sin, sin]`` by halves), so
    the rotated copy is one ``cat`` of the swapped halves. ``cos`` and ``sin_signed``
    broadcast against ``x``."""
    a, b = x.chunk(2, dim=-1)  # 2 x (..., dim/2)
    return x * cos + torch.cat([b, a], dim=-1) * sin_signed  # (..., dim)


class Rotary(nn.Module):
    """The tables for ``block_size`` positions and ``dim`` rotated features (buffers, not saved)."""

    def __init__(self, block_size: int, dim: int, base: float = 10000.0):
        super().__init__()
        assert dim % 2 == 0, "rotary needs an even number of features"
        cos, sin = rope_tables(block_size, dim, base)
        half = dim // 2
        sin_signed = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)  # (T, dim)
        self.register_buffer("cos", cos, persistent=False)  # (T, dim)
        self.register_buffer("sin_signed", sin_signed, persistent=False)  # (T, dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate the first ``dim`` features of ``x (B, h, T, hd)`` by their position ``t``."""
        T, r = x.shape[-2], self.dim
        rot = rotate_half(x[..., :r], self.cos[:T], self.sin_signed[:T])  # (B, h, T, r)
        return rot if r == x.shape[-1] else torch.cat([rot, x[..., r:]], dim=-1)  # (B, h, T, hd)

    def qkv(
        self, qkv: torch.Tensor, n_head: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Split a projection ``(B, T, 3·C)`` into heads and rotate q and k at once, in the
        ``(B, T, 2, h, hd)`` layout of the projection (every head feature rotated); returns
        strided ``(B, h, T, hd)`` views of q, k, v that SDPA reads without copies."""
        B, T, C3 = qkv.shape
        hd = C3 // (3 * n_head)
        qk, v = qkv.view(B, T, 3, n_head, hd).split([2, 1], dim=2)  # (B,T,2,h,hd), (B,T,1,h,hd)
        cos, sin = self.cos[:T, None, None], self.sin_signed[:T, None, None]  # (T, 1, 1, hd)
        qk = rotate_half(qk, cos, sin).permute(2, 0, 3, 1, 4)  # (2, B, h, T, hd)
        return qk[0], qk[1], v.squeeze(2).transpose(1, 2)  # 3 x (B, h, T, hd)
