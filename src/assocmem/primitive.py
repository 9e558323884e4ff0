"""The one primitive: a read of an associative memory.

    mem(q, K, V, temp) = softmax(q · Kᵀ / temp) · V

(optionally ``+ bias`` inside the softmax: a score offset per query and slot, such as a
relative-position bias). This is the memory read of a Neural Turing Machine and, equally, scaled dot-product
attention. Every read in assocmem (the permanent memory, the context, the "MLP",
the learned models, the bilateral filter) goes through :func:`mem`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from assocmem.errors import AssocmemError

__all__ = ["mem", "MemError"]


class MemError(AssocmemError, ValueError):
    """Bad arguments to :func:`mem` (shapes, temperature, mask)."""


def _checked_temp(temp: float | torch.Tensor, q: torch.Tensor) -> float | torch.Tensor:
    """``temp`` validated for a read in ``q``'s dtype: finite, > 0, and ``1/temp`` finite
    there. A tensor comes back in ``q``'s dtype and device (a float64 temperature must not
    promote a float32 read). ``inf`` is refused: it would read every slot with one weight,
    ignoring the keys, which is far more often an overflow upstream than a wish."""
    hint = "Hint: a small temp (0.05) makes a sharp read, a large one (2.0) a soft one."
    flat = (
        "temp must be finite: temp = inf reads every slot with the same weight (the mean "
        "of V), ignoring the keys. For that read on purpose pass a zero query (q * 0)."
    )
    if isinstance(temp, torch.Tensor):
        t = temp.to(q.device, q.dtype)
        # one host sync when all is well; > 0 is checked on the temperature as given
        ok = (temp > 0) & torch.isfinite(temp)
        if t.numel() and not bool((ok.to(q.device) & torch.isfinite(1.0 / t)).all()):
            if not bool((temp > 0).all()):
                raise MemError(
                    f"temp must be > 0 everywhere; got a tensor with min {temp.min().item():g}. {hint}"
                )
            if not bool(torch.isfinite(temp).all()):
                raise MemError(f"{flat} Got a tensor holding inf.")
            raise MemError(
                f"temp {temp.min().item():g} is too small for {q.dtype}: 1/temp overflows"
            )
        return t
    if not temp > 0:  # also catches NaN
        raise MemError(f"temp must be > 0; got {temp!r}. {hint}")
    if temp == float("inf"):
        raise MemError(flat)
    if 1.0 / temp > torch.finfo(q.dtype).max:
        raise MemError(f"temp {temp:g} is too small for {q.dtype}: 1/temp overflows")
    return temp


def _check_shapes(q: torch.Tensor, K: torch.Tensor, V: torch.Tensor) -> None:
    if q.dim() < 1 or K.dim() < 2 or V.dim() < 2:
        raise MemError(
            f"mem expects q (..., n, d), K (..., m, d), V (..., m, dv); got q {tuple(q.shape)}, K {tuple(K.shape)}, V {tuple(V.shape)}"
        )
    if q.shape[-1] != K.shape[-1]:
        raise MemError(
            f"query and key widths differ: q {tuple(q.shape)} vs K {tuple(K.shape)} (last dims must match)"
        )
    if K.shape[-2] != V.shape[-2]:
        raise MemError(
            f"K and V hold a different number of slots: K {tuple(K.shape)} vs V {tuple(V.shape)}"
        )
    named = {"q": q, "K": K, "V": V}
    if (
        not all(t.is_floating_point() for t in named.values())
        or len({t.dtype for t in named.values()}) > 1
    ):
        got = ", ".join(f"{k} {str(t.dtype).removeprefix('torch.')}" for k, t in named.items())
        raise MemError(
            f"q, K and V must share one floating dtype; got {got}. Hint: convert them, e.g. K.to(q.dtype)"
        )
    if len({t.device for t in named.values()}) > 1:
        got = ", ".join(f"{k} on {t.device}" for k, t in named.items())
        raise MemError(f"q, K and V must be on one device; got {got}")


def _broadcast(*shapes: tuple[int, ...]) -> torch.Size:
    """NumPy broadcasting of shapes. (``torch.broadcast_shapes`` imports sympy on first
    use: half a second of every cold start.)"""
    out: list[int] = []
    for dims in zip(
        *(((1,) * (max(map(len, shapes)) - len(s)) + tuple(s)) for s in shapes), strict=True
    ):
        big = set(dims) - {1}
        if len(big) > 1:
            raise MemError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
        out.append(big.pop() if big else 1)
    return torch.Size(out)


def _to4d(t: torch.Tensor, lead: torch.Size) -> torch.Tensor:
    """``(*lead, a, b) -> (B, H, a, b)``, a view where possible: SDPA's fused CPU kernel
    (2-3x faster than its math fallback) runs only on 4-D inputs."""
    t = t.expand(*lead, *t.shape[-2:])
    if len(lead) == 0:
        return t[None, None]
    if len(lead) == 1:
        return t[:, None]
    if len(lead) == 2:
        return t
    return t.reshape(-1, lead[-1], *t.shape[-2:])


def _mask4d(mask: torch.Tensor, lead: torch.Size) -> torch.Tensor:
    """The mask or bias for the 4-D SDPA call, laid out as :func:`_to4d` lays out ``q``
    (leading dims into ``(B, H)`` the same way) but kept broadcastable where it can be:
    SDPA turns a boolean mask into a float one of the mask's own size, so an expanded mask
    costs a full (B, H, n, m) pass (a quarter of the tiled bilateral filter's time)."""
    k = len(lead)
    m = mask.reshape((1,) * (k + 2 - mask.dim()) + tuple(mask.shape))  # (*lead', n, m)
    if k <= 2:  # as _to4d: () -> (1, 1), (B,) -> (B, 1), (B, H) -> (B, H)
        return m.reshape(*m.shape[:k], *(1,) * (2 - k), *m.shape[-2:])  # (B'|1, H'|1, n, m)
    if all(d == 1 for d in m.shape[: k - 1]):  # only the last lead dim varies: the head dim
        return m.reshape(1, m.shape[k - 1], *m.shape[-2:])  # (1, H' | 1, n, m)
    return _to4d(mask, lead)


# Widest read CUDA's flash kernel takes; past it SDPA falls back to its memory-efficient
# kernel, whose backward is slow for wide reads over few slots.
FLASH_MAX_WIDTH = 256
# Longest plain (unmasked) memory that a differentiated read on the CPU takes through two
# GEMMs and a softmax rather than SDPA's fused kernel (measured faster at MemLM's 256).
CPU_EXPLICIT_MAX_SLOTS = 256


def _slow_fused_backward(q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, *, plain: bool) -> bool:
    """True for a plain float32/float64 read that autograd will differentiate where the
    explicit path (two GEMMs and a softmax, and their backward) is faster than SDPA's fused
    kernels. ``plain``: the read has no mask, bias or causal order. Measured with
    ``python bench/gpu_slots_profile.py`` (forward and backward of MemLM's slot read) and
    ``bench/lm_vs_gpt.py``'s speed rounds:

    * CUDA, plain reads wider than 256: 16,384 queries of width 384 against 256 slots,
      14.5 ms through SDPA's memory-efficient kernel, 0.8 ms explicit on an H200; it was
      88 % of MemLM's training step.
    * CPU, plain reads of at most 256 slots: 768 queries of width 128 against 256 slots,
      explicit 5.0-5.6 ms against SDPA's 5.5-6.0 ms (runs on this project's 2-core VM), and
      MemLM trains at 0.90x GPT's speed instead of 0.85x. The cut at 256 is MemLM's slot
      count, not a measured crossover (``--slots`` times others): past it the explicit
      path keeps every weight in memory, which SDPA's fused kernel never does.
    """
    if not (torch.is_grad_enabled() and (q.requires_grad or K.requires_grad or V.requires_grad)):
        return False
    # Only plain float32/float64 reads: a masked or causal one would materialise every
    # weight, and in float16/bfloat16 the explicit scores lose what SDPA's float32
    # accumulation keeps (the choice must never change a read beyond rounding).
    if not plain or q.dtype not in (torch.float32, torch.float64):
        return False
    if q.is_cuda:
        return max(q.shape[-1], V.shape[-1]) > FLASH_MAX_WIDTH
    return q.device.type == "cpu" and K.shape[-2] <= CPU_EXPLICIT_MAX_SLOTS


def _check_fits(name: str, t: torch.Tensor, scores: tuple[int, ...]) -> None:
    try:
        fits = _broadcast(t.shape, scores) == scores
    except MemError:
        fits = False
    if not fits:  # a mask or bias may not add dimensions to the read either
        raise MemError(
            f"{name} of shape {tuple(t.shape)} does not broadcast to the scores {scores} "
            "(it may not add dimensions to them either)"
        )


def _check_options(topk: int | None, dropout: float) -> None:
    if topk is not None and (isinstance(topk, bool) or not isinstance(topk, int) or topk < 1):
        raise MemError(f"topk must be an integer >= 1 (or None: every slot); got {topk!r}")
    if not 0.0 <= dropout < 1.0:  # also catches NaN
        raise MemError(f"dropout must be in [0, 1); got {dropout!r}")


def _checked_mask(mask: torch.Tensor | None, scores: tuple[int, ...]) -> torch.Tensor | None:
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise MemError(f"mask must be boolean (True = may read); got dtype {mask.dtype}")
    _check_fits("mask", mask, scores)
    return mask


def _checked_bias(
    bias: torch.Tensor | None, q: torch.Tensor, scores: tuple[int, ...]
) -> torch.Tensor | None:
    """``bias`` in ``q``'s dtype and device, refused when it holds NaN or ``+inf`` there. A
    value below the dtype's range becomes ``-inf`` (may not read), as with the usual -1e9
    masking idiom."""
    if bias is None:
        return None
    if not bias.is_floating_point():
        raise MemError(f"bias must be a float tensor (-inf = may not read); got dtype {bias.dtype}")
    _check_fits("bias", bias, scores)
    given, bias = bias, bias.to(q.device, q.dtype)  # checked as the read will see it
    if bool((torch.isnan(bias) | (bias == float("inf"))).any()):
        if bool(((bias == float("inf")) & torch.isfinite(given).to(q.device)).any()):
            raise MemError(
                f"bias has values that overflow {q.dtype} (largest "
                f"{given[torch.isfinite(given)].max().item():g}); scale it down or read "
                "in a wider dtype"
            )
        raise MemError(
            "bias holds NaN or +inf; use -inf (or a False mask) for slots a query may not read"
        )
    return bias


@dataclass(frozen=True)
class _Read:
    """The checked arguments of one read: ``q`` as ``(..., n, d)``; ``lead`` the broadcast
    leading dims of q, K, V and a temperature tensor; ``mask`` and ``bias`` broadcastable
    to the scores ``(*lead, n, m)``; ``alive`` ``(..., n, 1)`` where some row has nothing to
    read (None when every row can read)."""

    q: torch.Tensor
    K: torch.Tensor
    V: torch.Tensor
    temp: float | torch.Tensor
    mask: torch.Tensor | None
    bias: torch.Tensor | None
    causal: bool
    topk: int | None
    dropout: float
    lead: torch.Size
    single: bool
    alive: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.q.shape[-2]

    @property
    def m(self) -> int:
        return self.K.shape[-2]

    @property
    def per_query_temp(self) -> bool:
        """A float, 0-d or ``(..., n, 1)`` temperature: it folds into the query."""
        t = self.temp
        return not isinstance(t, torch.Tensor) or t.dim() == 0 or t.shape[-1] == 1


def _checked(q, K, V, temp, mask, bias, causal, topk, dropout) -> _Read:
    """Every argument of :func:`mem` checked (MemError naming the offender) before any path
    is chosen; ``q`` of a single query becomes ``(1, d)``."""
    _check_shapes(q, K, V)
    temp = _checked_temp(temp, q)
    _check_options(topk, dropout)
    single = q.dim() == 1
    if single:
        q = q.unsqueeze(0)  # (1, d)
    lead = _broadcast(q.shape[:-2], K.shape[:-2], V.shape[:-2])
    if isinstance(temp, torch.Tensor) and temp.dim() > 2:  # e.g. one temperature per head
        lead = _broadcast(lead, temp.shape[:-2])  # both paths read over temp's dims too
    scores = (*lead, q.shape[-2], K.shape[-2])
    if isinstance(temp, torch.Tensor):
        _check_fits("temp", temp, scores)
    mask = _checked_mask(mask, scores)
    bias = _checked_bias(bias, q, scores)
    return _Read(q, K, V, temp, mask, bias, bool(causal), topk, dropout, lead, single)


def _fused(r: _Read, return_weights: bool) -> bool:
    """The fused path (SDPA) unless weights, top-k or a temperature per score are asked
    for, or the explicit path is the faster one (see :func:`_slow_fused_backward`)."""
    plain = r.mask is None and r.bias is None and not r.causal
    return (
        not return_weights
        and r.topk is None
        and r.per_query_temp
        and not _slow_fused_backward(r.q, r.K, r.V, plain=plain)
    )


def _with_causal_mask(r: _Read) -> _Read:
    """The causal order as a triangle in the mask (``j <= i``), for the reads that do not
    take SDPA's own causal kernel."""
    tri = torch.ones(r.n, r.m, dtype=torch.bool, device=r.q.device).tril()  # (n, m)
    return replace(r, mask=tri if r.mask is None else r.mask & tri, causal=False)


def _with_dead_rows_revived(r: _Read) -> _Read:
    """Rows where nothing is readable are read over all slots (no -inf row, so no NaN in
    values or gradients); ``alive`` records them, and the readers zero them afterwards."""
    if r.mask is None and r.bias is None:
        return r
    readable = r.mask  # (..., n, m) broadcastable
    if r.bias is not None:
        finite = r.bias > float("-inf")
        readable = finite if r.mask is None else r.mask & finite
    alive = readable.any(dim=-1, keepdim=True)  # (..., n, 1)
    if bool(alive.all()):
        return r
    return replace(
        r,
        mask=None if r.mask is None else r.mask | ~alive,
        bias=None if r.bias is None else r.bias.masked_fill(~alive, 0.0),
        alive=alive,
    )


def _empty_read(r: _Read) -> tuple[torch.Tensor, torch.Tensor]:
    """Nothing to read (m = 0): a zero read and empty weights."""
    out = r.q.new_zeros((*r.lead, r.n, r.V.shape[-1]))  # (..., n, dv)
    w = r.q.new_zeros((*r.lead, r.n, 0))  # (..., n, 0)
    return out, w


def _sdpa_read(r: _Read) -> torch.Tensor:
    """The read through fused SDPA; a per-query temperature is folded into the query, and
    ``r.causal`` (set only without a mask or bias) takes SDPA's own causal kernel."""
    n, dv = r.n, r.V.shape[-1]
    if isinstance(r.temp, torch.Tensor):
        qs, scale = r.q / r.temp, 1.0  # (..., n, d)
    else:
        qs, scale = r.q, 1.0 / float(r.temp)
    sb = r.bias  # what SDPA adds to the scaled scores: the bias, -inf where masked
    if r.mask is not None:
        sb = r.mask if r.bias is None else r.bias.masked_fill(~r.mask, float("-inf"))
    mb = None if sb is None else _mask4d(sb, r.lead)  # broadcastable to (B, H, n, m)
    if r.K.dim() == r.V.dim() == 2 and mb is None and not r.causal and qs.shape[:-2] == r.lead:
        # one memory shared by every query (learned slots): read all queries as one
        # sequence instead of expanding the memory over q's leading dims (SDPA on the
        # CPU is ~2x slower on stride-0 keys)
        qs, lead4 = qs.reshape(1, 1, -1, qs.shape[-1]), torch.Size((1, 1))  # (1, 1, N·n, d)
    else:
        qs, lead4 = _to4d(qs, r.lead), r.lead
    out = F.scaled_dot_product_attention(
        qs,
        _to4d(r.K, lead4),
        _to4d(r.V, lead4),
        attn_mask=mb,
        is_causal=r.causal,
        dropout_p=r.dropout,
        scale=scale,
    )  # (B, H, n, dv)
    out = out.reshape(*r.lead, n, dv)  # (..., n, dv)
    return out if r.alive is None else out * r.alive


def _explicit_read(r: _Read) -> tuple[torch.Tensor, torch.Tensor]:
    """The read with its weights materialised: two GEMMs and a softmax."""
    q, Kt, temp = r.q, r.K.transpose(-2, -1), r.temp
    if not isinstance(temp, torch.Tensor) and temp == 1.0:
        scores = q @ Kt  # (..., n, m): callers may fold temp into q upstream
    elif r.per_query_temp:
        scores = (q / temp) @ Kt  # (..., n, m): n·d divisions, not n·m
    else:
        scores = (q @ Kt) / temp  # (..., n, m): a temperature per score
    if r.bias is not None:
        scores = scores + r.bias
    if r.mask is not None:
        scores = scores.masked_fill(~r.mask, float("-inf"))
    if r.topk is not None and r.topk < r.m:
        kth = scores.topk(r.topk, dim=-1).values[..., -1:]  # (..., n, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    w = torch.softmax(scores, dim=-1)  # (..., n, m)
    if r.alive is not None:
        w = w * r.alive
    if r.dropout:
        w = F.dropout(w, r.dropout)  # (..., n, m) zeroed and rescaled
    return w @ r.V, w  # (..., n, dv), (..., n, m)


def mem(
    q: torch.Tensor,
    K: torch.Tensor,
    V: torch.Tensor,
    temp: float | torch.Tensor = 1.0,
    *,
    mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    causal: bool = False,
    topk: int | None = None,
    dropout: float = 0.0,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Read values ``V`` from keys ``K`` with queries ``q``: ``softmax(q·Kᵀ/temp + bias)·V``.

    Args:
        q: queries, shape ``(..., n, d)``; a single query ``(d,)`` is also accepted.
        K: keys, shape ``(..., m, d)``.
        V: values, shape ``(..., m, dv)``.
        temp: softmax temperature, finite and > 0: a float, or a tensor broadcastable to
            the scores ``(..., n, m)``; ``(..., n, 1)`` gives one temperature per query.
            ``inf`` is refused (it would weigh every slot alike; pass ``q * 0`` for that).
        mask: boolean, broadcastable to ``(..., n, m)``; True = the query may read that slot.
        bias: float, broadcastable to ``(..., n, m)``: added to the scores after the
            temperature (a relative-position bias, the bilateral filter's spatial term);
            ``-inf`` = may not read, like False in ``mask`` (so are values below the read
            dtype's range, as with the -1e9 idiom). NaN and ``+inf`` are refused.
        causal: query ``i`` may read only slots ``j <= i`` (combined with ``mask``).
        topk: keep only the ``topk`` highest-scoring readable slots of each query.
        dropout: probability of zeroing each read weight (the rest are scaled by
            ``1/(1-dropout)``), as attention dropout; pass 0 outside training, like
            ``scaled_dot_product_attention``'s ``dropout_p``. With ``return_weights`` the
            weights returned are the ones used, after dropout.
        return_weights: also return the read weights ``(..., n, m)``.

    Returns:
        The read, shape ``(..., n, dv)`` (``(dv,)`` for a single query), and with
        ``return_weights`` the weights too. A query with no readable slot (an empty
        memory, a fully masked row) reads a zero vector with zero weights, never NaN.

    Without ``return_weights``, ``topk`` or a temperature per score the read runs on
    :func:`torch.nn.functional.scaled_dot_product_attention` (its fused kernels);
    otherwise, and for the differentiated plain float32/float64 reads where that is faster
    (CUDA reads wider than 256; memories of at most 256 slots on the CPU: see
    ``_slow_fused_backward``), on an explicit path that materialises the weights. Both agree to
    rounding (float64: 1e-10, float32: 1e-5).
    """
    r = _checked(q, K, V, temp, mask, bias, causal, topk, dropout)
    if r.m == 0:
        out, w = _empty_read(r)
    else:
        fused = _fused(r, return_weights)
        if r.causal and not (fused and r.mask is None and r.bias is None):
            r = _with_causal_mask(r)  # else SDPA's own causal kernel
        r = _with_dead_rows_revived(r)
        out, w = (_sdpa_read(r), None) if fused else _explicit_read(r)
    if r.single:
        out, w = out[..., 0, :], (None if w is None else w[..., 0, :])
    return (out, w) if return_weights else out
