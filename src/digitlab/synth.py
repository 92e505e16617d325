"""Synthetic but realistic inputs, to measure how a model copes with real images.

Three kinds, each rendered from a seed so every figure can be reproduced:
  photo    an MNIST test digit as dark ink on unevenly lit, textured paper: random size, place
           and small rotation, blur, sensor noise, JPEG compression (a phone snapshot)
  canvas   an MNIST test digit as a thick black marker stroke on a white 280x280 canvas (PNG)
  printed  a digit typeset in a font installed on the machine, on white paper, JPEG
Each image is returned as encoded file bytes, exactly what a user would upload.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

KINDS = ("photo", "canvas", "printed")
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts")


def fonts() -> list[Path]:
    found = sorted(p for d in FONT_DIRS if Path(d).is_dir() for p in Path(d).rglob("*.[ot]tf"))
    # Symbol and dingbat fonts have no digits worth the name.
    return [p for p in found if not any(s in p.name.lower() for s in ("symbol", "dingbat", "emoji", "math"))]


def _encode(image: Image.Image, fmt: str, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


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
    return _encode(image, "JPEG", quality=int(rng.integers(55, 90)))


def canvas(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    big = ndimage.zoom(digit, 10, order=1) > 0.5
    big = ndimage.binary_dilation(big, iterations=int(rng.integers(2, 6)))  # a fat marker
    big = ndimage.shift(big, rng.integers(-40, 41, size=2), order=0, cval=False)  # off the edge is gone, as on a canvas
    image = Image.fromarray(np.where(big, 0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)
    return _encode(image, "PNG")


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
    return _encode(image, "JPEG", quality=int(rng.integers(70, 95)))


def render(kind: str, images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    """`n` encoded images of `kind` and their labels, from MNIST `images` (N, 28, 28[, 1])."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(labels), n, replace=False)
    if kind == "printed":
        font_files = fonts()
        if not font_files:
            raise RuntimeError("no fonts installed to render printed digits")
        return [printed(int(labels[i]), rng, font_files) for i in pick], labels[pick]
    draw = photo if kind == "photo" else canvas
    return [draw(images[i].reshape(28, 28), rng) for i in pick], labels[pick]
