"""The bilateral and dot-product filters as memory reads, against explicit loops and the
reference libraries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from assocmem.cli import main
from assocmem.errors import InputError
from assocmem.filters import bilateral, dot_product_filter, window_offsets

PAD = {"reflect101": "reflect", "constant": "constant", "edge": "edge", "symmetric": "symmetric"}


def loop_filter(img, radius, score, window="circle", border="reflect101", cval=0.0):
    """Slow reference: explicit loops over pixels and window offsets, weights exp(score)."""
    x = img.astype(np.float64)
    grey = x.ndim == 2
    if grey:
        x = x[..., None]
    H, W, C = x.shape
    kw = {"constant_values": cval} if border == "constant" else {}
    xp = np.pad(x, ((radius, radius), (radius, radius), (0, 0)), mode=PAD[border], **kw)
    out = np.zeros_like(x)
    for i in range(H):
        for j in range(W):
            num, den, s = np.zeros(C), 0.0, []
            offs = window_offsets(radius, window)
            for dy, dx in offs:
                s.append(score(x[i, j], xp[i + radius + dy, j + radius + dx], dy, dx))
            s = np.array(s) - max(s)  # stable exp
            for (dy, dx), sk in zip(offs, s, strict=True):
                w = np.exp(sk)
                num += w * xp[i + radius + dy, j + radius + dx]
                den += w
            out[i, j] = num / den
    return out[..., 0] if grey else out


def loop_bilateral(img, radius, sc, ss, **kw):
    def score(ci, cj, dy, dx):
        return -((ci - cj) ** 2).sum() / (2 * sc**2) - (dy * dy + dx * dx) / (2 * ss**2)

    return loop_filter(img, radius, score, **kw)


rng = np.random.default_rng(5)
IMAGES = {"grey": rng.random((9, 11)), "colour": rng.random((9, 11, 3))}


@pytest.mark.parametrize("kind", ["grey", "colour"])
@pytest.mark.parametrize(
    "window,border",
    [("circle", "reflect101"), ("square", "constant"), ("square", "edge"), ("circle", "symmetric")],
)
def test_bilateral_matches_loop_float64(kind, window, border):
    img = IMAGES[kind]
    ours = bilateral(img, 2, 0.3, 1.5, window=window, border=border, cval=0.25)
    ref = loop_bilateral(img, 2, 0.3, 1.5, window=window, border=border, cval=0.25)
    assert ours.dtype == np.float64 and ours.shape == img.shape
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


def test_bilateral_float32_and_tensor():
    img = IMAGES["colour"].astype(np.float32)
    ours = bilateral(torch.from_numpy(img), 3, 0.2, 2.0)
    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), loop_bilateral(img, 3, 0.2, 2.0), atol=1e-5)


@pytest.mark.parametrize("kind", ["grey", "colour"])
def test_bilateral_uint8_rounds_like_the_exact_filter(kind):
    img = (IMAGES[kind] * 255).astype(np.uint8)
    ours = bilateral(img, 2, 30.0, 2.0)
    ref = loop_bilateral(img, 2, 30.0, 2.0)
    assert ours.dtype == np.uint8
    # float32 on the 0..255 scale: equal to the rounded exact value except at near-ties
    assert np.abs(ours.astype(int) - np.round(ref)).max() <= 1
    assert np.mean(ours == np.round(ref)) > 0.97


def test_batch_equals_one_by_one():
    batch = rng.random((2, 7, 8, 3))
    ours = bilateral(batch, 2, 0.3, 1.0)
    for b in range(2):
        np.testing.assert_allclose(ours[b], bilateral(batch[b], 2, 0.3, 1.0), atol=1e-12)


def test_edges_survive_and_flat_regions_smooth():
    step = np.zeros((8, 12))
    step[:, 6:] = 1.0
    noisy = step + 0.02 * rng.standard_normal(step.shape)
    out = bilateral(noisy, 2, 0.1, 2.0)
    assert np.abs(out - step).mean() < np.abs(noisy - step).mean() / 2  # noise averaged out
    assert out[:, 6:].min() > 0.8 and out[:, :6].max() < 0.2  # the edge is not blurred


def test_radius_zero_is_identity():
    img = IMAGES["colour"]
    np.testing.assert_array_equal(bilateral(img, 0, 0.1, 1.0), img)


def test_large_radius_reflects_beyond_one_image_width():
    img = rng.random((3, 4))
    np.testing.assert_allclose(
        bilateral(img, 5, 0.5, 3.0), loop_bilateral(img, 5, 0.5, 3.0), atol=1e-6
    )


@pytest.mark.parametrize("kind", ["grey", "colour"])
def test_dot_product_filter_matches_loop(kind):
    img = IMAGES[kind]
    ours = dot_product_filter(img, 2, 0.1, window="square", border="edge")
    ref = loop_filter(img, 2, lambda ci, cj, dy, dx: ci @ cj / 0.1, window="square", border="edge")
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
    # the two kernels differ: dot favours bright keys, so it brightens on average
    assert dot_product_filter(img, 2, 0.1).mean() > bilateral(img, 2, 0.3, 1.0).mean()


# ---- the tiled read: any tile side gives the same filter -------------------------------

# 9x11 and 13x7 are not multiples of 2, 3, 4 or 5: the last tiles overhang the image
TILED = {"grey": rng.random((13, 7)), "colour": rng.random((9, 11, 3))}


@pytest.mark.parametrize("tile", [1, 2, 3, 5, (3, 4), (1, 6), (5, 2)])
@pytest.mark.parametrize("kind", ["grey", "colour"])
@pytest.mark.parametrize(
    "window,border", [("circle", "reflect101"), ("square", "constant"), ("circle", "edge")]
)
def test_tiled_bilateral_matches_loop_float64(tile, kind, window, border):
    img = TILED[kind]
    ours = bilateral(img, 2, 0.3, 1.5, window=window, border=border, cval=0.25, tile=tile)
    ref = loop_bilateral(img, 2, 0.3, 1.5, window=window, border=border, cval=0.25)
    assert ours.shape == img.shape
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("tile", [2, 4, 8, (3, 4)])
def test_tiled_bilateral_uint8_and_float32(tile):
    img = TILED["colour"]
    u8 = (img * 255).astype(np.uint8)
    ref = loop_bilateral(u8, 3, 30.0, 2.0)
    ours = bilateral(u8, 3, 30.0, 2.0, tile=tile)
    assert ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - np.round(ref)).max() <= 1
    assert np.mean(ours == np.round(ref)) > 0.97
    f32 = bilateral(img.astype(np.float32), 3, 0.2, 2.0, tile=tile)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, loop_bilateral(img, 3, 0.2, 2.0), atol=1e-5)


@pytest.mark.parametrize("tile", [8, (3, 7)])
def test_tile_larger_than_image_and_batch(tile):
    batch = rng.random((2, 5, 6, 3))
    ours = bilateral(batch, 2, 0.3, 1.0, tile=tile)  # tiles overhanging the image
    for b in range(2):
        np.testing.assert_allclose(ours[b], loop_bilateral(batch[b], 2, 0.3, 1.0), atol=1e-6)


def test_chunks_of_one_tile_row_give_the_same_image(monkeypatch):
    """Many chunks (the last one short) and buffers reused across them: same result."""
    import assocmem.filters as filters

    img = rng.random((2, 13, 9, 3))
    whole = bilateral(img, 2, 0.3, 1.0, tile=(3, 4))
    monkeypatch.setattr(filters, "CHUNK_BYTES", 1)  # one tile row per chunk
    np.testing.assert_array_equal(bilateral(img, 2, 0.3, 1.0, tile=(3, 4)), whole)
    np.testing.assert_allclose(whole[1], loop_bilateral(img[1], 2, 0.3, 1.0), atol=1e-6)


@pytest.mark.parametrize("tile", [1, 3])
def test_tiled_dot_product_filter_matches_loop(tile):
    img = TILED["colour"]
    ours = dot_product_filter(img, 2, 0.1, window="square", border="symmetric", tile=tile)
    ref = loop_filter(
        img, 2, lambda ci, cj, dy, dx: ci @ cj / 0.1, window="square", border="symmetric"
    )
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


def test_the_mask_matters():
    """Without the window's -inf bias a tile's queries would also read the pixels of their
    neighbours' windows; the square and circle windows of radius 2 differ on the corners."""
    img = TILED["grey"]
    sq = bilateral(img, 2, 0.5, 3.0, window="square", tile=4)
    ci = bilateral(img, 2, 0.5, 3.0, window="circle", tile=4)
    assert np.abs(sq - ci).max() > 1e-3
    np.testing.assert_allclose(ci, loop_bilateral(img, 2, 0.5, 3.0), atol=1e-6)


