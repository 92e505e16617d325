"""Pen strokes as polylines in a box of about 1x1 (y down), and the hand that draws them.

Evaluation's drawn non-digits are the hand-authored tables below (LETTERS, SYMBOLS, SHAPES) and
sinusoid tangles; training's are other sources: random shapes and scribbles from here, and
skeletons of DejaVu glyphs (negatives.py). A drawing is a list of strokes (pen down ... pen up),
in the order a person would draw them. None may read as a digit at 28x28: no circle alone (a 0),
no single straight line (a 1), no S, Z, b, g, q, B, no bare loop or simple curve.
"""

from __future__ import annotations

import numpy as np

Stroke = list[tuple[float, float]]


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 18) -> Stroke:
    """Points on an ellipse from angle `start` to `end` in degrees (0 right, 90 down: y points down)."""
    t = np.radians(np.linspace(start, end, n))
    return [(float(cx + rx * np.cos(a)), float(cy + ry * np.sin(a))) for a in t]


def curve(*points: tuple[float, float], n: int = 8) -> Stroke:
    """A smooth stroke through `points` (Catmull-Rom), for shapes no single arc describes."""
    p = np.array([points[0], *points, points[-1]], float)
    t = np.linspace(0, 1, n, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out += (
            0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
        ).tolist()
    return [(float(x), float(y)) for x, y in [*out, points[-1]]]


def _closed(points: Stroke) -> Stroke:
    return [*points, points[0]]


LETTERS: dict[str, list[Stroke]] = {
    "A": [[(0, 1), (0.5, 0), (1, 1)], [(0.22, 0.6), (0.78, 0.6)]],
    "E": [[(0.85, 0), (0.1, 0), (0.1, 1), (0.85, 1)], [(0.1, 0.5), (0.65, 0.5)]],
    "F": [[(0.85, 0), (0.1, 0), (0.1, 1)], [(0.1, 0.48), (0.65, 0.48)]],
    "H": [[(0.1, 0), (0.1, 1)], [(0.9, 0), (0.9, 1)], [(0.1, 0.5), (0.9, 0.5)]],
    "K": [[(0.15, 0), (0.15, 1)], [(0.85, 0), (0.15, 0.6)], [(0.38, 0.42), (0.9, 1)]],
    "M": [[(0, 1), (0.1, 0), (0.5, 0.65), (0.9, 0), (1, 1)]],
    "N": [[(0.1, 1), (0.1, 0), (0.9, 1), (0.9, 0)]],
    "R": [[(0.15, 1), (0.15, 0), *arc(0.5, 0.25, 0.38, 0.25, -90, 90), (0.15, 0.5)], [(0.45, 0.5), (0.9, 1)]],
    "T": [[(0, 0), (1, 0)], [(0.5, 0), (0.5, 1)]],
    "U": [[(0.1, 0), *arc(0.5, 0.6, 0.4, 0.4, 180, 0), (0.9, 0)]],
    "V": [[(0, 0), (0.5, 1), (1, 0)]],
    "W": [[(0, 0), (0.25, 1), (0.5, 0.35), (0.75, 1), (1, 0)]],
    "X": [[(0, 0), (1, 1)], [(1, 0), (0, 1)]],
    "Y": [[(0, 0), (0.5, 0.5), (1, 0)], [(0.5, 0.5), (0.5, 1)]],
    # Lower case, in a box whose x-height starts at y = 0.4 (ascenders reach 0, descenders 1.35).
    "a": [arc(0.45, 0.72, 0.35, 0.28, 330, 25), [(0.8, 0.42), (0.8, 0.9), (0.92, 1.0)]],
    "e": [[(0.15, 0.7), *arc(0.5, 0.7, 0.36, 0.3, 0, -315)]],
    "h": [[(0.15, 0), (0.15, 1)], [(0.15, 0.68), *arc(0.5, 0.68, 0.35, 0.26, 180, 360), (0.85, 1)]],
    "k": [[(0.15, 0), (0.15, 1)], [(0.8, 0.4), (0.15, 0.75), (0.85, 1)]],
    "m": [
        [(0.05, 0.4), (0.05, 1)],
        [(0.05, 0.6), *arc(0.275, 0.6, 0.225, 0.18, 180, 360), (0.5, 1)],
        [(0.5, 0.6), *arc(0.725, 0.6, 0.225, 0.18, 180, 360), (0.95, 1)],
    ],
    "n": [[(0.15, 0.4), (0.15, 1)], [(0.15, 0.65), *arc(0.5, 0.65, 0.35, 0.25, 180, 360), (0.85, 1)]],
    "r": [[(0.2, 0.4), (0.2, 1)], [(0.2, 0.68), *arc(0.5, 0.68, 0.3, 0.24, 180, 300)]],
    "t": [[(0.4, 0), (0.4, 0.85), *arc(0.6, 0.85, 0.2, 0.13, 180, 60)], [(0.1, 0.38), (0.75, 0.38)]],
    "u": [[(0.15, 0.4), *arc(0.5, 0.72, 0.35, 0.28, 180, 0), (0.85, 0.4)], [(0.85, 0.4), (0.85, 1)]],
    "w": [[(0, 0.4), (0.25, 1), (0.5, 0.55), (0.75, 1), (1, 0.4)]],
    "y": [[(0.1, 0.4), (0.5, 0.9)], [(0.9, 0.4), (0.55, 1.0), (0.35, 1.3), (0.15, 1.32)]],
}

SYMBOLS: dict[str, list[Stroke]] = {
    "#": [[(0.35, 0), (0.25, 1)], [(0.75, 0), (0.65, 1)], [(0, 0.33), (1, 0.33)], [(0, 0.67), (1, 0.67)]],
    "+": [[(0.5, 0), (0.5, 1)], [(0, 0.5), (1, 0.5)]],
    "=": [[(0, 0.3), (1, 0.3)], [(0, 0.7), (1, 0.7)]],
    "≠": [[(0, 0.35), (1, 0.35)], [(0, 0.65), (1, 0.65)], [(0.7, 0), (0.3, 1)]],
    "±": [[(0.5, 0), (0.5, 0.7)], [(0, 0.35), (1, 0.35)], [(0, 1), (1, 1)]],
    "*": [[(0.5, 0), (0.5, 1)], [(0.07, 0.25), (0.93, 0.75)], [(0.93, 0.25), (0.07, 0.75)]],
    "%": [
        [(0.9, 0), (0.1, 1)],
        _closed(arc(0.2, 0.18, 0.15, 0.18, 0, 340)),
        _closed(arc(0.8, 0.82, 0.15, 0.18, 0, 340)),
    ],
    "$": [[*arc(0.5, 0.3, 0.32, 0.2, -20, -270), *arc(0.5, 0.7, 0.32, 0.2, -90, 160)], [(0.5, -0.12), (0.5, 1.12)]],
    "&": [
        curve(
            (0.95, 1),
            (0.3, 0.42),
            (0.28, 0.15),
            (0.45, 0.03),
            (0.6, 0.15),
            (0.5, 0.35),
            (0.15, 0.65),
            (0.2, 0.92),
            (0.45, 1),
            (0.7, 0.88),
            (0.88, 0.62),
        )
    ],
    "@": [
        _closed(arc(0.47, 0.52, 0.2, 0.22, 0, 355)),
        [(0.67, 0.3), (0.67, 0.66), *arc(0.5, 0.5, 0.48, 0.5, 25, -320)],
    ],
    "?": [[*arc(0.5, 0.28, 0.32, 0.26, 180, 420), (0.5, 0.72)], [(0.5, 0.94), (0.51, 0.98)]],
    "→": [[(0, 0.5), (1, 0.5)], [(0.68, 0.2), (1, 0.5), (0.68, 0.8)]],
    "←": [[(1, 0.5), (0, 0.5)], [(0.32, 0.2), (0, 0.5), (0.32, 0.8)]],
    "<": [[(1, 0), (0, 0.5), (1, 1)]],
    ">": [[(0, 0), (1, 0.5), (0, 1)]],
    "^": [[(0, 0.6), (0.5, 0), (1, 0.6)]],
    "~": [[(float(x), float(0.5 - 0.22 * np.sin(2 * np.pi * x))) for x in np.linspace(0, 1, 20)]],
    "∞": [
        [
            (
                float(0.5 + 0.5 * np.cos(t) / (1 + np.sin(t) ** 2)),
                float(0.5 + 0.5 * np.sin(t) * np.cos(t) / (1 + np.sin(t) ** 2)),
            )
            for t in np.linspace(0, 2 * np.pi, 40)
        ]
    ],
}

_cross = [(0.35, 0.0), (0.65, 0.0), (0.65, 0.35)]  # one arm of a plus outline, turned four times
for _ in range(3):
    _cross += [(1 - y, x) for x, y in _cross[-3:]]
_heart = np.linspace(0, 2 * np.pi, 40)
_spiral = np.linspace(0, 5 * np.pi, 60)
_star = [
    (0.5 + 0.5 * np.cos(np.radians(-90 + 144 * k)), 0.5 + 0.5 * np.sin(np.radians(-90 + 144 * k))) for k in range(6)
]

SHAPES: dict[str, list[Stroke]] = {
    "square": [[(0, 0), (1, 0), (1, 1), (0, 1), (0, 0.02)]],
    "triangle": [[(0.5, 0), (1, 0.9), (0, 0.9), (0.5, 0)]],
    "diamond": [[(0.5, 0), (0.95, 0.5), (0.5, 1), (0.05, 0.5), (0.5, 0)]],
    "star": [[(float(x), float(y)) for x, y in _star]],
    "heart": [
        [
            (
                float(16 * np.sin(t) ** 3 / 32 + 0.5),
                float((-13 * np.cos(t) + 5 * np.cos(2 * t) + 2 * np.cos(3 * t) + np.cos(4 * t)) / 32 + 0.5),
            )
            for t in _heart
        ]
    ],
    "check": [[(0, 0.55), (0.35, 1), (1, 0)]],
    "cross": [_closed(_cross)],
    "spiral": [[(float(0.5 + t / 32 * np.cos(t)), float(0.5 + t / 32 * np.sin(t))) for t in _spiral]],
    "smiley": [
        _closed(arc(0.5, 0.5, 0.5, 0.5, 0, 350, 30)),
        [(0.33, 0.33), (0.33, 0.4)],
        [(0.67, 0.33), (0.67, 0.4)],
        arc(0.5, 0.52, 0.27, 0.24, 20, 160),
    ],
    "house": [
        [(0, 0.42), (0.5, 0), (1, 0.42)],
        [(0.12, 0.35), (0.12, 1), (0.88, 1), (0.88, 0.35)],
        [(0.42, 1), (0.42, 0.68), (0.6, 0.68), (0.6, 1)],
    ],
    "envelope": [[(0, 0), (1, 0), (1, 0.7), (0, 0.7), (0, 0)], [(0, 0), (0.5, 0.4), (1, 0)]],
    "sun": [_closed(arc(0.5, 0.5, 0.24, 0.24, 0, 340))]
    + [
        [(0.5 + 0.33 * np.cos(a), 0.5 + 0.33 * np.sin(a)), (0.5 + 0.5 * np.cos(a), 0.5 + 0.5 * np.sin(a))]
        for a in np.radians(np.arange(0, 360, 60))
    ],
}


# --- the hand ---------------------------------------------------------------------------------------------


def wobble(points: np.ndarray, rng: np.random.Generator, amplitude: float, wavelength: float) -> np.ndarray:
    """Move (n, 2) points by a smooth random field, three plane waves per axis: an elastic warp."""
    angle = rng.uniform(0, 2 * np.pi, (3, 2))
    k = np.stack([np.cos(angle), np.sin(angle)], -1) * (2 * np.pi / wavelength * rng.uniform(0.7, 1.3, (3, 2, 1)))
    phase, amp = rng.uniform(0, 2 * np.pi, (3, 2)), rng.normal(0, amplitude / np.sqrt(3), (3, 2))
    return points + np.einsum("wa,nwa->na", amp, np.sin(np.einsum("wad,nd->nwa", k, points) + phase))


def hand(drawing: list, rng: np.random.Generator) -> list[np.ndarray]:
    """The drawing scaled to a unit box and drawn by hand: each stroke a little off, the whole
    shape a little bent, every line with a slight tremor."""
    low, high = np.concatenate(drawing).min(0), np.concatenate(drawing).max(0)
    parts = [_densify((np.asarray(s, float) - low) / max((high - low).max(), 1e-6)) for s in drawing]
    parts = [p + rng.normal(0, 0.015, 2) for p in parts]
    points = wobble(wobble(np.concatenate(parts), rng, 0.04, 1.5), rng, 0.005, 0.2)
    return np.split(points, np.cumsum([len(p) for p in parts])[:-1])


def _densify(stroke: np.ndarray, step: float = 0.02) -> np.ndarray:
    """Points every `step` along the stroke, so that the hand's warp bends straight lines too."""
    length = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(stroke, axis=0).T))])
    t = np.linspace(0.0, length[-1], max(2, int(length[-1] / step) + 1))
    return np.stack([np.interp(t, length, stroke[:, 0]), np.interp(t, length, stroke[:, 1])], 1)


