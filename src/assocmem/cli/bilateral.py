"""``assocmem bilateral``: filter an image with the bilateral (or dot-product) memory read."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import typer

from assocmem.cli.app import app, console
from assocmem.errors import InputError
from assocmem.filters import bilateral as bilateral_filter
from assocmem.filters import comparison_figure, dot_product_filter


def read_image(path: Path) -> np.ndarray:
    """``path`` as uint8 ``(H, W)`` grey or ``(H, W, 3)`` RGB (alpha and palettes dropped)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(f"input image {str(path)!r} does not exist or is not a file.")
    try:
        with Image.open(path) as im:
            im = im.convert("L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
            return np.asarray(im).copy()  # (H, W) or (H, W, 3)
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(
            f"{str(path)!r} is not an image Pillow can read ({e}). Give a PNG, JPEG or TIFF file."
        ) from None


def image_format(path: Path) -> str:
    """Pillow's format name for ``path``'s extension, or InputError."""
    from PIL import Image

    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"cannot tell the image format from {str(path)!r}; end it in .png, .jpg or .tif."
        )
    return fmt


def write_image(image: np.ndarray, path: Path) -> None:
    """Write uint8 ``image`` to ``path`` atomically (temporary file, then os.replace)."""
    from PIL import Image

    fmt = image_format(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"output folder {str(folder)!r} does not exist.")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        Image.fromarray(image).save(tmp, format=fmt)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
) -> None:
    """Filter an image, one memory read per pixel: the bilateral filter is attention."""
    if kernel not in ("bilateral", "dot"):
        raise InputError(f"--kernel must be 'bilateral' or 'dot'; got {kernel!r}.")
    if window not in ("circle", "square"):
        raise InputError(f"--window must be 'circle' or 'square'; got {window!r}.")
    if radius < 0:
        raise InputError(f"--radius must be >= 0; got {radius}.")
    if not sigma_color > 0 or not sigma_space > 0 or temp < 0:
        raise InputError(
            f"--sigma-color and --sigma-space must be > 0 (and --temp >= 0); got "
            f"{sigma_color}, {sigma_space}, {temp}."
        )
    image_format(output)  # fail before the work, not after
    image = read_image(input)  # (H, W[, 3]) uint8
    t = temp or sigma_color**2
    out_b = bilateral_filter(image, radius, sigma_color, sigma_space, window=window)
    out_d = (
        dot_product_filter(image, radius, t, window=window) if kernel == "dot" or figure else None
    )
    write_image(out_b if kernel == "bilateral" else out_d, output)
    console.print(
        f"wrote {output} ({kernel} kernel, radius {radius}, shape {image.shape})", markup=False
    )
    if figure is not None:
        comparison_figure(
            image, out_b, out_d, figure, names=("input", "bilateral", f"dot (temp {t:g})")
        )
        console.print(f"wrote {figure}", markup=False)
