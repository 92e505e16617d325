"""Image files and bytes -> greyscale in [0, 1], decoded once and strictly: only the formats
people send digits in, a pixel limit read from the header before any pixel is decoded, phone
photos turned upright by their EXIF orientation, and large images reduced while decoding (a
JPEG by its decoder's DCT scaling, anything else box-averaged while still 8-bit).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The plugins of FORMATS, registered before the first open: Image.open(formats=...) that meets one
# not yet registered imports all of Pillow's ~40 plugins (30 ms in every reading process).
from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin  # noqa: F401  # isort: skip

from digitlab.errors import DigitlabError

# Only the formats people send digits in, enforced by the decoder itself: Pillow opens 40-odd
# more (EPS runs Ghostscript, others are rarely fuzzed), and a polyglot file whose header passes
# one check could otherwise be decoded by another parser.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
MAX_PIXELS = 40_000_000  # larger images are refused: decompression bombs, not digits
MIN_CONTRAST = 0.15  # ink must differ from paper by this much (of the 0-1 range)
WORK_SIZE = 512  # preprocessing reads at most this longer side: plenty for a 20 px digit
BAND = 256  # rows of a large image converted at once: a 16 Mpx palette image as LA is 64 MB whole


def read_image(source: str | Path | bytes) -> np.ndarray:
    """Any PIL-readable image (PNG, JPEG, BMP, GIF, WebP, ...) as float greyscale in [0, 1].

    Transparent images (canvas exports) take their ink from the alpha channel when the colour
    alone carries none; phone photos are turned upright by their EXIF orientation."""
    return decode(source)[0]


def decode(source: str | Path | bytes | np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as greyscale (read_image), and the upright image's (height, width) before any reduction."""
    if isinstance(source, np.ndarray):  # already greyscale
        return source, source.shape
    name = "image" if isinstance(source, bytes) else str(source)
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=FORMATS)
        if image.width * image.height == 0:
            raise DigitlabError(f"{name} is empty (0 pixels)")
        # Checked from the header, before any pixel is decoded; PIL's own limit (a process-wide
        # setting that is the caller's, not ours) is far higher.
        if image.width * image.height > MAX_PIXELS:
            raise Image.DecompressionBombError(name)
        image.seek(0)  # first frame of an animation
        upright = (image.width, image.height) if _turned(image) else (image.height, image.width)
        _draft(image)
        if image.getexif().get(0x0112, 1) != 1:  # turned or mirrored (exif_transpose copies even when not)
            image = ImageOps.exif_transpose(image)
        image.load()
        image = _reduce(image)
    except Image.DecompressionBombError:
        raise DigitlabError(f"{name} is too large (over {MAX_PIXELS:,} pixels); send a smaller image") from None
    except FileNotFoundError:
        raise DigitlabError(f"{name}: no such file") from None
    except UnidentifiedImageError:  # its message names a Python object, not the problem
        raise DigitlabError(f"{name} is not a readable image: send PNG, JPEG, BMP, GIF, WebP or TIFF") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DigitlabError(f"{name} is not a readable image ({type(e).__name__}: {e})") from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        rgba /= 255  # in place: a second float copy of a 4-band image is the largest thing decoding makes
        grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        alpha, opaque = rgba[..., 3], grey[rgba[..., 3] > 0.5]
        # Faint ink (under half opaque everywhere) has no opaque colour to look at: alpha is the ink.
        if np.ptp(alpha) > MIN_CONTRAST and (opaque.size == 0 or np.ptp(opaque) < MIN_CONTRAST):
            return 1.0 - alpha, upright  # strokes on a transparent canvas: opaque means ink (dark on light)
        return grey * alpha + (1.0 - alpha), upright  # otherwise composite over white paper
    if image.mode.startswith("I"):  # 16- or 32-bit greyscale: "L" would clip everything over 255 to white
        values = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if values.max() > 255 or image.mode.startswith("I;16") else 255.0
        return np.clip(values / peak, 0, 1), upright
    return np.asarray(image.convert("L"), dtype=np.float32) / 255, upright


def _turned(image: Image.Image) -> bool:
    """Whether the image's EXIF orientation turns it a quarter (width and height swap upright)."""
    return image.getexif().get(0x0112) in (5, 6, 7, 8)


def _draft(image: Image.Image) -> None:
    """A JPEG decoded by the decoder itself as what is read: its brightness alone (the luma it
    stores, not colour made and weighed back into grey: a third faster), and a large one at a
    half, quarter or eighth of its size (its DCT scaling), where _reduce would shrink it anyway
    to about twice the work size: a 12 MP photo decodes in a fraction of the time."""
    if image.format not in ("JPEG", "MPO"):  # MPO: a phone's JPEG with its preview images after it
        return
    factor = max(max(image.size) // (2 * WORK_SIZE), 1)
    mode = "L" if image.mode in ("L", "RGB") else image.mode
    if factor >= 2 or mode != image.mode:  # a side never drafted to 0 px (a 1x2048 strip)
        image.draft(mode, (max(image.width // factor, 1), max(image.height // factor, 1)))


def _reduce(image: Image.Image) -> Image.Image:
    """A large image box-averaged to about twice the work size while it is still 8-bit: a 36 MP
    canvas read as float RGBA would take over a gigabyte, for a digit that needs 20 px."""
    factor = max(image.size) // (2 * WORK_SIZE)
    if factor < 2:
        return image
    # Reduced a band at a time, each band a whole number of the reduction's boxes, so that the
    # result is the whole image's, pixel for pixel: reducing an image with alpha copies it whole
    # first (premultiplied), and palette, bilevel, CMYK or 16-bit images are converted to what we
    # read (grey, with its alpha where there is one), LA and RGBA at 4 bytes a pixel.
    mode = image.mode
    if mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        transparent = "A" in image.getbands() or "transparency" in image.info
        mode = "I" if image.mode.startswith("I;16") else "LA" if transparent else "L"
    width, height = image.size
    rows = max(factor, BAND // factor * factor)
    out = Image.new(mode, (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(top + rows, height)))
        out.paste((band if band.mode == mode else band.convert(mode)).reduce(factor), (0, top // factor))
    return out
