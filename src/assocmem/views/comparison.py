"""The bilateral filter's comparison figure: input, reference, ours, and their difference.

Drawn on the Agg canvas without pyplot (the caller's matplotlib backend is left alone);
:mod:`assocmem.filters` itself draws nothing and never imports matplotlib.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from assocmem.errors import write_atomic

__all__ = ["comparison_figure"]


def comparison_figure(
    image: np.ndarray,
    reference: np.ndarray,
    ours: np.ndarray,
    path: str | os.PathLike,
    *,
    names: tuple[str, str, str] = ("input", "reference", "ours"),
    title: str = "",
) -> None:
    """Write a 4-panel PNG: input, reference, ours, and |reference - ours| with a colourbar.

    Images are ``(H, W)`` or ``(H, W, C)``, uint8 or float in [0, 1]. The difference is
    the largest channel difference per pixel, on the images' own scale. Written
    atomically (:func:`assocmem.errors.write_atomic`); drawn without pyplot, so the
    caller's matplotlib backend is left alone.
    """

    def show(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else np.clip(a, 0, 1)

    diff = np.abs(reference.astype(np.float64) - ours.astype(np.float64))  # (H, W[, C])
    if diff.ndim == 3:
        diff = diff.max(axis=-1)  # (H, W)
    fig = Figure(figsize=(16, 4.4), layout="constrained")
    axes = fig.subplots(1, 4)
    for ax, a, name in zip(axes[:3], (image, reference, ours), names, strict=True):
        ax.imshow(show(a), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name)
    im = axes[3].imshow(diff, cmap="magma")
    axes[3].set_title(f"|{names[1]} - {names[2]}| (max {diff.max():.3g})")
    fig.colorbar(im, ax=axes[3], shrink=0.8)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_atomic(Path(path), buf.getvalue())
