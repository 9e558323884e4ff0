"""Scores of a sparse autoencoder: against known features, on its inputs, inside its model,
and against another model's autoencoder.

- :func:`mmcs`: mean max cosine similarity (Sharkey et al. 2022): for each true feature, the
  cosine of the closest learned direction, averaged.
- :func:`mcc`: one-to-one (Hungarian) matched mean ``|cos|``, as ``sae_lens.synthetic``'s
  ``mean_correlation_coefficient`` (O'Neill et al., arXiv 2411.13117).
- :func:`explained_variance`, :func:`l0`, :func:`dead_fraction`, :func:`loss_recovered`.
- :func:`pair_by_correlation`, :func:`svcca`: the cross-model comparison of arXiv 2410.06981.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "cosines",
    "mmcs",
    "mcc",
    "explained_variance",
    "l0",
    "dead_fraction",
    "loss_recovered",
    "pair_by_correlation",
    "svcca",
]


def cosines(learned: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Cosine of every learned direction ``(w, d)`` with every true one ``(n, d)``: ``(w, n)``."""
    a, b = learned.detach().double(), true.detach().double()
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T  # (w, n)


def mmcs(learned: torch.Tensor, true: torch.Tensor) -> float:
    """Mean over the true features of the best cosine any learned direction reaches (signed:
    an SAE's codes are non-negative, so a flipped direction is not the feature)."""
    return float(cosines(learned, true).max(0).values.mean())


def _assignment(score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and columns of the one-to-one matching of largest total ``score (a, b)``:
    scipy's Hungarian solver, or a greedy matching (a lower bound) without scipy."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # pragma: no cover - scipy comes with scikit-image
        s = score.clone()
        rows, cols = [], []
        for _ in range(min(s.shape)):
            r, c = divmod(int(s.argmax()), s.shape[1])
            rows.append(r)
            cols.append(c)
            s[r, :], s[:, c] = -float("inf"), -float("inf")
        return torch.tensor(rows), torch.tensor(cols)
    r, c = linear_sum_assignment(score.numpy(), maximize=True)
    return torch.as_tensor(r), torch.as_tensor(c)


def mcc(learned: torch.Tensor, true: torch.Tensor) -> float:
    """Mean ``|cos|`` over a one-to-one matching of learned and true directions that
    maximises it (``min(w, n)`` pairs)."""
    c = cosines(learned, true).abs()  # (w, n)
    r, k = _assignment(c)
    return float(c[r, k].mean())


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """``1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²`` over rows of ``(N, d)``."""
    x, x_hat = x.double(), x_hat.double()
    return float(1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def l0(codes: torch.Tensor) -> float:
    """Mean number of non-zero codes per input, ``codes (N, w)``."""
    return float((codes != 0).sum(-1).float().mean())


def dead_fraction(codes: torch.Tensor) -> float:
    """Fraction of latents that never fire on these inputs, ``codes (N, w)``."""
    return float((codes != 0).sum(0).eq(0).float().mean())


def loss_recovered(ce_clean: float, ce_zero: float, ce_sae: float) -> float:
    """``(CE_zero − CE_sae) / (CE_zero − CE_clean)``: 1 when the splice costs nothing, 0 when
    it is as bad as zeroing the layer."""
    return (ce_zero - ce_sae) / (ce_zero - ce_clean)


def _standardized(a: torch.Tensor) -> torch.Tensor:
    a = a.double() - a.double().mean(0)  # (N, w)
    return a / a.norm(dim=0).clamp_min(1e-12)  # (N, w): unit columns


def pair_by_correlation(
    codes_a: torch.Tensor, codes_b: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each latent of A, the latent of B whose activations over the same inputs
    correlate best (Pearson): ``(index into B (w_a,), correlation (w_a,))``.
    ``codes_a (N, w_a)``, ``codes_b (N, w_b)``; a latent that never varies correlates 0."""
    za, zb = _standardized(codes_a), _standardized(codes_b)
    corr = za.T @ zb  # (w_a, w_b)
    best, idx = corr.max(1)  # (w_a,)
    return idx, best.float()


def svcca(a: torch.Tensor, b: torch.Tensor, keep: float = 0.99) -> float:
    """Singular-vector CCA (Raghu et al. 2017) of paired rows ``a (n, d_a)``, ``b (n, d_b)``:
    each side is centred and cut to the singular directions holding ``keep`` of its variance,
    then the mean canonical correlation of the two reduced sides."""

    def reduce(m: torch.Tensor) -> torch.Tensor:
        m = m.double() - m.double().mean(0)  # (n, d)
        u, s, _ = torch.linalg.svd(m, full_matrices=False)  # (n, r), (r,)
        var = s.pow(2).cumsum(0) / s.pow(2).sum()
        r = int((var < keep).sum()) + 1
        return u[:, :r]  # (n, r): orthonormal basis of the kept subspace

    qa, qb = reduce(a), reduce(b)
    rho = torch.linalg.svdvals(qa.T @ qb)  # canonical correlations
    return float(rho.mean())
