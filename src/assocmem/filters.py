"""Image filters written as memory reads: the bilateral filter is attention.

Every output pixel is one read ``mem(q, K, V, temp)`` where the query is the pixel,
the keys and values are the pixels of its window, and the scores are log-weights.

The bilateral filter weighs pixel ``j`` of the window of pixel ``i`` by

    w_ij = exp(-‖c_i - c_j‖² / 2σ_c²  -  ‖p_i - p_j‖² / 2σ_s²)

(``c`` colours, ``p`` positions). Expanding the colour term,

    -‖c_i - c_j‖² / 2σ_c² = c_i·c_j / σ_c²  -  ‖c_j‖² / 2σ_c²  -  ‖c_i‖² / 2σ_c²,

the last term is the same for every key of a query and cancels in the softmax. What
is left is a dot product plus a bias that depends on the key alone; for keys
gathered from a window the spatial term ``‖p_i - p_j‖²`` is a constant per window
offset, so it joins the bias. Carry the bias as one more key coordinate and put a
1 in the query:

    q_i = [c_i, 1],   k_j = [c_j, -‖c_j‖²/2 - σ_c² ‖p_i - p_j‖² / 2σ_s²],   temp = σ_c²

and ``softmax(q_i·k_j / temp)`` is exactly the normalised bilateral weight, so the
unchanged :func:`assocmem.mem` computes the filter. The dot-product filter
(:func:`dot_product_filter`) is the same read with ``q = c_i, k = c_j``: attention's
kernel, which is not symmetric (``c_i·c_j`` favours bright keys, not near ones).

Images are numpy arrays or torch tensors: ``(H, W)`` grey, ``(H, W, C)`` colour,
``(B, H, W, C)`` a batch. ``uint8`` in gives ``uint8`` out (rounded half to even,
like OpenCV's ``saturate_cast``) and ``sigma_color`` is then on the 0..255 scale;
float in gives the same float dtype out, ``sigma_color`` on the image's own scale.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from assocmem.errors import InputError
from assocmem.primitive import mem

__all__ = ["bilateral", "dot_product_filter", "window_offsets", "comparison_figure"]

Image = np.ndarray | torch.Tensor
Window = Literal["circle", "square"]
Border = Literal["reflect101", "constant", "edge", "symmetric"]

# Bytes of keys one chunk of rows may hold: bounds memory, and small enough to stay in cache.
CHUNK_BYTES = 8 * 2**20


def window_offsets(radius: int, window: Window = "circle") -> list[tuple[int, int]]:
    """The ``(dy, dx)`` offsets of a window of ``radius``: the full square, or the
    disc ``dy² + dx² <= radius²`` (OpenCV's ``bilateralFilter`` window)."""
    span = range(-radius, radius + 1)
    offs = [(dy, dx) for dy in span for dx in span]
    if window == "circle":
        offs = [(dy, dx) for dy, dx in offs if dy * dy + dx * dx <= radius * radius]
    elif window != "square":
        raise InputError(f"window must be 'circle' or 'square'; got {window!r}")
    return offs


def _pad(x: torch.Tensor, r: int, border: Border, cval: float) -> torch.Tensor:
    """Pad (B, C, H, W) by r on each side the way the reference libraries do."""
    if r == 0:
        return x
    if border == "constant":  # skimage's default, numpy.pad mode='constant'
        return F.pad(x, (r, r, r, r), mode="constant", value=cval)
    if border == "edge":  # numpy 'edge', OpenCV BORDER_REPLICATE
        return F.pad(x, (r, r, r, r), mode="replicate")
    if border == "reflect101":  # OpenCV's default BORDER_REFLECT_101 = numpy 'reflect'
        if r >= min(x.shape[-2:]):
            # torch's reflect needs r < size; reflect index by index instead
            return _pad_index(x, r, lambda i, n: _reflect101(i, n))
        return F.pad(x, (r, r, r, r), mode="reflect")
    if border == "symmetric":  # OpenCV BORDER_REFLECT = numpy 'symmetric'
        return _pad_index(x, r, lambda i, n: _reflect101(i, n, edge_twice=True))
    raise InputError(f"border must be one of reflect101, constant, edge, symmetric; got {border!r}")


def _reflect101(i: np.ndarray, n: int, edge_twice: bool = False) -> np.ndarray:
    """Fold integer coordinates into 0..n-1 by mirror reflection (any distance)."""
    if n == 1:
        return np.zeros_like(i)
    if edge_twice:  # symmetric: ... 1 0 | 0 1 ... period 2n
        m = np.mod(i, 2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    m = np.mod(i, 2 * n - 2)  # reflect101: ... 2 1 | 0 1 2 ... period 2n-2
    return np.where(m < n, m, 2 * n - 2 - m)


def _pad_index(x: torch.Tensor, r: int, fold) -> torch.Tensor:
    H, W = x.shape[-2:]
    rows = torch.from_numpy(fold(np.arange(-r, H + r), H)).to(x.device)  # (H+2r,)
    cols = torch.from_numpy(fold(np.arange(-r, W + r), W)).to(x.device)  # (W+2r,)
    return x[..., rows, :][..., cols]  # (B, C, H+2r, W+2r)


def _as_tensor(image: Image) -> tuple[torch.Tensor, dict]:
    """(B, C, H, W) compute tensor plus what is needed to give the result back."""
    was_numpy = isinstance(image, np.ndarray)
    if not was_numpy and not isinstance(image, torch.Tensor):
        raise InputError(
            f"image must be a numpy array or a torch tensor; got {type(image).__name__}"
        )
    t = torch.from_numpy(np.ascontiguousarray(image)) if was_numpy else image
    if t.dim() not in (2, 3, 4) or t.numel() == 0:
        raise InputError(
            f"image must be (H, W) grey, (H, W, C) colour or (B, H, W, C) batched, non-empty; got shape {tuple(t.shape)}"
        )
    if t.dtype != torch.uint8 and not t.is_floating_point():
        raise InputError(f"image dtype must be uint8 or float; got {t.dtype}")
    info = {"numpy": was_numpy, "dim": t.dim(), "dtype": t.dtype}
    x = t
    if x.dim() == 2:
        x = x[..., None]  # (H, W, 1)
    if x.dim() == 3:
        x = x[None]  # (1, H, W, C)
    work = torch.float64 if t.dtype == torch.float64 else torch.float32
    x = x.to(work).permute(0, 3, 1, 2)  # (B, C, H, W)
    return x, info


def _from_tensor(y: torch.Tensor, info: dict) -> Image:
    """(B, C, H, W) result back to the input's layout, dtype and type."""
    y = y.permute(0, 2, 3, 1)  # (B, H, W, C)
    if info["dim"] == 3:
        y = y[0]  # (H, W, C)
    elif info["dim"] == 2:
        y = y[0, ..., 0]  # (H, W)
    if info["dtype"] == torch.uint8:
        y = y.round().clamp(0, 255)  # round half to even, saturate
    y = y.to(info["dtype"]).contiguous()
    return y.numpy() if info["numpy"] else y


def _window_read(
    x: torch.Tensor,
    offsets: Sequence[tuple[int, int]],
    key_bias: torch.Tensor | None,
    temp: float,
    border: Border,
    cval: float,
    centre: float,
) -> torch.Tensor:
    """One ``mem`` read per pixel of x (B, C, H, W) over its window.

    Query ``[c_i - centre, 1]``, key ``[c_j - centre, key_bias_j - ‖c_j - centre‖²/2]``
    (the bias column only when ``key_bias``, one entry per offset, is given), value
    ``c_j - centre``. Shifting colours by a constant ``centre`` leaves ‖c_i - c_j‖
    unchanged, keeps the dot products small (less float32 cancellation) and is
    undone after the read since the weights sum to 1.
    """
    B, C, H, W = x.shape
    r = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    m = len(offsets)
    d = C + (key_bias is not None)  # key width
    xp = _pad(x, r, border, cval).permute(0, 2, 3, 1) - centre  # (B, H+2r, W+2r, C)
    if key_bias is not None:  # the colour bias of a key depends on its pixel alone
        xp = torch.cat([xp, -0.5 * xp.square().sum(-1, keepdim=True)], dim=-1)  # (B, Hp, Wp, C+1)
    xp = xp.contiguous()
    shift = x.new_zeros(m, d)  # (m, d) added to each gathered key: bias column only
    if key_bias is not None:
        shift[:, C] = key_bias  # spatial log-weight, a constant per window offset
    out = x.new_empty(B, H, W, C)  # (B, H, W, C)
    # Small chunks: the gathered keys are read back by mem while still in cache.
    rows = max(1, CHUNK_BYTES // (B * W * m * d * x.element_size()))
    for y0 in range(0, H, rows):
        h = min(rows, H - y0)
        K = x.new_empty(B, h, W, m, d)  # (B, h, W, m, d) the window of every pixel
        for j, (dy, dx) in enumerate(offsets):  # a loop over offsets, not pixels
            K[:, :, :, j] = xp[:, y0 + r + dy : y0 + r + dy + h, r + dx : r + dx + W]
        if key_bias is not None:  # one contiguous pass; a fused add-and-copy was 10x slower
            K.view(-1, m * d).add_(shift.view(-1))  # + spatial log-weight per offset
        q = xp[:, y0 + r : y0 + r + h, r : r + W, None, :]  # (B, h, W, 1, d)
        if key_bias is not None:
            q = torch.cat([q[..., :C], q.new_ones(B, h, W, 1, 1)], dim=-1)  # (B, h, W, 1, C+1)
        V = K[..., :C]  # (B, h, W, m, C) values are the key colours
        # return_weights selects mem's explicit path, which beats the SDPA CPU
        # kernel on millions of one-query reads; the weights themselves are dropped.
        read, _ = mem(q, K, V, temp, return_weights=True)  # (B, h, W, 1, C)
        out[:, y0 : y0 + h] = read[..., 0, :] + centre
    return out.permute(0, 3, 1, 2)  # (B, C, H, W)


def _check(radius: int, **sigmas: float) -> None:
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 0:
        raise InputError(
            f"radius must be an integer >= 0 (the window is 2·radius+1 pixels wide); got {radius!r}"
        )
    for name, s in sigmas.items():
        if not (isinstance(s, int | float | np.floating) and math.isfinite(s) and s > 0):
            raise InputError(f"{name} must be a finite number > 0; got {s!r}")


def bilateral(
    image: Image,
    radius: int,
    sigma_color: float,
    sigma_space: float,
    *,
    window: Window = "circle",
    border: Border = "reflect101",
    cval: float = 0.0,
) -> Image:
    """Bilateral filter of ``image``, one :func:`assocmem.mem` read per pixel.

    Args:
        image: ``(H, W)``, ``(H, W, C)`` or ``(B, H, W, C)``; uint8 or float,
            numpy array or torch tensor.
        radius: window half-width; the window is ``2·radius+1`` pixels across.
        sigma_color: colour standard deviation, on the image's scale (0..255 for uint8).
        sigma_space: spatial standard deviation in pixels.
        window: ``"circle"`` (offsets with ``dy²+dx² <= radius²``, as OpenCV) or
            ``"square"`` (as scikit-image).
        border: ``"reflect101"`` (OpenCV's default), ``"constant"`` with ``cval``
            (scikit-image's default, cval=0), ``"edge"`` or ``"symmetric"``.
        cval: the value outside the image for ``border="constant"``.

    Returns:
        The filtered image, same shape, dtype and type as ``image``.
    """
    _check(radius, sigma_color=sigma_color, sigma_space=sigma_space)
    x, info = _as_tensor(image)  # (B, C, H, W)
    offsets = window_offsets(int(radius), window)
    d2 = torch.tensor([dy * dy + dx * dx for dy, dx in offsets], dtype=x.dtype)  # (m,)
    # spatial log-weight, scaled by temp = σ_c² since the whole score is divided by it
    key_bias = -(sigma_color**2) * d2 / (2 * sigma_space**2)  # (m,)
    centre = 0.5 * (float(x.min()) + float(x.max()))
    y = _window_read(x, offsets, key_bias, float(sigma_color) ** 2, border, cval, centre)
    return _from_tensor(y, info)


def dot_product_filter(
    image: Image,
    radius: int,
    temp: float,
    *,
    window: Window = "circle",
    border: Border = "reflect101",
    cval: float = 0.0,
) -> Image:
    """Attention's kernel on an image: the same window read with scores ``c_i·c_j / temp``.

    Args and returns as :func:`bilateral`; ``temp`` plays the part of ``σ_c²``. No
    spatial term and no key bias: the weight grows with the key's brightness along
    the query's colour, so flat regions are not simply averaged.
    """
    _check(radius, temp=temp)
    x, info = _as_tensor(image)  # (B, C, H, W)
    offsets = window_offsets(int(radius), window)
    y = _window_read(x, offsets, None, float(temp), border, cval, 0.0)
    return _from_tensor(y, info)


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
    the largest channel difference per pixel, on the images' own scale. Written to a
    temporary file in the same folder and moved into place.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def show(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else np.clip(a, 0, 1)

    diff = np.abs(reference.astype(np.float64) - ours.astype(np.float64))  # (H, W[, C])
    if diff.ndim == 3:
        diff = diff.max(axis=-1)  # (H, W)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), constrained_layout=True)
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
    path = os.fspath(path)
    tmp = os.path.join(
        os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.{os.getpid()}.tmp"
    )
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
