"""MNIST-C (Mu & Gilmer 2019): the benchmark's 15 corruptions, at the severities of its dataset.

A re-implementation of github.com/google-research/mnist-c (corruptions.py): each function's
default severity there is the one the released MNIST-C was built with, and each corruption
below cites it. ImageMagick's motion blur is rebuilt from its kernel; the rest follows the
reference step by step (its quirks included, where they shape the images), vectorised over the
batch where the reference loops per image. Every corruption takes a batch (n, 28, 28) of floats
in [0, 1] and one Generator, from which each image draws its own randomness.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from skimage import feature, filters, transform

from digitlab.errors import DigitlabError

SIZE = 28
CENTRE = (SIZE - 1) / 2  # the reference's affine corruptions keep (13.5, 13.5) fixed
Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """skimage's Gaussian (edge mode 'nearest', truncate 4) of each image, not across images."""
    return filters.gaussian(x, sigma=(0, sigma, sigma))


def shot_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # severity 5: Poisson photon counts, 3 photons for full ink
    return rng.poisson(x * 3) / 3


def impulse_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # severity 4: skimage's 's&p' with amount 0.17: 17% of pixels set to 1 or 0, even odds
    flipped = rng.random(x.shape) < 0.17
    salt = rng.random(x.shape) < 0.5
    return np.where(flipped, salt, x)


def glass_blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # severity 1: sigma 0.7, max_delta 1, 2 iterations of local pixel swaps between two blurs
    sigma, delta, iterations = 0.7, 1, 2
    x = np.floor(_blur(x, sigma) * 255) / 255  # the reference rounds down to uint8 in between
    every = np.arange(len(x))
    # The swaps run in the reference's order, each seeing the earlier ones (a pixel can drift
    # several steps), one step for all images at once. As there, half the positions swap, with
    # offsets from randint(-delta, delta), whose open upper end makes them -1 or 0 at delta 1.
    for _ in range(iterations):
        for h in range(SIZE - delta, delta, -1):
            for w in range(SIZE - delta, delta, -1):
                dy, dx = rng.integers(-delta, delta, size=(2, len(x))) * (rng.random(len(x)) < 0.5)
                here = x[:, h, w].copy()
                x[:, h, w] = x[every, h + dy, w + dx]
                x[every, h + dy, w + dx] = here
    return _blur(x, sigma)


def motion_blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # severity 1: ImageMagick's MotionBlurImage(radius 10, sigma 3) at an angle in [-45, 45] degrees.
    # Its kernel is one-sided: 2 * radius + 1 Gaussian taps at 0, 1, ..., 20 px along the angle,
    # offsets rounded as ceil(v - 0.5), pixels beyond the border repeating the edge.
    radius, sigma = 10, 3.0
    taps = np.arange(2 * radius + 1)
    weights = np.exp(-(taps**2) / (2 * sigma**2))
    weights /= weights.sum()
    angle = np.deg2rad(rng.uniform(-45, 45, len(x)))
    rows = np.ceil(taps[:, None] * np.sin(angle) - 0.5).astype(int)[:, :, None, None]  # (taps, n, 1, 1)
    cols = np.ceil(taps[:, None] * np.cos(angle) - 0.5).astype(int)[:, :, None, None]
    grid = np.arange(SIZE)
    every = np.arange(len(x))[:, None, None]
    out = np.zeros_like(x)
    for weight, dr, dc in zip(weights, rows, cols, strict=True):
        out += weight * x[every, np.clip(grid[:, None] + dr, 0, SIZE - 1), np.clip(grid + dc, 0, SIZE - 1)]
    return out


