"""Images that are not digits: to teach a model to decline them, and to measure how often it does.

Outlier exposure (Hendrycks et al., 2019): a classifier shown non-digits in training, and taught
to give them a flat prediction, learns to decline unseen ones too. Whether it generalised or only
memorised is measured on non-digits from *other* sources, so the two sides share no font, no
stroke generator and no random stream:

              training(n, seed)                        evaluation(kind, n, seed)
  typed       DejaVu Sans, Serif, Sans Mono            STIX General, Computer Modern (cmr, cmss, cmtt, cmb, cmti)
  drawn       skeletons of DejaVu renders, warped      hand-authored pen strokes (strokes.py):
              and re-inked with a round pen            letters, symbols and shapes
  shapes      random polygons, stars, zigzags,         (the drawn shapes above)
              grids, loops
  scribbles   random walks, chains of Bezier curves    sums of sinusoids (Lissajous figures, harmonographs)
  texture     thresholded smooth noise, wood grain,    checkerboards, dot grids, stripes, cross-hatching
              fibres, hatching
  -                                                    blank paper, pixel noise

Both sides draw with the same simulated hand, pens and paper (strokes.hand, _on_paper): what differs
is what is drawn. Neither side has a glyph a person would read as a digit at MNIST's 28x28
(CONFUSABLE): a model that declined those would be wrong to. Training images are arrays of about
112x112; evaluation images are files, PNG (canvas drawings, noise) or JPEG (print, paper, texture).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from digitlab.data import strokes
from digitlab.data.glyphs import (
    LETTERS,
    SOLID,
    SYMBOLS,
    decode,
    encode,
    glyph,
    pick_glyph,
)

TRAIN_KINDS = ("typed", "drawn", "shapes", "scribbles", "texture")
TRAIN_WEIGHTS = (0.25, 0.3, 0.2, 0.15, 0.1)  # mostly letter-like ink: the negatives nearest to digits
EVAL_KINDS = ("blank", "noise", "texture", "typed letters", "typed symbols", "drawn letters", "drawn symbols",
              "drawn shapes", "scribbles")  # fmt: skip
TRAIN_SIZE = 112  # training images (drawings rendered at 224 and halved): 50 KB as float32, plenty for 20 px
CANVAS = 280  # the web page's canvas
Share = tuple[float, float]
GLYPH, SCRIBBLE = (0.4, 0.85), (0.6, 0.95)  # a drawing's longer side, as a share of the canvas: scribbles fill it
_TRAIN, _EVAL = 0x7A1, 0xE7A  # mixed into every seed: the two sides never share a random stream


def _typed(role: str, charset: str, rng: np.random.Generator, sizes: tuple[int, int]) -> bytes:
    """One character printed on paper and photographed (as synth.printed does with digits)."""
    font, char = pick_glyph(role, charset, rng)
    size = int(rng.integers(*sizes))
    ink = glyph(font, char, 8 * max(2, round(size * rng.uniform(0.4, 0.8) / 8))) / 255.0  # few sizes: fonts cached
    if max(ink.shape) > 0.9 * size:  # wide glyphs (@, W, ♠) must fit
        shape = tuple(max(1, int(d * 0.9 * size / max(ink.shape))) for d in ink.shape)
        ink = np.asarray(Image.fromarray(ink.astype(np.float32), "F").resize(shape[::-1], Image.Resampling.BOX))
    paper, shade = rng.uniform(0.84, 1.0), rng.uniform(0.0, 0.25)
    page = np.full((size, size), paper, np.float32)
    top, left = (int(rng.integers(0, size - d + 1)) for d in ink.shape)
    page[top : top + ink.shape[0], left : left + ink.shape[1]] -= (paper - shade) * ink
    image = Image.fromarray((page * 255).astype(np.uint8)).rotate(
        rng.uniform(-6, 6), fillcolor=int(paper * 255), resample=Image.Resampling.BILINEAR
    )
    return encode(image, "JPEG", quality=int(rng.integers(70, 96)))


def _place(drawing: list[np.ndarray], rng: np.random.Generator, size: int, margin: float, share: Share) -> list:
    """Tilt (up to 15 degrees), shear and stretch the drawing, scale its longer side to a random `share` of the
    canvas, put it anywhere it fits."""
    angle, shear, aspect = np.radians(rng.uniform(-15, 15)), rng.uniform(-0.15, 0.15), rng.uniform(0.85, 1.15)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = rotation @ np.array([[1, shear], [0, 1]]) @ np.diag([aspect, 1 / aspect])
    moved = [s @ matrix.T for s in drawing]
    points = np.concatenate(moved)
    scale = rng.uniform(*share) * (size - 2 * margin) / max(np.ptp(points, 0).max(), 1e-6)
    low, high = points.min(0) * scale, points.max(0) * scale
    offset = rng.uniform(margin - low, np.maximum(margin - low, size - margin - high))
    return [s * scale + offset for s in moved]


def _pen_width(rng: np.random.Generator, size: int) -> float:
    """A fine pen (6-10 px) or a marker (14-24 px) on the 280 px canvas, scaled to `size`."""
    return (rng.uniform(6, 10) if rng.random() < 0.5 else rng.uniform(14, 24)) * size / CANVAS


def _ink(drawing: list[np.ndarray], size: int, width: float, supersample: int = 2) -> np.ndarray:
    """Strokes in a round pen (the canvas's round caps and joins), anti-aliased: ink coverage in [0, 1]."""
    image = Image.new("L", (size * supersample, size * supersample))
    draw, w = ImageDraw.Draw(image), max(1, round(width * supersample))
    for stroke in drawing:
        points = [tuple(p) for p in (stroke * supersample).tolist()]
        if len(points) > 1:
            draw.line(points, fill=255, width=w, joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)
    return np.asarray(image.reduce(supersample), np.float32) / 255


def _halve(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return image[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))


def _on_paper(ink: np.ndarray, rng: np.random.Generator, canvas: float = 0.5) -> np.ndarray:
    """Dark ink on white (a canvas) or on unevenly lit, noisy paper (a photo): greyscale in [0, 1]."""
    if rng.random() < canvas:
        return (1.0 - ink).astype(np.float32)
    yy, xx = np.mgrid[0 : ink.shape[0], 0 : ink.shape[1]] / max(ink.shape)
    angle = rng.uniform(0, 2 * np.pi)
    light = rng.uniform(0.75, 0.95) + rng.uniform(0, 0.12) * (np.cos(angle) * xx + np.sin(angle) * yy - 0.5)
    page = light * (1 - rng.uniform(0.5, 0.9) * ink)
    page = ndimage.gaussian_filter(page, rng.uniform(0.3, 1.2)) + rng.normal(0, rng.uniform(0.003, 0.02), ink.shape)
    return page.clip(0, 1).astype(np.float32)


def _canvas_png(ink: np.ndarray, rng: np.random.Generator) -> bytes:
    if rng.random() < 0.25:  # exported from a transparent canvas: the ink lives in the alpha channel
        rgba = np.zeros((*ink.shape, 4), np.uint8)
        rgba[..., 3] = (ink * 255).round()
        return encode(Image.fromarray(rgba, "RGBA"), "PNG")
    return encode(Image.fromarray(((1 - ink) * 255).round().astype(np.uint8)), "PNG")


def _photo_jpeg(ink: np.ndarray, rng: np.random.Generator) -> bytes:
    page = _on_paper(ink, rng, canvas=0.2)
    return encode(Image.fromarray((page * 255).astype(np.uint8)), "JPEG", quality=int(rng.integers(60, 95)))


# --- training sources ---------------------------------------------------------------------------------------


def _skeleton(font: Path, char: str) -> np.ndarray:
    """The glyph's medial line as (x, y) points, filled in between neighbours so scaling it up leaves no gaps."""
    from skimage.morphology import skeletonize

    bone = skeletonize(glyph(font, char, 112) > 127)
    padded = np.pad(bone, 1)
    points = [np.argwhere(bone)[:, ::-1].astype(float)]
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        y, x = np.nonzero(bone & padded[1 + dy : 1 + dy + bone.shape[0], 1 + dx : 1 + dx + bone.shape[1]])
        points += [np.stack([x + t * dx, y + t * dy], 1) for t in (0.25, 0.5, 0.75)]
    points = np.concatenate(points)
    return points / max(np.ptp(points, 0).max(), 1.0)


def _train_drawn(rng: np.random.Generator) -> np.ndarray:
    size = 2 * TRAIN_SIZE
    points = _skeleton(*pick_glyph("training", "".join(c for c in LETTERS + SYMBOLS if c not in SOLID), rng))
    points = strokes.wobble(strokes.wobble(points, rng, 0.04, 1.5), rng, 0.005, 0.2)
    width = _pen_width(rng, size)
    (points,) = _place([points], rng, size, width, GLYPH)
    bone = np.zeros((size, size), bool)
    x, y = np.clip(np.round(points).astype(int), 0, size - 1).T
    bone[y, x] = True
    ink = np.clip(width / 2 + 0.5 - ndimage.distance_transform_edt(~bone), 0, 1)  # a round pen along the bone
    return _halve(_on_paper(ink, rng))


def _train_texture(rng: np.random.Generator) -> np.ndarray:
    size, pick = TRAIN_SIZE, int(rng.integers(4))
    if pick == 3:  # hatching: short parallel strokes, as when shading
        angle, n = rng.uniform(0, np.pi), int(rng.integers(6, 16))
        d = np.array([np.cos(angle), np.sin(angle)])
        starts, lengths = rng.uniform(0.1, 0.9, (n, 1, 2)) * size, rng.uniform(0.15, 0.5, (n, 1, 1)) * size
        return _on_paper(_ink(list(np.concatenate([starts, starts + lengths * d], 1)), size, rng.uniform(1, 4)), rng)
    field = rng.normal(size=(size, size))
    if pick == 0:  # blobs
        field = ndimage.gaussian_filter(field, rng.uniform(2, 6))
    elif pick == 1:  # wood grain: rings of a smoothly disturbed distance
        yy, xx = np.mgrid[0:size, 0:size] + rng.uniform(-2 * size, 2 * size, (2, 1, 1))
        field = np.sin(2 * np.pi * (np.hypot(yy, xx) + 60 * ndimage.gaussian_filter(field, 8)) / rng.uniform(6, 14))
    else:  # fibres: long thin streaks
        field = ndimage.gaussian_filter(field, (0.8, 10))
        field = ndimage.rotate(field, rng.uniform(0, 180), reshape=False, mode="wrap")
    cut = np.quantile(field, rng.uniform(0.7, 0.92))
    return _on_paper(np.clip((field - cut) / (0.3 * field.std()), 0, 1), rng)


def _drawing(
    make: Callable[[np.random.Generator], list], rng: np.random.Generator, size: int, share: Share
) -> np.ndarray:
    """A drawing from `make`, drawn by hand with a random pen."""
    width = _pen_width(rng, size)
    return _ink(_place(strokes.hand(make(rng), rng), rng, size, width, share), size, width)


_TRAINING: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "typed": lambda rng: decode(_typed("training", LETTERS + SYMBOLS, rng, (56, 140))),
    "drawn": _train_drawn,
    "shapes": lambda rng: _on_paper(_drawing(strokes.random_shape, rng, TRAIN_SIZE, GLYPH), rng),
    "scribbles": lambda rng: _on_paper(_drawing(strokes.random_scribble, rng, TRAIN_SIZE, SCRIBBLE), rng),
    "texture": _train_texture,
}


