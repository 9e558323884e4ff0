"""Image filters written as memory reads: the bilateral filter is attention.

Each read is ``mem(q, K, V, temp)``: the queries are pixels, the keys and values are
the pixels around them, and the scores are log-weights.

The bilateral filter weighs pixel ``j`` of the window of pixel ``i`` by

    w_ij = exp(-‖c_i - c_j‖² / 2σ_c²  -  ‖p_i - p_j‖² / 2σ_s²)

(``c`` colours, ``p`` positions). Both terms expand into dot products:

    -‖c_i - c_j‖² / 2σ_c² = c_i·c_j / σ_c²  -  ‖c_j‖² / 2σ_c²  -  ‖c_i‖² / 2σ_c²,
    -‖p_i - p_j‖² / 2σ_s² = p_i·p_j / σ_s²  -  ‖p_j‖² / 2σ_s²  -  ‖p_i‖² / 2σ_s²,

and the terms in ``i`` alone are the same for every key of a query, so they cancel in
the softmax. What is left is a dot product plus a bias that depends on the key alone;
carry the bias as one more key coordinate and put a 1 in the query:

    q_i = [c_i, 1, (σ_c²/σ_s²)·p_i],
    k_j = [c_j, -‖c_j‖²/2 - (σ_c²/σ_s²)·‖p_j‖²/2, p_j],   temp = σ_c²

and ``softmax(q_i·k_j / temp)`` over the window is exactly the normalised bilateral
weight: attention with colour and position encodings *is* the bilateral filter, and
the unchanged :func:`assocmem.mem` computes it. Since positions are features, the
queries of a whole T×T tile can share one memory (the (T+2r)² pixels around the tile)
with a boolean mask, the same for every tile, that keeps each query in its own window:
one ordinary matrix-matrix attention read per tile, batched over tiles. The
dot-product filter (:func:`dot_product_filter`) is the same read with
``q = c_i, k = c_j``: attention's kernel, which is not symmetric (``c_i·c_j``
favours bright keys, not near ones).

Images are numpy arrays or torch tensors: ``(H, W)`` grey, ``(H, W, C)`` colour,
``(B, H, W, C)`` a batch. ``uint8`` in gives ``uint8`` out (rounded half to even,
like OpenCV's ``saturate_cast``) and ``sigma_color`` is then on the 0..255 scale;
float in gives the same float dtype out, ``sigma_color`` on the image's own scale.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
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

# Bytes one chunk of tile rows may hold (keys and queries; the mask is shared, not copied):
# bounds memory; 32 MiB was fastest on camera/astronaut once mem stopped expanding the mask.
CHUNK_BYTES = 32 * 2**20
# Default tile side: fastest for radius 5 in bench/bilateral.py (see docs/bilateral.md).
TILE = 4


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


def _tile_mask(offsets: Sequence[tuple[int, int]], r: int, tile: int) -> torch.Tensor:
    """(T², (T+2r)²) boolean: query pixel i of a T×T tile may read memory pixel j of the
    (T+2r)² pixels around the tile when their offset is one of the window's ``offsets``."""
    S = tile + 2 * r
    win = torch.zeros(2 * r + 1, 2 * r + 1, dtype=torch.bool)  # (2r+1, 2r+1) the window
    for dy, dx in offsets:
        win[dy + r, dx + r] = True
    qy, qx = (a.reshape(-1, 1) for a in torch.meshgrid(*[torch.arange(tile)] * 2, indexing="ij"))
    ky, kx = (a.reshape(1, -1) for a in torch.meshgrid(*[torch.arange(S)] * 2, indexing="ij"))
    dy, dx = ky - qy, kx - qx  # (n, m) offset + r: memory row/col of the tile pixel is +r
    inside = (dy >= 0) & (dy <= 2 * r) & (dx >= 0) & (dx <= 2 * r)  # (n, m)
    return inside & win[dy.clamp(0, 2 * r), dx.clamp(0, 2 * r)]  # (n, m)


