"""Numbers as people write them: MNIST digits at one height, side by side; and pages of them.

A person writes every digit of a number at about one height, so a flat 2 or 0 is wider than it
is tall and a 1 is a thin stroke: MNIST's 20-px box (the longer side) hides that, this does not.
Neighbours stand apart by an ordinary gap, or touch and overlap a little (`touching`). A page
holds 3-8 numbers on 1-4 lines, read top to bottom, left to right.

Two disjoint families of settings, so that what is tuned on one is reported on the other:

  validation  digit height 40-72 px; gaps 0.14-0.30 of it; touching: overlap 0-0.06 or
              0.14-0.20 of it (shallower and deeper than test's, so that what is chosen here
              has seen both sides of it); slant up to 0.12 either way; white or light grey
              paper; black pen; JPEG at quality 50-70 (more loss than test's): what is
              chosen here has seen JPEG and both slants, as test has.
              Digits from MNIST's validation split.
  test        digit height 28-40 or 72-110 px; gaps 0.06-0.14 or 0.30-0.60; touching: overlap
              0.06-0.14; slant 0.12-0.25 either way; cream or squared-white paper; blue or
              pencil-grey pen; JPEG at quality 70-92. Digits from MNIST's test split.

  training    every range above and beyond (heights 24-120 px, gaps 0.04-0.6, overlap 0-0.2,
              slant either way up to 0.3), MNIST's training digits, JPEG: what the reader's
              piece model (training/pieces.py) and line reader (training/line_reader.py) learn on.

A touching digit runs into its neighbour by the family's overlap, but by no more than half the
neighbour's ink width: deeper, a digit swallows a 1 whole and the image shows fewer digits than
its label. Each image's grain comes from a stream of its own, so a number written wider or
narrower leaves the images after it as they were.

Seeds (SEEDS) are the robustness suite's (20,261,129 for test, +10,000 for validation) plus 600
and up: training uses 0, 1, 2, ..., the suite's own conditions offsets under 400, desks 500.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from digitlab.data.glyphs import encode

FAMILIES = ("validation", "test")
SEEDS = {"test": 20_261_129 + 600, "validation": 20_271_129 + 600, "training": 0}


@dataclass(frozen=True)
class Family:
    heights: tuple[tuple[float, float], ...]  # digit height in px: one of these ranges
    gaps: tuple[tuple[float, float], ...]  # gap between neighbours, share of the height
    overlap: tuple[tuple[float, float], ...]  # touching: how far a digit runs into the previous one's ink
    slant: tuple[float, float]  # shear, |x shift| per unit of height
    mirrored: bool  # the slant leans either way, as often (else as drawn from `slant`)
    papers: tuple[tuple[float, float, float], ...]
    pens: tuple[tuple[float, float, float], ...]
    jpeg: tuple[int, int] | None  # JPEG's quality range; None: PNG


SETTINGS = {
    "validation": Family(
        ((40, 72),),
        ((0.14, 0.30),),
        ((0.0, 0.06), (0.14, 0.20)),
        (0.0, 0.12),
        True,
        ((0.97, 0.97, 0.97), (0.88, 0.88, 0.88)),
        ((0.05, 0.05, 0.05),),
        (50, 70),
    ),
    "test": Family(
        ((28, 40), (72, 110)),
        ((0.06, 0.14), (0.30, 0.60)),
        ((0.06, 0.14),),
        (0.12, 0.25),
        True,
        ((0.96, 0.93, 0.82), (0.98, 0.98, 0.99)),
        ((0.10, 0.14, 0.50), (0.35, 0.35, 0.37)),
        (70, 92),
    ),
    "training": Family(
        ((24, 40), (40, 72), (72, 120)),
        ((0.04, 0.14), (0.14, 0.30), (0.30, 0.60)),
        ((0.0, 0.2),),
        (-0.3, 0.3),
        False,
        ((0.97, 0.97, 0.97), (0.88, 0.88, 0.88), (0.96, 0.93, 0.82), (0.99, 0.99, 0.9)),
        ((0.05, 0.05, 0.05), (0.10, 0.14, 0.50), (0.35, 0.35, 0.37), (0.5, 0.1, 0.1)),
        (70, 92),
    ),
}


def _pick(rng: np.random.Generator, ranges: tuple[tuple[float, float], ...]) -> float:
    low, high = ranges[int(rng.integers(len(ranges)))]
    return float(rng.uniform(low, high))


def _glyph(digit28: np.ndarray, height: int, slant: float, boxed: bool = False) -> np.ndarray:
    """The digit's ink cropped and scaled to `height` px tall, its own width kept, sheared; `boxed`:
    scaled so that its longer side is `height` (MNIST's box: a wide digit comes out shorter)."""
    import cv2

    rows, cols = np.flatnonzero(digit28.max(1) > 0.1), np.flatnonzero(digit28.max(0) > 0.1)
    crop = digit28[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
    side = max(crop.shape) if boxed else crop.shape[0]
    width, height = max(2, round(crop.shape[1] * height / side)), max(2, round(crop.shape[0] * height / side))
    glyph = cv2.resize(crop, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    shift = abs(slant) * height
    matrix = np.float32([[1, -slant, shift if slant > 0 else 0], [0, 1, 0]])
    return cv2.warpAffine(glyph, matrix, (width + int(np.ceil(shift)), height), flags=cv2.INTER_LINEAR)


def _contact(left: np.ndarray, right: np.ndarray) -> int:
    """How far right of `left`'s start `right` can stand before their ink touches, row by row."""
    reach = [np.flatnonzero(r > 0.3) for r in left]
    start = [np.flatnonzero(r > 0.3) for r in right]
    gaps = [a[-1] + 1 - b[0] for a, b in zip(reach, start, strict=True) if a.size and b.size]
    return max(gaps) if gaps else left.shape[1]


def _width(ink: np.ndarray) -> int:
    """How many columns the ink spans."""
    cols = np.flatnonzero(ink.max(0) > 0.3)
    return int(cols[-1] - cols[0] + 1) if cols.size else 0


def write(
    digits: list[np.ndarray],
    rng: np.random.Generator,
    family: str,
    touching: bool = False,
    height: float | None = None,
    placed: list[tuple[int, int, np.ndarray]] | None = None,
    boxed: bool = False,
) -> np.ndarray:
    """A number's ink on its own strip (white on black, height x width floats in [0, 1]); its
    digits `height` px tall, or drawn from the family's heights. Where `placed` is given, each
    digit's (top, left, ink) on the strip is added to it. `boxed`: each digit in MNIST's box
    (_glyph), centred on the line, as MNIST's own digits set side by side are."""
    cfg = SETTINGS[family]
    height = int(_pick(rng, cfg.heights) if height is None else height)
    slant = float(rng.uniform(*cfg.slant)) * (1 if not cfg.mirrored or rng.random() < 0.5 else -1)
    glyphs = [_glyph(d, int(height * rng.uniform(0.92, 1.05)), slant, boxed) for d in digits]
    tall = max(g.shape[0] for g in glyphs)
    strip = np.zeros((tall + 4, sum(g.shape[1] for g in glyphs) + 4 * height), np.float32)
    x = 0
    previous = None
    for glyph in glyphs:
        # One baseline, or (boxed) one middle line; a little jitter.
        top = (tall - glyph.shape[0]) // (2 if boxed else 1) + int(rng.integers(0, 3))
        if previous is not None:
            ink, left = previous
            band = np.zeros((strip.shape[0], glyph.shape[1]), np.float32)
            band[top : top + glyph.shape[0]] = glyph
            if touching:
                # a single range drawn from directly, as before any family had two: the test and
                # training families' numbers stay the same
                depth = _pick(rng, cfg.overlap) if len(cfg.overlap) > 1 else rng.uniform(*cfg.overlap[0])
                # at most half the width of the ink it runs into (above); and never before the
                # strip's start, where a slice from the end would draw it nowhere
                x = max(0, left + _contact(ink, band) - max(1, min(round(depth * height), _width(ink) // 2)))
            else:
                x = left + _contact(ink, band) + max(1, round(_pick(rng, cfg.gaps) * height))
        region = strip[top : top + glyph.shape[0], x : x + glyph.shape[1]]
        np.maximum(region, glyph[:, : region.shape[1]], out=region)
        previous = (strip[:, x : x + glyph.shape[1]].copy(), x)
        if placed is not None:
            placed.append((top, x, glyph[:, : region.shape[1]]))
        x += glyph.shape[1]
    cols = np.flatnonzero(strip.max(0) > 0)
    return strip[:, : cols[-1] + 1]


def _paper(ink: np.ndarray, rng: np.random.Generator, family: str) -> bytes:
    """The ink on paper, photographed flat: the file's bytes."""
    import cv2

    cfg = SETTINGS[family]
    paper = np.array(cfg.papers[int(rng.integers(len(cfg.papers)))], np.float32)
    pen = np.array(cfg.pens[int(rng.integers(len(cfg.pens)))], np.float32)
    alpha = (ink * rng.uniform(0.75, 0.95))[..., None]
    page = paper * (1 - alpha) + pen * alpha
    page *= rng.uniform(0.9, 1.0) - 0.08 * np.linspace(0, 1, page.shape[1], dtype=np.float32)[None, :, None]
    page = cv2.GaussianBlur(page, (0, 0), rng.uniform(0.4, 0.9))
    # The grain from a stream of its own, one draw of the family's whatever the image's size: a
    # number written a little wider leaves every image after it as it was.
    grain = np.random.default_rng(int(rng.integers(2**63)))
    page += grain.normal(0, 0.015, page.shape).astype(np.float32)
    image = Image.fromarray((page.clip(0, 1) * 255).astype(np.uint8), "RGB")
    return encode(image, "JPEG", quality=int(rng.integers(*cfg.jpeg))) if cfg.jpeg else encode(image, "PNG")


def _margin(ink: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple]:
    """The ink with paper round it, and the padding (np.pad's) that put it there."""
    h = ink.shape[0]
    top, bottom, left, right = (int(rng.uniform(0.3, 0.8) * h) for _ in range(4))
    pads = ((top, bottom), (left, right))
    return np.pad(ink, pads), pads


def numbers(
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    family: str = "test",
    touching: bool = False,
    seed: int | None = None,
) -> tuple[list[bytes], list[str]]:
    """`n` images of one written number (2-5 digits) and the strings they show."""
    rng = np.random.default_rng(SEEDS[family] + (1 if touching else 0) if seed is None else seed)
    files, texts = [], []
    for _ in range(n):
        pick = rng.choice(len(labels), int(rng.integers(2, 6)), replace=False)
        ink = write([images[i].reshape(28, 28) for i in pick], rng, family, touching)
        files.append(_paper(_margin(ink, rng)[0], rng, family))
        texts.append("".join(str(int(labels[i])) for i in pick))
    return files, texts


def training(
    images: np.ndarray, labels: np.ndarray, n: int, seed: int = SEEDS["training"], boxed: float = 0.0
) -> list[tuple[bytes, np.ndarray, str]]:
    """`n` images of one number (1-5 digits, half of them touching) from the training family,
    each with whose ink each pixel is (0 for paper, k for the k-th digit, the darker where two
    overlap) and the number it shows; a share `boxed` of them with their digits in MNIST's box
    (write()), chosen from a stream of their own: with none, the images written before it."""
    rng, box = np.random.default_rng(seed), np.random.default_rng([seed, 1]).random(n) < boxed
    out = []
    for in_box in box:
        pick = rng.choice(len(labels), int(rng.integers(1, 6)), replace=False)
        placed: list[tuple[int, int, np.ndarray]] = []
        digits = [images[i].reshape(28, 28) for i in pick]
        ink = write(digits, rng, "training", rng.random() < 0.5, placed=placed, boxed=bool(in_box))
        darkest, owner = np.full(ink.shape, 0.2, np.float32), np.zeros(ink.shape, np.uint8)
        for k, (top, left, glyph) in enumerate(placed, 1):
            glyph = glyph[:, : ink.shape[1] - left]  # the strip ends where the last ink does
            at = (slice(top, top + glyph.shape[0]), slice(left, left + glyph.shape[1]))
            owner[at][glyph > darkest[at]] = k
            darkest[at] = np.maximum(darkest[at], glyph)
        ink, pads = _margin(ink, rng)
        text = "".join(str(int(labels[i])) for i in pick)
        out.append((_paper(ink, rng, "training"), np.pad(owner, pads), text))
    return out


def pages(
    images: np.ndarray, labels: np.ndarray, n: int, family: str = "test", seed: int | None = None
) -> tuple[list[bytes], list[list[str]]]:
    """`n` pages of 3-8 numbers (1-5 digits) on 1-4 lines, and the numbers in reading order."""
    rng = np.random.default_rng(SEEDS[family] + 2 if seed is None else seed)
    files, truths = [], []
    for _ in range(n):
        count = int(rng.integers(3, 9))
        rows = int(rng.integers(1, min(4, count) + 1))
        height = _pick(rng, SETTINGS[family].heights)  # one hand, one size of writing on a page
        per_row = np.array_split(np.arange(count), rows)
        strips, texts = [], []
        for row in per_row:
            inks = []
            for _ in row:
                pick = rng.choice(len(labels), int(rng.integers(1, 6)), replace=False)
                digits = [images[i].reshape(28, 28) for i in pick]
                inks.append(write(digits, rng, family, height=height * rng.uniform(0.9, 1.1)))
                texts.append("".join(str(int(labels[i])) for i in pick))
            tall = max(i.shape[0] for i in inks)
            parts = []
            for ink in inks:  # numbers apart by 1.5-3 digit heights, their baselines level
                parts += [
                    np.pad(ink, ((tall - ink.shape[0], 0), (0, 0))),
                    np.zeros((tall, int(rng.uniform(1.5, 3) * tall))),
                ]
            strips.append(np.concatenate(parts[:-1], axis=1))
        width = max(s.shape[1] for s in strips)
        lines = []
        for strip in strips:
            indent = int(rng.integers(0, width - strip.shape[1] + 1))
            lines += [
                np.pad(strip, ((0, 0), (indent, width - strip.shape[1] - indent))),
                np.zeros((int(rng.uniform(0.6, 1.5) * strip.shape[0]), width)),
            ]
        files.append(_paper(_margin(np.concatenate(lines[:-1]).astype(np.float32), rng)[0], rng, family))
        truths.append(texts)
    return files, truths