def _warp(x: np.ndarray, linear: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    """Warp each image with skimage (bilinear, black outside). `linear` (n, 2, 2) maps output
    (col, row) to input; without `shift`, it acts about the image centre, as the reference."""
    matrices = np.tile(np.eye(3), (len(x), 1, 1))
    matrices[:, :2, :2] = linear
    matrices[:, :2, 2] = CENTRE * (1 - linear.sum(axis=2)) if shift is None else shift
    return np.stack([transform.warp(image, matrix, order=1) for image, matrix in zip(x, matrices, strict=True)])


def shear(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # severity 2: shear 0.4 rad, either way. The reference's skimage (2019) built
    # AffineTransform(shear=s) as [[1, -sin s], [0, cos s]]; newer releases changed that meaning.
    s = 0.4 * rng.choice([-1, 1], len(x))
    linear = np.zeros((len(x), 2, 2))
    linear[:, 0, 0], linear[:, 0, 1], linear[:, 1, 1] = 1, -np.sin(s), np.cos(s)
    return _warp(x, linear)


def rotate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # severity 2: 0.4 rad (23 degrees), either way
    a = 0.4 * rng.choice([-1, 1], len(x))
    linear = np.stack([np.stack([np.cos(a), -np.sin(a)], -1), np.stack([np.sin(a), np.cos(a)], -1)], 1)
    return _warp(x, linear)


def scale(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # severity 3: the inverse map scales by 1 / 0.7, so digits shrink to 70% about the centre
    return _warp(x, np.tile(np.eye(2) / 0.7, (len(x), 1, 1)))


def translate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # severity 3: 3 px along each axis, each direction at random
    return _warp(x, np.tile(np.eye(2), (len(x), 1, 1)), shift=3.0 * rng.choice([-1, 1], (len(x), 2)))


def brightness(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # severity 5: HSV value + 0.5. A grey pixel has no hue or saturation, and the reference's
    # gray -> RGB -> HSV -> RGB -> gray round trip (luma weights sum to 1) reduces to this.
    return x + 0.5


def stripe(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # no severity: columns 0-6 and 21-27 inverted
    x[:, :, :7] = 1 - x[:, :, :7]
    x[:, :, 21:] = 1 - x[:, :, 21:]
    return x


def _plasma(n: int, rng: np.random.Generator, decay: float, size: int = 256) -> np.ndarray:
    """Diamond-square height maps, one per image, normalised to [0, 1] over all size x size
    points and returned cropped to 28 x 28: the reference's plasma_fractal, level by level."""
    grid = np.zeros((n, 1, 1))  # the points so far, `step` apart (the grid wraps around)
    wibble = 100.0

    def noisy_mean(total: np.ndarray) -> np.ndarray:
        # wibble * U(-wibble, wibble) as the reference: noise of amplitude wibble squared
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while True:
        squares = grid + np.roll(grid, -1, axis=1)
        centres = noisy_mean(squares + np.roll(squares, -1, axis=2))  # midway on both axes
        across = noisy_mean(centres + np.roll(centres, 1, axis=1) + grid + np.roll(grid, -1, axis=2))
        down = noisy_mean(centres + np.roll(centres, 1, axis=2) + grid + np.roll(grid, -1, axis=1))
        wibble /= decay
        last = 2 * grid.shape[1] == size
        keep = SIZE // 2 if last else grid.shape[1]  # the last level is woven only where it is kept
        woven = np.empty((n, 2 * keep, 2 * keep))
        for i, j, part in ((0, 0, grid), (0, 1, across), (1, 0, down), (1, 1, centres)):
            woven[:, i::2, j::2] = part[:, :keep, :keep]
        if not last:
            grid = woven
            continue
        parts = (grid, across, down, centres)
        low = np.min([part.min(axis=(1, 2)) for part in parts], axis=0)[:, None, None]
        high = np.max([part.max(axis=(1, 2)) for part in parts], axis=0)[:, None, None]
        return (woven - low) / (high - low)


def fog(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # severity 5: 3 x a 256 px plasma fractal (wibble decay 1.4), its top-left 28 px, on the digit,
    # then rescaled so the image's brightest value stays where it was relative to the fog
    amount, decay, chunk = 3.0, 1.4, 64  # chunks bound memory: 64 maps of 256 x 256 floats
    layer = np.concatenate(
        [_plasma(min(chunk, len(x) - i), rng, decay)[:, :SIZE, :SIZE] for i in range(0, len(x), chunk)]
    )
    peak = x.max(axis=(1, 2), keepdims=True)
    return (x + amount * layer) * peak / (peak + amount)


def spatter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # severity 4: N(0.65, 0.3) noise blurred at sigma 1, kept above 0.65, that mask blurred at
    # sigma 1.5 and kept from 0.8: blots of mud, grey 63/255, covering the digit
    liquid = _blur(rng.normal(0.65, 0.3, x.shape), 1.0)
    mud = _blur((liquid > 0.65).astype(float), 1.5)
    mud[mud < 0.8] = 0
    return x * (1 - mud) + 63 / 255 * mud


def _lines(c0: np.ndarray, r0: np.ndarray, c1: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """One line per image, (n, 28, 28): the reference's line_from_points, from column c0 (floored)
    to c1 (ceiled, excluded), brightness log(1 - d / 2.3) + 1 at a vertical distance d from the
    line (1 on it, 0 from 1.45 px), none for a vertical segment."""
    grid = np.arange(SIZE, dtype=float)
    run = np.where(c1 == c0, 1, c1 - c0)
    centre = ((r1 - r0) / run)[:, None] * (grid - c0[:, None]) + r0[:, None]  # (n, cols)
    dist = np.minimum(np.abs(grid[None, :, None] - centre[:, None, :]), 2.3 - 1e-10)
    ink = np.clip(np.log1p(-dist / 2.3) + 1, 0, 1)
    inside = (grid >= np.floor(c0)[:, None]) & (grid < np.ceil(c1)[:, None]) & (c1 != c0)[:, None]
    return ink * inside[:, None, :]


def dotted_line(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # no severity: a line across the image from row randint(0, 27) at column 0 to another at
    # column 27, in dashes: columns 0-1, 4-5, ..., 24-25 blanked, and 27 (the line ends before it)
    r0, r1 = rng.integers(0, 27, size=(2, len(x)))
    line = _lines(np.zeros(len(x)), r0, np.full(len(x), 27.0), r1)
    line[:, :, np.arange(SIZE) // 2 % 2 == 0] = 0
    return x + line


def zigzag(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # no severity: a zigzag of 2 px legs, 2 px either side of a line from (row r0, column 2) to
    # (r0 + randint(-5, 5), column 25), drawn leg by leg with the reference's line
    a = b = 2.0
    c0, c1 = 2, 25
    r0 = rng.integers(0, 27, len(x))
    r1 = r0 + rng.integers(-5, 5, len(x))
    theta = np.arctan((r1 - r0) / (c1 - c0))
    d = (c1 - c0) / np.cos(theta)  # the straight line's length, 23 to 23.6 px
    # Along it: the start, corners at 2, 6, ..., 22 px (the reference's (d - a) // 2a + 1 corners,
    # 6 for every d here), then the end at d, offset r / (2 (d - 2a (d // 2a))) as it computes it.
    turns = 6
    side = b * (-1.0) ** np.arange(turns)
    along = np.concatenate([np.zeros((len(x), 1)), np.tile((2 * np.arange(turns) + 1) * a, (len(x), 1)), d[:, None]], 1)
    end = side[-1] / (2 * (d - 2 * a * (d // (2 * a))))
    across = np.concatenate([np.zeros((len(x), 1)), np.tile(side, (len(x), 1)), end[:, None]], 1)
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    cols, rows = c0 + along * cos - across * sin, r0[:, None] + along * sin + across * cos
    for k in range(1, along.shape[1]):
        x = np.clip(x + _lines(cols[:, k - 1], rows[:, k - 1], cols[:, k], rows[:, k]), 0, 1)
    return x


def canny_edges(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # no severity: skimage's Canny at its defaults (sigma 1, thresholds 0.1 and 0.2)
    return np.stack([feature.canny(image) for image in x]).astype(float)


CORRUPTIONS: dict[str, Corruption] = {
    f.__name__: f
    for f in (
        *(shot_noise, impulse_noise, glass_blur, motion_blur, shear, scale, rotate, brightness, translate),
        *(stripe, fog, spatter, dotted_line, zigzag, canny_edges),
    )
}
NAMES: tuple[str, ...] = tuple(CORRUPTIONS)


def corrupt(name: str, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """images: float32 (N, 28, 28) or (N, 28, 28, 1) in [0, 1], white ink on black (MNIST scaled by 1/255).
    Returns the corrupted images, same shape, float32 in [0, 1]. Deterministic for a given seed;
    each image gets its own random draw from np.random.default_rng(seed)."""
    if name not in CORRUPTIONS:
        raise DigitlabError(f"unknown corruption {name!r}; choose one of: {', '.join(NAMES)}")
    images = np.asarray(images)
    if images.ndim not in (3, 4) or images.shape[1:3] != (SIZE, SIZE) or images.shape[3:] not in ((), (1,)):
        raise DigitlabError(f"corruptions need images of shape (N, 28, 28) or (N, 28, 28, 1), not {images.shape}")
    x = np.clip(images.reshape(-1, SIZE, SIZE).astype(np.float64), 0, 1)  # a copy: corruptions work in place
    if len(x):
        x = CORRUPTIONS[name](x, np.random.default_rng(seed))
    return np.clip(x, 0, 1).astype(np.float32).reshape(images.shape)