def _tile_read(
    x: torch.Tensor,
    offsets: Sequence[tuple[int, int]],
    temp: float,
    spatial: float | None,
    border: Border,
    cval: float,
    centre: float,
    tile: int,
) -> torch.Tensor:
    """Filter x (B, C, H, W) with one ``mem`` read per T×T tile of pixels (T = ``tile``).

    The memory of a tile is the (T+2r)×(T+2r) block of the padded image around it; a
    boolean mask, the same for every tile, lets each of the T² queries read only its own
    window. With ``spatial = σ_c²/σ_s²`` (the bilateral filter, ``temp = σ_c²``) and
    positions ``p`` relative to the tile centre:

        q_i = [c_i, 1, spatial·p_i],   k_j = v_j = [c_j, -‖c_j‖²/2 - spatial·‖p_j‖²/2, p_j]

    so ``q_i·k_j / temp = -‖c_i-c_j‖²/2σ_c² - ‖p_i-p_j‖²/2σ_s² + (a constant per query)``.
    With ``spatial=None`` (the dot-product filter) ``q_i = c_i``, ``k_j = v_j = c_j``.
    Colours are shifted by ``centre`` (undone after the read; the weights sum to 1) to
    keep the dot products small. Values are the keys themselves: SDPA's fused CPU kernel
    needs value and key widths equal; the read's first C columns are the colours.
    """
    B, C, H, W = x.shape
    r = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    T = tile
    S = T + 2 * r  # memory side
    n, m = T * T, S * S
    ny, nx = -(-H // T), -(-W // T)  # tiles down and across (the last ones may overhang)
    xp = _pad(x, r, border, cval) - centre  # (B, C, H+2r, W+2r)
    xp = F.pad(xp, (0, nx * T - W, 0, ny * T - H))  # (B, C, ny·T+2r, nx·T+2r) overhang: 0
    feat = xp.permute(0, 2, 3, 1)  # (B, Hp, Wp, C)
    bilat = spatial is not None
    d = C + 3 if bilat else C  # key width
    if bilat:
        feat = torch.cat([feat, -0.5 * feat.square().sum(-1, keepdim=True)], -1)  # (B, Hp, Wp, C+1)
        a = torch.arange(S, dtype=x.dtype, device=x.device) - (
            r + (T - 1) / 2
        )  # (S,) memory coordinate
        pos = torch.stack(torch.meshgrid(a, a, indexing="ij"), -1).reshape(m, 2)  # (m, 2)
        pos_bias = -0.5 * spatial * pos.square().sum(-1)  # (m,)
        qpos = pos.view(S, S, 2)[r : r + T, r : r + T].reshape(n, 2) * spatial  # (n, 2)
    mask = _tile_mask(offsets, r, T).to(x.device)  # (n, m)
    out = x.new_empty(B, ny * T, nx * T, C)  # (B, ny·T, nx·T, C)
    # Chunks of tile rows bound the memory of the gathered keys and queries.
    per_row = B * nx * (m * d + n * d) * x.element_size()
    rows = max(1, CHUNK_BYTES // per_row)
    for t0 in range(0, ny, rows):
        h = min(rows, ny - t0)
        f = feat[:, t0 * T : (t0 + h) * T + 2 * r]  # (B, h·T+2r, Wp, C[+1])
        blocks = f.unfold(1, S, T).unfold(2, S, T)  # (B, h, nx, C[+1], S, S) a view
        K = x.new_empty(B, h, nx, m, d)  # (B, h, nx, m, d) tile memories
        K[..., : feat.shape[-1]] = blocks.flatten(-2).transpose(-1, -2)
        q = f[:, r : r + h * T, r : r + nx * T]  # (B, h·T, nx·T, C[+1]) the tiles' pixels
        q = q.reshape(B, h, T, nx, T, -1).permute(0, 1, 3, 2, 4, 5).reshape(B, h, nx, n, -1)
        if bilat:
            K[..., C] += pos_bias  # spatial part of the key bias
            K[..., C + 1 :] = pos
            q = torch.cat(
                [q[..., :C], q.new_ones(B, h, nx, n, 1), qpos.expand(B, h, nx, n, 2)], -1
            )  # (B, h, nx, n, C+3)
        read = mem(q, K, K, temp, mask=mask)  # (B, h, nx, n, d)
        read = read[..., :C].reshape(B, h, nx, T, T, C).permute(0, 1, 3, 2, 4, 5)
        out[:, t0 * T : (t0 + h) * T] = read.reshape(B, h * T, nx * T, C) + centre
    return out[:, :H, :W].permute(0, 3, 1, 2)  # (B, C, H, W)


def _check(radius: int, **sigmas: float) -> None:
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 0:
        raise InputError(
            f"radius must be an integer >= 0 (the window is 2·radius+1 pixels wide); got {radius!r}"
        )
    for name, s in sigmas.items():
        if not (isinstance(s, int | float | np.floating) and math.isfinite(s) and s > 0):
            raise InputError(f"{name} must be a finite number > 0; got {s!r}")


def _check_tile(tile: int) -> None:
    if isinstance(tile, bool) or not isinstance(tile, int | np.integer) or tile < 1:
        raise InputError(f"tile must be an integer >= 1; got {tile!r}")


def _filter(
    image: Image,
    radius: int,
    temp: float,
    spatial: float | None,
    window: Window,
    border: Border,
    cval: float,
    tile: int,
) -> Image:
    """The tiled read of :func:`_tile_read` on ``image``, back in the image's own type.
    The bilateral read (``spatial`` given) is centred on the image's mid-range colour."""
    _check_tile(tile)
    x, info = _as_tensor(image)  # (B, C, H, W)
    offsets = window_offsets(int(radius), window)
    centre = 0.5 * (float(x.min()) + float(x.max())) if spatial is not None else 0.0
    y = _tile_read(x, offsets, temp, spatial, border, cval, centre, int(tile))
    if not bool(torch.isfinite(y).all()) and bool(torch.isfinite(x).all()):
        # e.g. sigma_space 1e-20: σ_c²/σ_s² overflows; uint8 would turn the NaN into 0
        raise InputError(
            f"the filter overflowed in {x.dtype} (temperature {temp:g}, position scale "
            f"{spatial if spatial is not None else 0:g}): give sigmas nearer the image's "
            "scale (0..255 for uint8, 0..1 for float images), or a float64 image"
        )
    return _from_tensor(y, info)


def bilateral(
    image: Image,
    radius: int,
    sigma_color: float,
    sigma_space: float,
    *,
    window: Window = "circle",
    border: Border = "reflect101",
    cval: float = 0.0,
    tile: int = TILE,
) -> Image:
    """Bilateral filter of ``image``: one :func:`assocmem.mem` read per tile of pixels.

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
        tile: side T of the square tiles of query pixels that share one read (the
            memory is the (T+2r)² pixels around the tile); ``tile=1`` is one read per
            pixel. Any value gives the same filter; it only changes the speed.

    Returns:
        The filtered image, same shape, dtype and type as ``image``.
    """
    _check(radius, sigma_color=sigma_color, sigma_space=sigma_space)
    temp = float(sigma_color) ** 2
    spatial = temp / float(sigma_space) ** 2  # σ_c²/σ_s²: the position term, scaled by temp
    return _filter(image, radius, temp, spatial, window, border, cval, tile)


def dot_product_filter(
    image: Image,
    radius: int,
    temp: float,
    *,
    window: Window = "circle",
    border: Border = "reflect101",
    cval: float = 0.0,
    tile: int = TILE,
) -> Image:
    """Attention's kernel on an image: the same tiled read with scores ``c_i·c_j / temp``.

    Args and returns as :func:`bilateral`; ``temp`` plays the part of ``σ_c²``. No
    spatial term and no key bias: the weight grows with the key's brightness along
    the query's colour, so flat regions are not simply averaged.
    """
    _check(radius, temp=temp)
    return _filter(image, radius, float(temp), None, window, border, cval, tile)


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
    import io

    from matplotlib.figure import Figure

    from assocmem.errors import write_atomic

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
