"""Phone photos of a sheet lying on a desk, with one MNIST digit written on it.

The desk (darker, textured) shows on one to four sides; the sheet is a little rotated, seen in
mild perspective, lit unevenly, sometimes shadowed; the digit is written in dark ink at a size
a person writes one digit on that sheet; the photo is blurred, noisy and JPEG-compressed.

Two disjoint families of settings, so that what is tuned on one is reported on the other:

  validation  desks: light oak, dark laminate, denim; sheets: white printer paper, ruled paper
              (blue lines, red margin); digit 18-50% of the sheet's shorter side; sheet 30-90%
              of the frame, rotated up to 8 degrees, corners moved up to 4% (perspective);
              frames 400-1000 px; JPEG quality 60-92. Digits from MNIST's validation split.
  test        desks: dark walnut, granite, cork, brushed metal, felt; sheets: cream paper,
              yellow sticky note, squared paper (grey or blue grid); digit 15-55% of the shorter
              side; sheet 30-90% of the frame, rotated up to 10 degrees, corners moved up to 5%;
              frames 480-1200 px; JPEG quality 55-90. Digits from MNIST's test split.

No texture, paper kind or colour is shared between the two. Seeds (SEEDS) are the robustness
suite's (robustness.suite_seed: SEED for test, +10,000 for validation) plus 500: training uses
0, 1, 2, ... and the suite's own conditions offsets under 400, so no figure reuses their draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from digitlab.data.glyphs import encode

FAMILIES = ("validation", "test")
SEEDS = {"test": 20_261_129 + 500, "validation": 20_271_129 + 500}


@dataclass(frozen=True)
class Family:
    desks: tuple[str, ...]
    papers: tuple[str, ...]
    digit: tuple[float, float]  # digit height, share of the sheet's shorter side
    rotation: float  # degrees, either way
    perspective: float  # corner jitter, share of the sheet's size
    frame: tuple[int, int]  # longer side of the photo, px
    quality: tuple[int, int]  # JPEG quality


SETTINGS = {
    "validation": Family(("oak", "laminate", "denim"), ("white", "ruled"), (0.18, 0.5), 8, 0.04, (400, 1000), (60, 92)),
    "test": Family(
        ("walnut", "granite", "cork", "metal", "felt"),
        ("cream", "sticky", "squared"),
        (0.15, 0.55),
        10,
        0.05,
        (480, 1200),
        (55, 90),
    ),
}
COVER = (0.3, 0.9)  # the sheet's share of the frame


def _smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur; a wide one is done at a coarser scale, as a full-size one takes seconds."""
    import cv2

    step = max(1, int(sigma / 2))
    if step == 1:
        return cv2.GaussianBlur(field, (0, 0), sigma)
    h, w = field.shape[:2]
    small = cv2.resize(field, (max(1, w // step), max(1, h // step)), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / step), (w, h), interpolation=cv2.INTER_LINEAR)


def _noise(rng, shape, sigma: float) -> np.ndarray:
    """Smooth noise of unit spread at the scale `sigma` (pixels)."""
    import cv2

    step = max(1, int(sigma / 2))
    small = rng.standard_normal((max(2, shape[0] // step), max(2, shape[1] // step))).astype(np.float32)
    field = cv2.GaussianBlur(small, (0, 0), sigma / step)
    if step > 1:
        field = cv2.resize(field, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return field / max(float(field.std()), 1e-6)


def _mix(a, b, t: np.ndarray) -> np.ndarray:
    """Per-pixel blend of colours a and b by t in [0, 1]: (H, W, 3)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a + (b - a) * np.clip(t, 0, 1)[..., None]


def desk_texture(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A desk surface, RGB in [0, 1]."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    along, across = np.cos(angle) * xx + np.sin(angle) * yy, -np.sin(angle) * xx + np.cos(angle) * yy
    if kind in ("oak", "walnut"):
        period = rng.uniform(6, 18)
        warp = 4 * _noise(rng, shape, 40) * period + 0.02 * along
        grain = 0.5 + 0.5 * np.sin(2 * np.pi * (across + warp) / period) ** 3 + 0.15 * _noise(rng, shape, 1.5)
        if kind == "walnut":  # dark, with knots of darker rings
            return _mix((0.30, 0.18, 0.10), (0.16, 0.09, 0.05), grain + 0.3 * _noise(rng, shape, 25))
        return _mix((0.72, 0.55, 0.36), (0.55, 0.38, 0.22), grain)
    if kind == "laminate":
        tone = rng.uniform(0.12, 0.3)
        return np.repeat((tone + 0.03 * _noise(rng, shape, 1) + 0.02 * _noise(rng, shape, 30))[..., None], 3, 2)
    if kind == "denim":
        weave = np.sin(across * rng.uniform(1.2, 2.0)) * np.sin(along * rng.uniform(1.2, 2.0))
        return _mix((0.15, 0.22, 0.40), (0.35, 0.45, 0.65), 0.5 + 0.3 * weave + 0.15 * _noise(rng, shape, 1))
    if kind == "granite":
        speckle = 0.5 + 0.35 * _noise(rng, shape, 1) + 0.25 * _noise(rng, shape, 3)
        return _mix((0.08, 0.08, 0.09), (0.55, 0.52, 0.50), speckle * rng.uniform(0.6, 1.0))
    if kind == "cork":
        blotch = 0.5 + 0.3 * _noise(rng, shape, 2) + 0.25 * _noise(rng, shape, 6)
        return _mix((0.35, 0.22, 0.12), (0.62, 0.45, 0.28), blotch)
    if kind == "metal":
        import cv2

        streaks = cv2.blur(rng.standard_normal(shape).astype(np.float32), (41, 1)) * 3  # brushed along x
        return np.repeat((rng.uniform(0.3, 0.5) + 0.06 * streaks + 0.05 * _noise(rng, shape, 60))[..., None], 3, 2)
    if kind == "felt":
        colour = [(0.10, 0.25, 0.15), (0.25, 0.25, 0.28), (0.35, 0.12, 0.12)][int(rng.integers(3))]
        return _mix(np.array(colour) * 0.7, np.array(colour) * 1.3, 0.5 + 0.3 * _noise(rng, shape, 0.8))
    raise ValueError(f"unknown desk {kind!r}")


def paper_texture(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A sheet, RGB in [0, 1], with its printed lines if it has any."""
    base = {
        "white": (0.95, 0.95, 0.96),
        "ruled": (0.96, 0.96, 0.95),
        "cream": (0.95, 0.92, 0.80),
        "sticky": (0.99, 0.92, 0.42),
        "squared": (0.96, 0.96, 0.96),
    }[kind]
    sheet = np.array(base, np.float32) * rng.uniform(0.95, 1.03) + 0.01 * _noise(rng, shape, 2)[..., None]
    if kind in ("ruled", "squared"):
        step = max(6, int(min(shape) * rng.uniform(0.035, 0.07)))
        colour = np.array((0.55, 0.7, 0.95) if kind == "ruled" or rng.random() < 0.5 else (0.6, 0.6, 0.6), np.float32)
        strength = rng.uniform(0.3, 0.7)  # faint, as printed rules are
        lines = np.zeros(shape, bool)
        lines[int(rng.integers(step)) :: step, :] = True
        if kind == "squared":
            lines[:, int(rng.integers(step)) :: step] = True
        else:
            lines[:, int(shape[1] * rng.uniform(0.08, 0.15))] = True  # the margin, red below
        sheet = np.where(lines[..., None], sheet * (1 - strength) + colour * strength, sheet)
        if kind == "ruled":
            margin = np.flatnonzero(lines.all(0))
            sheet[:, margin] = sheet[:, margin] * (1 - strength) + np.array((0.9, 0.35, 0.35)) * strength
    return sheet


def _place(rng, w: int, h: int, aspect: float, cfg: Family) -> Iterator[np.ndarray]:
    """Candidate corners of the sheet in the frame (TL, TR, BR, BL), desk showing on 1-4 sides;
    desk() takes the first whose digit and coverage fit."""
    for _ in range(200):
        sides = rng.random(4) < 0.5
        if not sides.any():
            sides[rng.integers(4)] = True
        inset = np.where(sides, rng.uniform(0.03, 0.25, 4), -rng.uniform(0.02, 0.25, 4))  # left, top, right, bottom
        x0, y0, x1, y1 = inset[0] * w, inset[1] * h, (1 - inset[2]) * w, (1 - inset[3]) * h
        if x1 - x0 < 0.3 * w or y1 - y0 < 0.3 * h:
            continue
        # The sheet keeps its own proportions: shrink the longer way of the box to fit them.
        cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
        bw, bh = (min(bw, bh * aspect), bh) if bw > bh else (bw, min(bh, bw * aspect))
        theta = np.deg2rad(rng.uniform(-cfg.rotation, cfg.rotation))
        corners = np.array([[-bw, -bh], [bw, -bh], [bw, bh], [-bw, bh]], np.float32) / 2
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], np.float32)
        corners = corners @ rot.T + (cx, cy)
        corners += rng.uniform(-1, 1, (4, 2)).astype(np.float32) * cfg.perspective * (bw, bh)
        yield corners.astype(np.float32)


def desk(digit28: np.ndarray, rng: np.random.Generator, family: str) -> bytes:
    """`digit28`: an MNIST image, (28, 28) floats in [0, 1], white on black. A JPEG's bytes."""
    import cv2

    cfg = SETTINGS[family]
    longer = int(rng.integers(*cfg.frame))
    aspect = rng.uniform(1.0, 4 / 3)
    w, h = (longer, int(longer / aspect)) if rng.random() < 0.5 else (int(longer / aspect), longer)
    paper_kind = cfg.papers[int(rng.integers(len(cfg.papers)))]
    sheet_aspect = 1.0 if paper_kind == "sticky" else rng.choice([1.29, 1.41])
    for corners in _place(rng, w, h, sheet_aspect, cfg):
        # The digit, in the sheet's own upright coordinates, must land inside the frame.
        pw = int(np.linalg.norm(corners[1] - corners[0]))
        ph = int(np.linalg.norm(corners[3] - corners[0]))
        size = int(min(pw, ph) * rng.uniform(*cfg.digit))
        top, left = rng.uniform(0.1, 0.9, 2) * (ph - size, pw - size)
        src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
        matrix = cv2.getPerspectiveTransform(src, corners)
        box = np.array([[left, top], [left + size, top], [left + size, top + size], [left, top + size]], np.float32)
        placed = cv2.perspectiveTransform(box[None], matrix)[0]
        if not (
            (placed >= 0.03 * min(w, h)).all() and (placed[:, 0] < 0.97 * w).all() and (placed[:, 1] < 0.97 * h).all()
        ):
            continue
        mask = cv2.fillConvexPoly(np.zeros((h, w), np.uint8), corners.round().astype(np.int32), 1)
        border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
        if COVER[0] <= mask.mean() <= COVER[1] and border.mean() < 0.97:  # the desk shows
            break
    else:
        raise RuntimeError("no placement of the sheet fits the frame")  # not seen: 200 tries at 30-90% cover
    sheet = paper_texture(paper_kind, (ph, pw), rng)
    stroke = cv2.resize(digit28.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    ink = np.array([(0.08, 0.08, 0.1), (0.1, 0.12, 0.45), (0.15, 0.15, 0.15)][int(rng.integers(3))], np.float32)
    alpha = stroke * rng.uniform(0.75, 0.95)
    top, left = int(top), int(left)
    region = sheet[top : top + size, left : left + size]
    sheet[top : top + size, left : left + size] = region * (1 - alpha[..., None]) + ink * alpha[..., None]
    warped = cv2.warpPerspective(sheet, matrix, (w, h), flags=cv2.INTER_LINEAR)
    cover = cv2.warpPerspective(np.ones((ph, pw), np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR)
    scene = desk_texture(cfg.desks[int(rng.integers(len(cfg.desks)))], (h, w), rng)
    # The sheet's own shadow on the desk: a soft, offset copy of its outline.
    shift = np.float32([[1, 0, rng.uniform(-1, 1) * 0.01 * w], [0, 1, rng.uniform(0, 1) * 0.015 * h]])
    shadow = _smooth(cv2.warpAffine(cover, shift, (w, h)), 0.01 * longer)
    scene *= 1 - rng.uniform(0.2, 0.5) * shadow[..., None]
    scene = scene * (1 - cover[..., None]) + warped * cover[..., None]
    scene *= _light(rng, h, w)[..., None]
    scene = cv2.GaussianBlur(scene, (0, 0), rng.uniform(0.4, 1.2) * longer / 600)
    scene += rng.normal(0, rng.uniform(0.01, 0.03), scene.shape).astype(np.float32)
    image = Image.fromarray((scene.clip(0, 1) * 255).astype(np.uint8), "RGB")
    return encode(image, "JPEG", quality=int(rng.integers(*cfg.quality)))


def _light(rng, h: int, w: int) -> np.ndarray:
    """Uneven light: a gradient, a vignette, and sometimes a soft shadow (a hand, the phone)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h, xx / w
    angle = rng.uniform(0, 2 * np.pi)
    light = (
        0.9
        + 0.15 * (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5))
        - 0.2 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    )
    if rng.random() < 0.4:
        centre, radius = rng.uniform(0, 1, 2), rng.uniform(0.2, 0.5)
        blob = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 < radius**2).astype(np.float32)
        light *= 1 - rng.uniform(0.15, 0.35) * _smooth(blob, 0.05 * max(h, w))
    return light * rng.uniform(0.85, 1.1)


def render(
    images: np.ndarray, labels: np.ndarray, n: int, seed: int | None = None, family: str = "test"
) -> tuple[list[bytes], np.ndarray]:
    """`n` desk photos of `family` and their labels, from MNIST `images` (N, 28, 28[, 1]); the
    digits are drawn as synth.render draws them (synth.choose)."""
    from digitlab.data.synth import choose

    if family not in SETTINGS:
        raise ValueError(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")
    rng, pick = choose(len(labels), n, SEEDS[family] if seed is None else seed)
    return [desk(images[i].reshape(28, 28), rng, family) for i in pick], np.asarray(labels)[pick]