def training(n: int, seed: int) -> Iterator[np.ndarray]:
    """n greyscale images (H, W) float32 in [0, 1], dark ink on light paper (what a user uploads,
    before preprocess.prepare), mixed over TRAIN_KINDS, from the TRAINING sources only. One at a
    time: tens of thousands of them would hold gigabytes at once."""
    rng = np.random.default_rng([seed, _TRAIN])
    # The kind is drawn with each image, so that image i depends on the seed and i alone, not on n.
    for _ in range(n):
        yield _TRAINING[TRAIN_KINDS[rng.choice(len(TRAIN_KINDS), p=TRAIN_WEIGHTS)]](rng)


# --- evaluation sources -------------------------------------------------------------------------------------


def _eval_texture(rng: np.random.Generator) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(160, 321, 2))
    angle, period = rng.uniform(0, np.pi), rng.uniform(10, 40)
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    u, v = (xx * np.cos(angle) + yy * np.sin(angle)) / period, (yy * np.cos(angle) - xx * np.sin(angle)) / period
    pick = int(rng.integers(4))
    if pick == 0:  # checkerboard
        return ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    if pick == 1:  # dot grid
        return np.clip(rng.uniform(0.15, 0.35) * period - period * np.hypot(u - np.round(u), v - np.round(v)), 0, 1)
    duty = rng.uniform(0.1, 0.5)
    stripes = np.clip((duty / 2 - np.abs(u - np.round(u))) * period, 0, 1)
    if pick == 2:  # stripes
        return stripes
    turn = np.radians(rng.uniform(45, 90))  # cross-hatching, as in a woven fabric
    across = np.cos(turn) * u + np.sin(turn) * v
    return np.maximum(stripes, np.clip((duty / 2 - np.abs(across - np.round(across))) * period, 0, 1))


