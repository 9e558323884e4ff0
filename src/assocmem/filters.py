"""Image filters written as memory reads: the bilateral filter is attention.

Each read is ``mem(q, K, V, temp)``: the queries are pixels, the keys and values are
the pixels around them, and the scores are log-weights.

The bilateral filter weighs pixel ``j`` of the window of pixel ``i`` by

    w_ij = exp(-‖c_i - c_j‖² / 2σ_c²  -  ‖p_i - p_j‖² / 2σ_s²)

(``c`` colours, ``p`` positions). Both terms expand into dot products:

    -‖c_i - c_j‖² / 2σ_c² = c_i·c_j / σ_c²  -  ‖c_j‖² / 2σ_c²  -  ‖c_i‖² / 2σ_c²,
    -‖p_i - p_j‖² / 2σ_s² = p_i·p_j / σ_s²  -  ‖p_j‖² / 2σ_s²  -  ‖p_i‖² / 2σ_s²,

and the terms in ``i`` alone are the same for every key of a query, so they cancel in
the softmax. The colour part is a dot product plus a bias that depends on the key alone
(one more key coordinate, matched by a 1 in the query); the spatial part depends on the
offset alone, a relative-position bias, which :func:`assocmem.mem` takes as ``bias``:

    q_i = [c_i, 1],   k_j = v_j = [c_j, -‖c_j‖²/2],   temp = σ_c²,
    bias_ij = -‖p_i - p_j‖²/2σ_s²  (-inf outside the window of i)

and ``softmax(q_i·k_j / temp + bias_ij)`` over the window is exactly the normalised
bilateral weight: attention with a relative-position bias *is* the bilateral filter.
(The position term also expands into ``p_i·p_j`` plus per-side terms, so attention with
colour and position encodings is the bilateral filter too; see docs/bilateral.md.)
Since the bias table depends on offsets only, the queries of a whole tile of pixels share
one memory (the pixels their windows cover) and one ``(queries, slots)`` bias: one ordinary
matrix-matrix attention read per tile, batched over tiles. The dot-product filter
(:func:`dot_product_filter`) is the same read with ``q = c_i, k = c_j``: attention's
kernel, which is not symmetric (``c_i·c_j`` favours bright keys, not near ones).

Images are numpy arrays or torch tensors: ``(H, W)`` grey, ``(H, W, C)`` colour,
``(B, H, W, C)`` a batch. ``uint8`` in gives ``uint8`` out (rounded half to even,
like OpenCV's ``saturate_cast``) and ``sigma_color`` is then on the 0..255 scale;
float in gives the same float dtype out, ``sigma_color`` on the image's own scale.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from assocmem.errors import InputError
from assocmem.primitive import mem

__all__ = ["bilateral", "dot_product_filter", "window_offsets"]

Image = np.ndarray | torch.Tensor
Window = Literal["circle", "square"]
Border = Literal["reflect101", "constant", "edge", "symmetric"]

# Bytes one chunk of tile rows may hold (keys and queries; the bias is shared, not copied).
# 8 MiB: few chunks (each costs a mem call and a copy per memory row), and buffers small
# enough that glibc serves them from its heap (under its 32 MiB mmap ceiling), so repeated
# calls pay no page faults (at 32 MiB they took a large share of the time on camera).
CHUNK_BYTES = 8 * 2**20
# Default tile, (rows, cols): fastest for radius 5 in bench/bilateral.py (docs/bilateral.md):
# 12 queries share 142 (padded: 144) slots.
TILE = (3, 4)


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


@functools.lru_cache(maxsize=16)
def _tile_plan(
    offsets: tuple[tuple[int, int], ...], ty: int, tx: int, inv_var: float | None
) -> tuple[tuple[tuple[int, int, int, int], ...], torch.Tensor]:
    """The memory of a ty×tx tile and the score bias of its reads (cached: the same for
    every image with these settings; callers copy, never modify, the results).

    The memory is every pixel that some query of the tile may read (the union of their
    windows, so a disc window leaves the corners out: 156 slots, not (T+2r)² = 196, for
    T=4, r=5), in row-major order, padded with never-read slots to a multiple of 8: SDPA's
    softmax runs over rows of m scores in 8-float (AVX2) vectors, and a ragged tail costs
    more than the padding (156 -> 160 slots ran faster on camera, timed in turns).

    Returns the memory's rows, ``(first slot, slots, dy, dx of the first)`` with ``dy, dx``
    from the tile's top-left pixel (a window row is an interval: the windows are convex),
    and the ``(ty·tx, m)`` float64 bias: ``-‖p_i - p_j‖²·inv_var/2`` where slot j is in
    query i's window (``inv_var = 1/σ_s²``; 0 without it), ``-inf`` elsewhere and on the
    padding."""
    r = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    S = tx + 2 * r  # width of the rectangle around the tile that holds every window
    offs = np.array(offsets)  # (k, 2)
    qyx = np.stack(np.meshgrid(np.arange(ty), np.arange(tx), indexing="ij"), -1).reshape(-1, 1, 2)
    cell = ((qyx + offs + r) * [S, 1]).sum(-1)  # (n, k) the read pixel's cell in the rectangle
    used = np.unique(cell)  # (m,) sorted: slots in row-major order
    col = np.searchsorted(used, cell)  # (n, k) slot of each query's k-th window pixel
    d2 = (offs**2).sum(-1).astype(np.float64)  # (k,)
    w = np.zeros_like(d2)  # (k,) log spatial weight of each window offset
    if inv_var:  # the centre stays 0 even for inv_var = inf (σ_s -> 0: the identity filter)
        w[d2 > 0] = -0.5 * d2[d2 > 0] * inv_var
    m = len(used) + (-len(used) % 8)
    bias = np.full((ty * tx, m), -np.inf)  # (n, m), the padding columns stay -inf
    np.put_along_axis(bias, col, np.broadcast_to(w, col.shape), axis=1)
    rows = []
    for y in np.unique(used // S):
        js = np.flatnonzero(used // S == y)
        assert (np.diff(used[js]) == 1).all()  # convex windows: each row an interval
        rows.append((int(js[0]), len(js), int(y) - r, int(used[js[0]] % S) - r))
    return tuple(rows), torch.from_numpy(bias)


def _tile_read(
    x: torch.Tensor,
    offsets: Sequence[tuple[int, int]],
    temp: float,
    inv_var: float | None,
    border: Border,
    cval: float,
    centre: float,
    tile: tuple[int, int],
    flat: bool = False,
) -> torch.Tensor:
    """Filter x (B, C, H, W) with one ``mem`` read per tile of ``tile = (ty, tx)`` pixels.

    The memory of a tile is the pixels around it that its queries' windows cover; a
    score bias, the same ``(ty·tx, m)`` table for every tile, holds the spatial term and
    ``-inf`` outside each query's own window. With ``inv_var = 1/σ_s²`` (the bilateral
    filter, ``temp = σ_c²``):

        q_i = [c_i, 1],   k_j = v_j = [c_j, -‖c_j‖²/2],   bias_ij = -‖p_i - p_j‖²/2σ_s²

    so ``q_i·k_j / temp + bias_ij = -‖c_i-c_j‖²/2σ_c² - ‖p_i-p_j‖²/2σ_s²`` up to a
    constant per query. With ``inv_var=None`` (the dot-product filter) ``q_i = c_i``,
    ``k_j = v_j = c_j`` and the bias is 0 or ``-inf``. Colours are shifted by ``centre``
    (undone after the read; the weights sum to 1) to keep the dot products small.
    Values are the keys themselves: SDPA's fused CPU kernel needs value and key widths
    equal; the read's first C columns are the colours. ``flat`` reads with zero queries:
    the scores are the bias alone (``σ_c = ∞``, a Gaussian cut to the window).
    """
    B, C, H, W = x.shape
    r = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    Ty, Tx = tile
    ny, nx = -(-H // Ty), -(-W // Tx)  # tiles down and across (the last ones may overhang)
    Hp, Wp = ny * Ty + 2 * r, nx * Tx + 2 * r  # padded, overhang included
    bilat = inv_var is not None
    d = C + 1 if bilat else C  # key width
    # keys k_j = [c_j, -‖c_j‖²/2] of every padded pixel; the overhang reads zeros.
    keys = x.new_zeros(B, Hp, Wp, d)  # (B, Hp, Wp, d)
    cen = _pad(x, r, border, cval).permute(0, 2, 3, 1) - centre  # (B, H+2r, W+2r, C)
    keys[:, : H + 2 * r, : W + 2 * r, :C] = cen
    if bilat:
        keys[:, : H + 2 * r, : W + 2 * r, C] = -0.5 * cen.square().sum(-1)
    c = keys[..., :C]  # (B, Hp, Wp, C) the centred colours, a view
    runs, bias = _tile_plan(tuple(offsets), Ty, Tx, inv_var)
    bias = bias.to(x.device, x.dtype)  # (n, m)
    n, m = bias.shape
    used = runs[-1][0] + runs[-1][1]  # real slots; the rest of the m are padding
    # Chunks of tile rows: small enough that their buffers are reused (not fresh pages)
    # and stay in cache between the copies and the read. With autograd on, every chunk
    # gets fresh buffers: a reused one would overwrite what the last read saved for backward.
    rows = max(1, min(ny, CHUNK_BYTES // (B * nx * (m + n) * d * x.element_size())))
    reuse = not (torch.is_grad_enabled() and x.requires_grad)
    if reuse:
        buf = x.new_empty(B * rows * nx * m * d)  # the current chunk's memories
        qbuf = x.new_empty(B * rows * nx * n * d)  # the current chunk's queries
    out = x.new_empty(B, ny * Ty, nx * Tx, C)  # (B, ny·ty, nx·tx, C)
    for t0 in range(0, ny, rows):
        h = min(rows, ny - t0)
        if not reuse:
            buf, qbuf = x.new_empty(B * h * nx * m * d), x.new_empty(B * h * nx * n * d)
        K = buf[: B * h * nx * m * d].view(B, h, nx, m, d)  # (B, h, nx, m, d) memories
        q = qbuf[: B * h * nx * n * d].view(B, h, nx, Ty, Tx, d)  # the tiles' pixels
        if bilat and (t0 == 0 or not reuse):  # the first chunk covers a reused buffer
            q[..., C] = 1.0  # q_i = [c_i, 1]: the 1 reads the key's bias column
        for j0, w, dy, dx in runs:
            y0, x0 = t0 * Ty + r + dy, r + dx  # padded row and column for tile (t0, 0)
            src = keys[:, y0 : y0 + (h - 1) * Ty + 1 : Ty, x0:]  # (B, h, Wp-x0, d)
            src = src.unfold(2, w, Tx)[:, :, :nx]  # (B, h, nx, d, w)
            K[:, :, :, j0 : j0 + w] = src.transpose(-1, -2)  # (B, h, nx, w, d)
        K[:, :, :, used:] = 0.0  # padding slots: never read, but NaN would poison a row
        tiles = c[:, r + t0 * Ty : r + (t0 + h) * Ty, r : r + nx * Tx]  # (B, h·ty, nx·tx, C)
        q[..., :C] = tiles.reshape(B, h, Ty, nx, Tx, C).permute(0, 1, 3, 2, 4, 5)
        if flat:
            q.zero_()
        read = mem(q.view(B, h, nx, n, d), K, K, temp, bias=bias)  # (B, h, nx, n, d)
        read = read.view(B, h, nx, Ty, Tx, d).permute(0, 1, 3, 2, 4, 5)  # (B, h, ty, nx, tx, d)
        dst = out[:, t0 * Ty : (t0 + h) * Ty].view(B, h, Ty, nx, Tx, C)  # the chunk's image rows
        dst.copy_(read[..., :C]).add_(centre)
    return out[:, :H, :W].permute(0, 3, 1, 2)  # (B, C, H, W)


def _check(radius: int, **sigmas: float) -> None:
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 0:
        raise InputError(
            f"radius must be an integer >= 0 (the window is 2·radius+1 pixels wide); got {radius!r}"
        )
    for name, s in sigmas.items():
        if not (isinstance(s, int | float | np.floating) and math.isfinite(s) and s > 0):
            raise InputError(f"{name} must be a finite number > 0; got {s!r}")


def _check_tile(tile: int | tuple[int, int]) -> tuple[int, int]:
    """``tile`` as ``(rows, cols)``: an int is a square tile."""
    sides = (tile, tile) if not isinstance(tile, tuple | list) else tuple(tile)
    if len(sides) != 2 or not all(
        isinstance(t, int | np.integer) and not isinstance(t, bool) and t >= 1 for t in sides
    ):
        raise InputError(
            f"tile must be an integer >= 1 or a (rows, cols) pair of them; got {tile!r}"
        )
    return int(sides[0]), int(sides[1])


def _filter(
    image: Image,
    radius: int,
    temp: float,
    inv_var: float | None,
    window: Window,
    border: Border,
    cval: float,
    tile: int | tuple[int, int],
) -> Image:
    """The tiled read of :func:`_tile_read` on ``image``, back in the image's own type.
    The bilateral read (``inv_var`` given) is centred on the image's mid-range colour."""
    sides = _check_tile(tile)
    x, info = _as_tensor(image)  # (B, C, H, W)
    offsets = window_offsets(int(radius), window)
    xd = x.detach()  # the centre is a constant shift: no gradient flows through it
    centre = 0.5 * (float(xd.min()) + float(xd.max())) if inv_var is not None else 0.0
    # a tile larger than the image gives the same filter at a higher cost: clamp it
    sides = (min(sides[0], x.shape[-2]), min(sides[1], x.shape[-1]))
    overflow = InputError(
        f"the filter overflows in {x.dtype} (temperature {temp:g}): give a colour "
        "sigma (or temp) nearer the image's scale (0..255 for uint8, 0..1 for float "
        "images), or a float64 image"
    )
    if 1.0 / temp > torch.finfo(x.dtype).max:  # e.g. sigma_color 1e-20
        raise overflow
    # σ_c = ∞ (temp = inf) drops the colour term: a zero query (scores = the bias alone)
    flat = math.isinf(temp)
    y = _tile_read(x, offsets, 1.0 if flat else temp, inv_var, border, cval, centre, sides, flat)
    if not bool(torch.isfinite(y).all()) and bool(torch.isfinite(x).all()):
        raise overflow  # the scores q·k/temp overflowed; uint8 would turn NaN into 0
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
    tile: int | tuple[int, int] = TILE,
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
        tile: the tiles of query pixels that share one read, ``(rows, cols)`` or one
            side for a square (the memory is the pixels of the tile's windows);
            ``tile=1`` is one read per pixel. Any value gives the same filter; it only
            changes the speed.

    Returns:
        The filtered image, same shape, dtype and type as ``image``.
    """
    _check(radius, sigma_color=sigma_color, sigma_space=sigma_space)
    sc, ss = float(sigma_color), float(sigma_space)
    temp = sc * sc  # a product, not **: a huge sigma gives inf (a plain Gaussian), not an error
    inv_var = (1.0 / ss) * (1.0 / ss)  # 1/σ_s²; inf for a tiny sigma: the identity filter
    return _filter(image, radius, temp, inv_var, window, border, cval, tile)


def dot_product_filter(
    image: Image,
    radius: int,
    temp: float,
    *,
    window: Window = "circle",
    border: Border = "reflect101",
    cval: float = 0.0,
    tile: int | tuple[int, int] = TILE,
) -> Image:
    """Attention's kernel on an image: the same tiled read with scores ``c_i·c_j / temp``.

    Args and returns as :func:`bilateral`; ``temp`` plays the part of ``σ_c²``. No
    spatial term and no key bias: the weight grows with the key's brightness along
    the query's colour, so flat regions are not simply averaged.
    """
    _check(radius, temp=temp)
    return _filter(image, radius, float(temp), None, window, border, cval, tile)
