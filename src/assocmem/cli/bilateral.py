"""``assocmem bilateral``: filter an image with the bilateral (or dot-product) memory read."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import typer

from assocmem.cli.app import app, console
from assocmem.errors import InputError, write_atomic
from assocmem.filters import bilateral as bilateral_filter
from assocmem.filters import dot_product_filter

# Default limits of the command (each raised by an option): a larger image or window runs
# for minutes and takes gigabytes. 16.8 megapixels (4096²) is twice a 4K frame; a radius of
# 50 is a window of 7,845 pixels (circle), far past the usual 2-15 (OpenCV's d = 5-31).
MAX_PIXELS = 4096 * 4096
MAX_RADIUS = 50


def read_image(path: Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``path`` as uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB (alpha and palettes dropped).

    An image whose header declares more than ``max_pixels`` pixels is refused before it is
    decoded (Pillow's own decompression-bomb check is replaced by this one)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(f"input image {str(path)!r} does not exist or is not a file.")
    pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # ours, below
    try:
        with Image.open(path) as im:  # reads the header only
            w, h = im.size
            if w * h > max_pixels:
                raise InputError(
                    f"{str(path)!r} is {w}×{h} = {w * h:,} pixels, more than the limit of "
                    f"{max_pixels:,} (filtering it would take minutes and gigabytes). "
                    "Hint: shrink it, or raise the limit with --max-pixels."
                )
            im = im.convert("L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
            return np.asarray(im).copy()  # (H, W) or (H, W, 3)
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(
            f"{str(path)!r} is not an image Pillow can read ({e}). Give a PNG, JPEG or TIFF file."
        ) from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit


def image_format(path: Path) -> str:
    """Pillow's format name for ``path``'s extension, when Pillow can write it; else InputError."""
    from PIL import Image

    Image.init()  # load every plugin: SAVE lists the writable formats
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        what = "tell the image format from" if fmt is None else f"write {fmt} images to"
        raise InputError(f"cannot {what} {str(path)!r}; end it in .png, .jpg or .tif.")
    return fmt


def check_output(path: Path, what: str) -> None:
    """Refuse, before the work, an output that is a folder or lies in no folder."""
    if path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a folder; give a file name.")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{what} folder {str(folder)!r} does not exist.")


def write_image(image: np.ndarray, path: Path, fmt: str) -> None:
    """Write uint8 ``image`` to ``path`` in Pillow format ``fmt`` (see :func:`image_format`),
    atomically (temporary file, then os.replace)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    write_atomic(path, buf.getvalue())


@app.command()
def bilateral(
    input: Path = typer.Argument(..., help="Input image (PNG, JPEG, ...), grey or colour."),
    output: Path = typer.Argument(..., help="Output image; written atomically."),
    radius: int = typer.Option(5, help="Window radius in pixels (window 2·radius+1 across)."),
    sigma_color: float = typer.Option(25.0, help="Colour sigma on the 0..255 scale."),
    sigma_space: float = typer.Option(5.0, help="Spatial sigma in pixels."),
    kernel: str = typer.Option("bilateral", help="'bilateral' or 'dot' (attention's q·k/temp)."),
    temp: float = typer.Option(0.0, help="Temperature of the dot kernel; default sigma_color²."),
    window: str = typer.Option(
        "circle", help="'circle' (as OpenCV) or 'square' (as scikit-image)."
    ),
    figure: Path | None = typer.Option(
        None, help="Also write a figure: input, bilateral, dot, difference."
    ),
    max_pixels: int = typer.Option(
        MAX_PIXELS, help="Refuse larger images (width × height), before decoding them."
    ),
    max_radius: int = typer.Option(MAX_RADIUS, help="Refuse a larger --radius."),
) -> None:
    """Filter an image, one memory read per pixel: the bilateral filter is attention."""
    if kernel not in ("bilateral", "dot"):
        raise InputError(f"--kernel must be 'bilateral' or 'dot'; got {kernel!r}.")
    if window not in ("circle", "square"):
        raise InputError(f"--window must be 'circle' or 'square'; got {window!r}.")
    if radius < 0:
        raise InputError(f"--radius must be >= 0; got {radius}.")
    if max_pixels < 1 or max_radius < 0:
        raise InputError(
            f"--max-pixels must be >= 1 and --max-radius >= 0; got {max_pixels}, {max_radius}."
        )
    if radius > max_radius:
        raise InputError(
            f"--radius {radius} is more than the limit of {max_radius} (a window of about "
            f"{round(3.14159 * radius * radius):,} pixels per pixel: minutes and gigabytes). "
            "Hint: a radius of 2-3 sigma-space suffices; raise the limit with --max-radius."
        )
    if not sigma_color > 0 or not sigma_space > 0 or temp < 0:
        raise InputError(
            f"--sigma-color and --sigma-space must be > 0 (and --temp >= 0); got "
            f"{sigma_color}, {sigma_space}, {temp}."
        )
    fmt = image_format(output)  # fail before the work, not after
    check_output(output, "output")
    if figure is not None:
        check_output(figure, "figure")
    image = read_image(input, max_pixels)  # (H, W[, 3]) uint8
    t = temp or sigma_color**2
    out_b = (
        bilateral_filter(image, radius, sigma_color, sigma_space, window=window)
        if kernel == "bilateral" or figure
        else None
    )
    out_d = (
        dot_product_filter(image, radius, t, window=window) if kernel == "dot" or figure else None
    )
    write_image(out_b if kernel == "bilateral" else out_d, output, fmt)
    console.print(
        f"wrote {output} ({kernel} kernel, radius {radius}, shape {image.shape})", markup=False
    )
    if figure is not None:
        from assocmem.views.comparison import comparison_figure  # matplotlib: only when asked

        comparison_figure(
            image, out_b, out_d, figure, names=("input", "bilateral", f"dot (temp {t:g})")
        )
        console.print(f"wrote {figure}", markup=False)