def _tangled(stroke: np.ndarray) -> bool:
    """Five times longer than it is wide: a loop (a 0), an S or a hook (a 2, a 7) is not."""
    return np.hypot(*np.diff(stroke, axis=0).T).sum() >= 5 * np.ptp(stroke, 0).max()


# --- training: random shapes and scribbles ------------------------------------------------------------


def random_shape(rng: np.random.Generator) -> list[np.ndarray]:
    """A polygon (3-8 corners), a star, a zigzag, a grid or a row of loops."""
    pick = int(rng.integers(5))
    if pick == 0:  # with five corners or more, every other one is pulled in, or it would be round (a zero)
        n = int(rng.integers(3, 9))
        angles = 2 * np.pi * (np.arange(n) + rng.uniform(-0.3, 0.3, n)) / n
        radii = rng.uniform(0.55, 1.0, n) * np.where((np.arange(n) % 2 == 1) & (n >= 5), rng.uniform(0.3, 0.55), 1.0)
        return [np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)[np.r_[0:n, 0]]]
    if pick == 1:
        k = int(rng.integers(5, 9))
        angles = np.pi * np.arange(2 * k + 1) / k
        radii = np.where(np.arange(2 * k + 1) % 2 == 0, 1.0, rng.uniform(0.3, 0.55))
        return [np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)]
    if pick == 2:  # five turns or more, or it would be a Z or an N
        m = int(rng.integers(6, 11))
        zigzag = np.stack([np.linspace(0, 1, m), np.where(np.arange(m) % 2 == 0, 0.0, rng.uniform(0.25, 0.6))], 1)
        return [zigzag[:, ::-1] if rng.random() < 0.3 else zigzag]
    if pick == 3:
        rows, cols = (np.sort(rng.uniform(0, 1, int(rng.integers(2, 5)))) for _ in range(2))
        return [np.array([[0, r], [1, r]]) for r in rows] + [np.array([[c, 0], [c, 1]]) for c in cols]
    t = np.linspace(0, 2 * np.pi * rng.integers(3, 7), 240)  # a prolate cycloid, as in a row of e's
    b = rng.uniform(1.5, 3.0)
    return [np.stack([t - b * np.sin(t), -b * np.cos(t)], 1)]