UINT8_GREY = (np.random.default_rng(7).random((6, 7)) * 255).astype(np.uint8)


@pytest.mark.parametrize(
    "call",
    [
        lambda: bilateral(IMAGES["grey"], -1, 0.1, 1.0),
        lambda: bilateral(IMAGES["grey"], 2, 0.0, 1.0),
        lambda: bilateral(IMAGES["grey"], 2, 0.1, float("nan")),
        lambda: bilateral(np.zeros((2, 3, 4, 5, 6)), 1, 0.1, 1.0),
        lambda: bilateral(IMAGES["grey"].astype(np.int32), 1, 0.1, 1.0),
        lambda: dot_product_filter(IMAGES["grey"], 1, -1.0),
        lambda: bilateral(IMAGES["grey"], 1, 0.1, 1.0, window="hexagon"),
        lambda: bilateral(IMAGES["grey"], 1, 0.1, 1.0, tile=0),
        lambda: dot_product_filter(IMAGES["grey"], 1, 1.0, tile=2.5),
        lambda: bilateral(IMAGES["grey"], 1, 0.1, 1.0, tile=(3, 0)),
        lambda: bilateral(IMAGES["grey"], 1, 0.1, 1.0, tile=(3, 4, 5)),
        # a colour sigma so small that q·k/temp overflows float32: an error, not a black image
        lambda: bilateral(UINT8_GREY, 2, 1e-20, 3.0),
        lambda: dot_product_filter(UINT8_GREY, 2, 1e-40),
    ],
)
def test_bad_arguments_raise_input_error(call):
    with pytest.raises(InputError):
        call()


