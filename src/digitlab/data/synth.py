"""Synthetic but realistic inputs, to measure how a model copes with real images.

Each kind renders an MNIST digit (or a typeset one) the way it reaches digitlab in use, from a
seed so every figure can be reproduced:
  photo         dark ink on unevenly lit, textured paper: random size, place and small rotation,
                blur, sensor noise, JPEG compression (a phone snapshot)
  canvas thin   a fine pen on a white 280x280 canvas (PNG), as on the draw-a-digit page
  canvas thick  a fat marker on the same canvas
  scan N px     the digit shrunk to N px, enlarged 4x for the scanner's file: a small digit on a
                low-resolution scan (N = 8, 12, 16)
  printed       a digit typeset in a font on white paper, JPEG; the fonts are the suite's own
                (glyphs.EVAL_FONTS), none of which training sees
Each image is returned as encoded file bytes, exactly what a user would upload.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

from digitlab.data.glyphs import encode
from digitlab.errors import DigitlabError

KINDS = ("photo", "canvas thin", "canvas thick", "scan 8 px", "scan 12 px", "scan 16 px", "printed")
# Dilations of a 10x digit (iterations from, to): ~6-10 px and ~18-28 px wide at 280 px. The thin
# pen is also eroded half the time (erode), finer than any MNIST stroke.
PENS = {"canvas thin": (1, 2), "canvas thick": (4, 9)}
ERODE = (2, 5)


def fonts() -> list[Path]:
    from digitlab.data.glyphs import fonts as font_files

    return list(font_files("evaluation"))


def photo(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """`digit`: an MNIST image, (28, 28) floats in [0, 1], white on black."""
    size = int(rng.integers(240, 480))
    canvas = np.zeros((size, size), np.float32)
    scale = rng.uniform(0.35, 0.7) * size / 28
    big = ndimage.zoom(digit, scale, order=3).clip(0, 1)
    big = ndimage.rotate(big, rng.uniform(-12, 12), reshape=True, order=1).clip(0, 1)
    top = int(rng.integers(0, max(1, size - big.shape[0])))
    left = int(rng.integers(0, max(1, size - big.shape[1])))
    h, w = min(big.shape[0], size - top), min(big.shape[1], size - left)
    canvas[top : top + h, left : left + w] = big[:h, :w]
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    light = 0.78 + 0.15 * (np.cos(angle) * xx + np.sin(angle) * yy) - 0.12 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    texture = ndimage.gaussian_filter(rng.normal(0, 0.05, (size, size)), 2)
    ink_darkness = rng.uniform(0.55, 0.8)
    page = (light + texture) * (1 - ink_darkness * canvas)
    page = ndimage.gaussian_filter(page, rng.uniform(0.5, 1.6)) + rng.normal(0, 0.02, page.shape)
    image = Image.fromarray((page.clip(0, 1) * 255).astype(np.uint8))
    return encode(image, "JPEG", quality=int(rng.integers(55, 90)))


def canvas(digit: np.ndarray, rng: np.random.Generator, pen: tuple[int, int] = PENS["canvas thick"]) -> bytes:
    big = ndimage.zoom(digit, 10, order=1) > 0.5
    big = ndimage.binary_dilation(big, iterations=int(rng.integers(*pen)))  # >= 1: 0 would grow until nothing changes
    if pen == PENS["canvas thin"] and rng.random() < 0.5:  # the finest pens draw thinner than MNIST's scans
        big = ndimage.binary_erosion(big, iterations=int(rng.integers(*ERODE)))
    big = ndimage.shift(big, rng.integers(-40, 41, size=2), order=0, cval=False)  # off the edge is gone, as on a canvas
    image = Image.fromarray(np.where(big, 0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)
    return encode(image, "PNG")


def scan(digit: np.ndarray, rng: np.random.Generator, size: int) -> bytes:
    """The digit at `size` px on a small scanned patch of paper, enlarged 4x (nearest neighbour,
    as a viewer shows a tiny scan), with the scanner's grey paper and noise."""
    small = np.asarray(Image.fromarray((digit * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BOX))
    patch = np.zeros((size + 8, size + 8), np.float32)
    top, left = rng.integers(0, 9, size=2)
    patch[top : top + size, left : left + size] = small / 255
    paper = rng.uniform(0.8, 0.97) - rng.uniform(0.5, 0.8) * patch + rng.normal(0, 0.02, patch.shape)
    image = Image.fromarray((paper.clip(0, 1) * 255).astype(np.uint8))
    return encode(image.resize((4 * image.width, 4 * image.height), Image.Resampling.NEAREST), "PNG")


def number(digits: list[np.ndarray], rng: np.random.Generator) -> bytes:
    """MNIST digits written side by side on paper, 2-8 px apart at MNIST's scale, 3x larger."""
    crops = []
    for digit in digits:
        cols = np.flatnonzero(digit.max(0) > 0.1)
        crops.append(digit[:, cols[0] : cols[-1] + 1] if cols.size else digit)
    parts = [np.zeros((28, int(rng.integers(6, 12))), np.float32)]
    for crop in crops:
        parts += [crop, np.zeros((28, int(rng.integers(2, 9))), np.float32)]
    parts[-1] = np.zeros((28, int(rng.integers(6, 12))), np.float32)
    line = ndimage.zoom(np.pad(np.concatenate(parts, axis=1), ((6, 6), (0, 0))), 3, order=1).clip(0, 1)
    paper = rng.uniform(0.85, 0.98) - rng.uniform(0.6, 0.85) * line + rng.normal(0, 0.02, line.shape)
    return encode(Image.fromarray((paper.clip(0, 1) * 255).astype(np.uint8)), "PNG")


def printed(label: int, rng: np.random.Generator, font_files: list[Path]) -> bytes:
    size = int(rng.integers(80, 200))
    image = Image.new("L", (size, size), color=int(rng.integers(215, 256)))
    font = ImageFont.truetype(str(font_files[int(rng.integers(len(font_files)))]), int(size * rng.uniform(0.4, 0.8)))
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((0, 0), str(label), font=font)
    x = rng.uniform(0, max(1, size - (box[2] - box[0]))) - box[0]
    y = rng.uniform(0, max(1, size - (box[3] - box[1]))) - box[1]
    draw.text((x, y), str(label), fill=int(rng.integers(0, 60)), font=font)
    image = image.rotate(rng.uniform(-6, 6), fillcolor=235, resample=Image.Resampling.BILINEAR)
    return encode(image, "JPEG", quality=int(rng.integers(70, 95)))


def choose(size: int, n: int, seed: int) -> tuple[np.random.Generator, np.ndarray]:
    """The `n` of `size` digits that render() draws from with `seed`, and the generator it goes on with."""
    rng = np.random.default_rng(seed)
    return rng, rng.choice(size, min(n, size), replace=False)


def render(kind: str, images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    """`n` encoded images of `kind` and their labels, from MNIST `images` (N, 28, 28[, 1])."""
    rng, pick = choose(len(labels), n, seed)
    digits = [images[i].reshape(28, 28) for i in pick]
    if kind == "printed":
        font_files = fonts()
        if not font_files:
            raise DigitlabError("matplotlib's fonts (STIX, Computer Modern) are missing: reinstall matplotlib")
        return [printed(int(labels[i]), rng, font_files) for i in pick], labels[pick]
    if kind == "photo":
        return [photo(d, rng) for d in digits], labels[pick]
    if kind in PENS:
        return [canvas(d, rng, PENS[kind]) for d in digits], labels[pick]
    if kind.startswith("scan "):
        size = int(kind.split()[1])
        return [scan(d, rng, size) for d in digits], labels[pick]
    raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")


def numbers(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0) -> tuple[list[bytes], list[str]]:
    """`n` written numbers of 2-5 digits from MNIST `images`, and the strings they show."""
    rng = np.random.default_rng(seed)
    out, texts = [], []
    for _ in range(n):
        pick = rng.choice(len(labels), int(rng.integers(2, 6)), replace=False)
        out.append(number([images[i].reshape(28, 28) for i in pick], rng))
        texts.append("".join(str(int(labels[i])) for i in pick))
    return out, texts
