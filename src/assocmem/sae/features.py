"""One SAE latent of a learned model, read back as text: its top activating contexts (text
spans around the strongest firings on held-out text) and its nearest tokens (the token
embeddings closest in cosine to its decoder direction)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from assocmem.errors import InputError
from assocmem.sae.lm import LMRun, activations, windows
from assocmem.sae.model import SAE

__all__ = ["Context", "FeatureView", "feature_codes", "feature_view", "feature_summary"]


@dataclass(frozen=True)
class Context:
    """A text span and the latent's activation on each of its tokens; ``at`` is the peak."""

    tokens: list[str]
    acts: list[float]
    at: int

    @property
    def peak(self) -> float:
        return self.acts[self.at]


@dataclass(frozen=True)
class FeatureView:
    feature: int
    hook: str
    density: float  # fraction of held-out tokens it fires on
    max_act: float
    contexts: list[Context]
    nearest: list[tuple[str, float]]  # (token, cosine with the decoder direction)


@torch.no_grad()
def feature_codes(run: LMRun, sae: SAE, hook: str, n_windows: int, seed: int = 1):
    """``(codes (n, T, w), token ids (n, T))`` of ``sae`` on held-out windows of ``run``."""
    win = windows(run.val_ids, run.model.config.block_size, n_windows, seed=seed)  # (n, T+1)
    x = activations(run.model, win, hook)  # (n·T, d)
    if x.shape[-1] != sae.cfg.d_in:
        raise InputError(f"the SAE reads d_in={sae.cfg.d_in}; {hook!r} has width {x.shape[-1]}")
    ids = win[:, :-1]  # (n, T)
    return sae.encode(x).reshape(*ids.shape, -1), ids  # (n, T, w), (n, T)


def feature_view(
    run: LMRun,
    sae: SAE,
    hook: str,
    feature: int,
    codes: torch.Tensor,
    ids: torch.Tensor,
    top: int = 8,
    before: int = 24,
    after: int = 4,
    lead_in: int = 16,
) -> FeatureView:
    """The ``top`` contexts where ``feature`` fires most (``before`` tokens of lead-in,
    ``after`` of follow-up, one context per window) and its ``top`` nearest tokens. Peaks are
    sought from position ``lead_in`` on (at most half the window): the first positions of a window see little context,
    and activations there are larger for many features (it would show windows' starts)."""
    if not 0 <= feature < sae.cfg.width:
        raise InputError(f"--feature must lie in 0..{sae.cfg.width - 1}; got {feature}")
    a = codes[..., feature]  # (n, T)
    skip = min(lead_in, a.shape[1] // 2)
    best, pos = a[:, skip:].max(1)  # (n,) the peak of each window past its lead-in
    pos = pos + skip
    contexts = []
    for w in best.argsort(descending=True)[:top].tolist():
        if best[w] <= 0:
            break
        p = int(pos[w])
        lo, hi = max(p - before, 0), min(p + after + 1, a.shape[1])
        toks = [run.tok.token(int(i)) for i in ids[w, lo:hi]]
        contexts.append(Context(toks, [float(v) for v in a[w, lo:hi]], p - lo))
    E = run.model.wte.weight.detach()  # (V, d)
    cos = F.normalize(E, dim=-1) @ F.normalize(sae.W_dec[feature].detach(), dim=0)  # (V,)
    near = cos.topk(min(top, len(cos)))
    nearest = [
        (run.tok.token(int(i)), float(c)) for c, i in zip(near.values, near.indices, strict=True)
    ]
    return FeatureView(
        feature, hook, float((a > 0).float().mean()), float(a.max()), contexts, nearest
    )


def feature_summary(codes: torch.Tensor, top: int = 20) -> list[tuple[int, float, float]]:
    """``[(feature, density, max activation)]`` of the ``top`` most frequently firing latents."""
    flat = codes.reshape(-1, codes.shape[-1])  # (N, w)
    density = (flat > 0).float().mean(0)  # (w,)
    peak = flat.max(0).values  # (w,)
    order = density.argsort(descending=True)[:top]
    return [(int(i), float(density[i]), float(peak[i])) for i in order]