def random_scribble(rng: np.random.Generator) -> list[np.ndarray]:
    """A chain of quadratic Bezier curves through random points, or a random walk; tangled enough."""
    while True:
        if rng.random() < 0.5:
            p = rng.uniform(0, 1, (int(rng.integers(6, 12)), 2))
            mid, t = (p[:-1] + p[1:]) / 2, np.linspace(0, 1, 12)[:, None]
            pieces = zip(mid[:-1], p[1:-1], mid[1:], strict=True)
            stroke = np.concatenate([(1 - t) ** 2 * a + 2 * (1 - t) * t * c + t**2 * b for a, c, b in pieces])
        else:  # heading drifts; the walk turns back at the edges of the box
            heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.5, int(rng.integers(80, 200))))
            stroke = 0.5 + np.cumsum(0.03 * np.stack([np.cos(heading), np.sin(heading)], 1), 0)
            stroke = 1 - np.abs(1 - np.abs(stroke) % 2)
        if _tangled(stroke):
            return [stroke]


# --- evaluation: sinusoid scribbles --------------------------------------------------------------------

_LISSAJOUS = ((2, 3), (3, 4), (2, 5), (3, 5), (4, 5))  # never near 1:1 (an oval, a zero) or 1:2 (an eight)


def sinusoid_scribble(rng: np.random.Generator) -> list[np.ndarray]:
    """A Lissajous figure or a decaying harmonograph, with a harmonic on top."""
    t = np.linspace(0, 2 * np.pi, 400)
    if rng.random() < 0.5:
        fx, fy = rng.permutation(_LISSAJOUS[int(rng.integers(len(_LISSAJOUS)))])
        decay = np.ones_like(t)
    else:
        fx = rng.uniform(2, 3)
        fx, fy = rng.permutation([fx, fx * rng.uniform(1.25, 1.75)])
        t = t * rng.uniform(1.5, 2.5)
        decay = np.exp(-rng.uniform(0.15, 0.35) * t / (2 * np.pi))
    x = np.sin(fx * t + rng.uniform(0, 2 * np.pi)) + rng.uniform(0, 0.3) * np.sin(2 * fy * t + rng.uniform(0, 6))
    y = np.sin(fy * t + rng.uniform(0, 2 * np.pi)) + rng.uniform(0, 0.3) * np.sin(2 * fx * t + rng.uniform(0, 6))
    return [np.stack([x * decay, y * decay], 1)]