@pytest.mark.parametrize("f", [bilateral, dot_product_filter])
def test_the_filters_are_differentiable(f):
    """A float image that requires grad gets a gradient (each chunk gets fresh buffers)."""
    img = torch.from_numpy(TILED["colour"]).requires_grad_(True)
    args = (2, 0.3, 1.5) if f is bilateral else (2, 0.5)
    y = f(img, *args, tile=(3, 4))
    y.square().sum().backward()
    assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(y.detach(), f(img, *args, tile=(3, 4)), atol=1e-12, rtol=0)
    x = torch.from_numpy(TILED["grey"][:5, :5]).requires_grad_(True)  # a small crop:
    g = torch.autograd.gradcheck(lambda t: f(t, *args, tile=2), (x,), atol=1e-6)  # exact
    assert g


def test_extreme_sigmas_give_the_limits_not_errors():
    """σ_s -> 0 leaves only the centre pixel (the identity); σ_c -> ∞ drops the colour
    term (a Gaussian blur cut to the window), as the loop reference says."""
    np.testing.assert_array_equal(bilateral(UINT8_GREY, 2, 25.0, 1e-20), UINT8_GREY)
    np.testing.assert_array_equal(bilateral(UINT8_GREY, 2, 25.0, 1e-200), UINT8_GREY)
    f = UINT8_GREY.astype(np.float64)
    gauss = loop_filter(f, 2, lambda ci, cj, dy, dx: -(dy * dy + dx * dx) / 18.0)
    for sc in (1e20, 1e200):
        np.testing.assert_allclose(bilateral(f, 2, sc, 3.0), gauss, atol=1e-9, rtol=0)


# ---- command line ------------------------------------------------------------------------


@pytest.fixture
def png(tmp_path):
    from PIL import Image

    img = (rng.random((10, 13, 3)) * 255).astype(np.uint8)
    path = tmp_path / "in.png"
    Image.fromarray(img).save(path)
    return path, img


def test_cli_round_trip(png, tmp_path):
    from PIL import Image

    path, img = png
    out, fig = tmp_path / "out.png", tmp_path / "fig.png"
    args = ["--radius", "2", "--sigma-color", "30", "--sigma-space", "2"]
    assert main(["bilateral", str(path), str(out), *args, "--figure", str(fig)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), bilateral(img, 2, 30.0, 2.0))
    assert fig.stat().st_size > 0
    assert main(["bilateral", str(path), str(out), *args, "--kernel", "dot", "--temp", "900"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), dot_product_filter(img, 2, 900.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fig.png",
        "in.png",
        "out.png",
    ]  # no temp files


@pytest.mark.parametrize(
    "extra",
    [
        ["--radius", "-1"],
        ["--sigma-color", "0"],
        ["--sigma-space", "-2"],
        ["--kernel", "gauss"],
    ],
)
def test_cli_bad_settings_exit_2(png, tmp_path, extra):
    path, _ = png
    assert main(["bilateral", str(path), str(tmp_path / "o.png"), *extra]) == 2
    assert not (tmp_path / "o.png").exists()


def test_cli_bad_files_exit_2(tmp_path, png):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["bilateral", str(tmp_path / "missing.png"), str(tmp_path / "o.png")]) == 2
    assert main(["bilateral", str(bad), str(tmp_path / "o.png")]) == 2
    assert main(["bilateral", str(png[0]), str(tmp_path / "o.unknownext")]) == 2