def _eval_noise(rng: np.random.Generator) -> bytes:
    shape = tuple(int(v) for v in rng.integers(64, 301, 2))
    uniform = rng.random() < 0.5
    noise = rng.random(shape) if uniform else rng.normal(rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.35), shape)
    if rng.random() < 0.5:  # smoothed: blotches rather than pixels
        noise = ndimage.gaussian_filter(noise, rng.uniform(0.7, 2.0))
        noise = (noise - noise.mean()) / (noise.std() + 1e-6) * rng.uniform(0.1, 0.3) + 0.5
    return encode(Image.fromarray((noise.clip(0, 1) * 255).astype(np.uint8)), "PNG")


def _eval_blank(rng: np.random.Generator) -> bytes:
    """Paper with nothing on it: a shade, a faint gradient of light, a little sensor noise."""
    shape = tuple(int(v) for v in rng.integers(120, 401, 2))
    return _photo_jpeg(np.zeros(shape, np.float32), rng)


def _drawn(table: dict[str, list], rng: np.random.Generator) -> bytes:
    names = sorted(table)
    drawing = table[names[int(rng.integers(len(names)))]]
    return _canvas_png(_drawing(lambda _: drawing, rng, CANVAS, GLYPH), rng)


_EVALUATION: dict[str, Callable[[np.random.Generator], bytes]] = {
    "blank": _eval_blank,
    "noise": _eval_noise,
    "texture": lambda rng: _photo_jpeg(_eval_texture(rng), rng),
    "typed letters": lambda rng: _typed("evaluation", LETTERS, rng, (80, 200)),
    "typed symbols": lambda rng: _typed("evaluation", SYMBOLS, rng, (80, 200)),
    "drawn letters": lambda rng: _drawn(strokes.LETTERS, rng),
    "drawn symbols": lambda rng: _drawn(strokes.SYMBOLS, rng),
    "drawn shapes": lambda rng: _drawn(strokes.SHAPES, rng),
    "scribbles": lambda rng: _canvas_png(_drawing(strokes.sinusoid_scribble, rng, CANVAS, SCRIBBLE), rng),
}


def evaluation(kind: str, n: int, seed: int) -> list[bytes]:
    """n encoded images (PNG for canvas-like drawings, JPEG for typed/photo-like) of one EVAL_KINDS kind,
    from the EVALUATION sources only: exactly what a user would upload."""
    if kind not in _EVALUATION:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(EVAL_KINDS)}")
    rng = np.random.default_rng([seed, _EVAL, EVAL_KINDS.index(kind)])
    return [_EVALUATION[kind](rng) for _ in range(n)]