@pytest.mark.parametrize(
    "out,extra,message",
    [
        ("o.psd", [], "cannot write PSD images to"),  # Pillow reads PSD, cannot write it
        ("no/o.png", [], "output folder"),
        ("o.png", ["--figure", "no/f.png"], "figure folder"),
        ("o.png", ["--figure", "."], "is a folder"),
    ],
)
def test_cli_bad_outputs_exit_2_before_the_work(png, tmp_path, capsys, out, extra, message):
    extra = [str(tmp_path / e) if e.startswith(("no/", ".")) else e for e in extra]
    assert main(["bilateral", str(png[0]), str(tmp_path / out), *extra]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("error:") and message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


# ---- reference libraries -----------------------------------------------------------------


def test_matches_opencv_on_grey_uint8():
    cv2 = pytest.importorskip("cv2")
    img = (rng.random((24, 31)) * 255).astype(np.uint8)
    ref = cv2.bilateralFilter(img, 7, 40.0, 2.0)  # d=7: circular window of radius 3, REFLECT_101
    ours = bilateral(img, 3, 40.0, 2.0)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1  # OpenCV's float32 LUT rounding


def test_matches_skimage_with_its_spatial_table_fixed():
    pytest.importorskip("skimage")
    from skimage.restoration import _denoise, denoise_bilateral

    def lut(win_size, sigma, *, dtype=float):  # the Gaussian on -r..r that skimage means
        g = np.arange(-(win_size // 2), win_size // 2 + 1)
        return np.exp(-0.5 * (g[:, None] ** 2 + g[None] ** 2) / sigma**2).astype(dtype).ravel()

    img = rng.random((20, 17, 3))
    orig, _denoise._compute_spatial_lut = _denoise._compute_spatial_lut, lut
    try:  # skimage's colour LUT is indexed by distance/channels: pass sigma/3 for sigma
        ref = denoise_bilateral(
            img, win_size=5, sigma_color=0.2 / 3, sigma_spatial=1.5, channel_axis=-1
        )
    finally:
        _denoise._compute_spatial_lut = orig
    ours = bilateral(img, 2, 0.2, 1.5, window="square", border="constant", cval=0.0)
    assert np.abs(ours - ref).max() < 1e-3  # skimage's 10000-bin colour table


# ---- limits of the command ---------------------------------------------------------------


def _png_header(path, width, height):
    """A PNG whose header declares width × height (the pixel data is never reached)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [20000, 12000, 9000])
def test_cli_refuses_a_huge_image_before_decoding_it(tmp_path, capsys, side):
    """A 20000² header was a DecompressionBombError traceback; 12000² and 9000² ran for
    minutes (issue 9). Now: exit 2 from the header alone, naming the option to raise."""
    big = tmp_path / "big.png"
    _png_header(big, side, side)
    assert main(["bilateral", str(big), str(tmp_path / "o.png")]) == 2
    _, err = capsys.readouterr()
    assert f"{side}×{side}" in err and "--max-pixels" in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_cli_limits_can_be_raised(png, tmp_path, capsys):
    from PIL import Image

    path, img = png  # 10×13 = 130 pixels
    out = tmp_path / "o.png"
    assert main(["bilateral", str(path), str(out), "--max-pixels", "129"]) == 2
    assert "--max-pixels" in capsys.readouterr()[1]
    assert main(["bilateral", str(path), str(out), "--max-pixels", "130"]) == 0
    assert main(["bilateral", str(path), str(out), "--radius", "3000"]) == 2
    assert "--max-radius" in capsys.readouterr()[1]
    args = ["--radius", "60", "--max-radius", "60", "--sigma-space", "1"]
    assert main(["bilateral", str(path), str(out), *args]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), bilateral(img, 60, 25.0, 1.0))
    assert main(["bilateral", str(path), str(out), "--max-pixels", "0"]) == 2


def test_pillow_limit_is_left_as_it_was(png):
    from PIL import Image

    from assocmem.cli.bilateral import read_image

    before = Image.MAX_IMAGE_PIXELS
    read_image(png[0])
    assert Image.MAX_IMAGE_PIXELS == before


def test_filters_do_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, assocmem.filters; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"  # fmt: skip
