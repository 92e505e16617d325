"""Real images -> MNIST-style 28x28 digits, the way MNIST itself was made.

MNIST digits are white ink on black, anti-aliased, scaled so the longer side of the ink's
bounding box is 20 px, and pasted into 28x28 with their centre of mass at the centre. A photo
or a canvas drawing read without these steps is the usual reason a demo misreads a digit.

    image -> greyscale -> the sheet, where a desk shows round it (scene.py)
          -> ink white on black -> flatten uneven light -> Otsu threshold
          -> drop specks -> crop to the ink -> even out stroke width -> longer side 20 px
          -> centre of mass at (14, 14) in 28x28
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from digitlab.image import scene
from digitlab.image.decode import MIN_CONTRAST, WORK_SIZE, decode, read_image

BOX = 20  # MNIST's longer side of the ink box
SIZE = 28
STROKE = 2.2  # MNIST's typical stroke width at the 20 px scale, in pixels
SPECK = 0.05  # components below this share of the largest are noise, not ink
BLANK = "no ink: the image is blank"  # the reason given where preprocessing finds no ink
MAX_MARKS = 8  # a digit is one to three strokes; more separate marks of similar size is noise
SPAN = 0.7  # a digit on a sheet spans at most this share of it; ink that spans more is printed lines
CHAMFER_MARGIN = 1.5  # the factor a chamfer stroke width is trusted to stay within of the exact one


CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)  # a pixel's four neighbours


@dataclass
class Prepared:
    """The 28x28 image the model sees, and what preprocessing found on the way."""

    image: np.ndarray  # float32 (28, 28) in [0, 1], white ink on black
    inverted: bool = False
    reason: str | None = None  # why there is no digit, when there is none
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # ink boxes in the work image
    source_box: tuple[int, int, int, int] | None = None  # the ink's box in the image as sent (EXIF-upright)


def _shrink(grey: np.ndarray, work: int = WORK_SIZE) -> np.ndarray:
    if max(grey.shape) <= work:
        return grey
    scale = work / max(grey.shape)
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    return np.asarray(Image.fromarray(grey, mode="F").resize(size, Image.Resampling.BOX))


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut that maximises the between-class variance of the histogram."""
    hist = _histogram(np.asarray(values), bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist)
    mean = np.cumsum(hist * centres)
    total, total_mean = weight[-1], mean[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.nan_to_num((total_mean * weight - mean * total) ** 2 / (weight * (total - weight)))[:-1]
    # Between well-separated classes every cut scores the same: take the middle of that plateau,
    # not its first bin, so the cut keeps its distance from both paper and ink.
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float(centres[best].mean())


def _histogram(values: np.ndarray, bins: int) -> np.ndarray:
    """Counts of the values in [0, 1] in `bins` equal bins, 1 in the last (what is outside is left out)."""
    import cv2

    if values.dtype == np.float32 and values.size and bins < 2**15 and values.min() >= 0 and values.max() <= 1:
        # With bins a power of two, value * bins is exact and truncation its floor, the bin (1.0
        # put in the last): binned as integers, 2.5x faster than OpenCV's float histogram, and as
        # bytes where they fit, OpenCV's fast path, 2x faster again.
        binned = np.minimum((values * bins).astype(np.uint16), bins - 1).reshape(-1, 1)
        binned = binned.astype(np.uint8) if bins <= 256 else binned
        return cv2.calcHist([binned], [0], None, [bins], [0, bins]).ravel().astype(np.int64)
    values = values.ravel()
    values = values[(values >= 0) & (values <= 1)].astype(np.float64 if values.dtype.kind != "f" else values.dtype)
    # With bins a power of two, value * bins is exact and its floor the bin.
    return np.bincount(np.minimum((values * bins).astype(np.int64), bins - 1), minlength=bins)


def ink_image(grey: np.ndarray, work: int = WORK_SIZE) -> tuple[np.ndarray, bool]:
    """White ink on black with the paper flattened to 0, at most `work` px on its longer side.
    Returns (ink, inverted)."""
    import cv2  # the same opening and mean as scipy.ndimage's (reflected borders), 10x faster

    grey = _shrink(grey, work)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    inverted = bool(np.median(border) > 0.5)  # light paper: MNIST wants light ink on dark
    ink = 1.0 - grey if inverted else grey
    # Uneven light: a grey opening wider than any stroke erases the strokes and keeps the paper.
    # "Wider than any stroke" is measured, not assumed: a fat marker would otherwise be hollowed.
    rough = ink > otsu(ink)
    size = _opening_size(rough, max(3, int(max(ink.shape) / 6)))
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    # Opened as 16-bit levels, twice as fast as floats: a minimum or maximum of rounded values is
    # the rounded minimum or maximum, so the paper is the float opening's within 1/131070.
    levels = np.rint(np.clip(ink, 0.0, 1.0) * 65535).astype(np.uint16)  # an array passed in may stray
    opened = cv2.morphologyEx(levels, cv2.MORPH_OPEN, square, borderType=cv2.BORDER_REFLECT)
    paper = cv2.blur(opened.astype(np.float32) * np.float32(1 / 65535), (size, size), borderType=cv2.BORDER_REFLECT)
    return np.clip(ink - paper, 0.0, 1.0), inverted


def _opening_size(rough: np.ndarray, size: int) -> int:
    """The side of the opening's square (odd): `size`, or three stroke widths of `rough` where that is more."""
    if not _may_be_wider(rough, size / 3):
        return size | 1
    # The chamfer distance costs a sixth of the exact one. Its stroke width fell as low as 0.82 of
    # the exact on 1,667 validation images of every kind (under 1 / CHAMFER_MARGIN = 0.67 only
    # for contrived masks, a ragged blob among 1-px specks): where even the margin keeps it under
    # the bar, the exact width would be too, and is not measured; the size chosen was the exact
    # width's on every image measured, not by proof.
    if 3 * CHAMFER_MARGIN * stroke_width(rough, precise=False) <= size:
        return size | 1
    return max(size, int(3 * stroke_width(rough))) | 1


def _may_be_wider(mask: np.ndarray, width: float) -> bool:
    """Whether the strokes of `mask` may be wider than `width` on average: the cheap check that
    spares most images stroke_width's distance transform. A stroke's width is at most twice its
    greatest distance to the edge, which is at most r*sqrt(2) where a (2r+1) square fits nowhere."""
    import cv2

    r = int(width / (2 * np.sqrt(2)))
    if not mask.any():
        return False
    if r < 1:
        return True
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1))
    return bool(cv2.erode(mask.view(np.uint8), square, borderType=cv2.BORDER_REFLECT).any())


def ink_mask(ink: np.ndarray, sheet: bool = False) -> tuple[np.ndarray | None, int]:
    """The ink pixels without specks and how many separate marks they form; None if no ink.
    On a `sheet` found on a desk (scene.py), ink that spans it is printed rules or squares, fainter
    than a pen: cut again, between them and the pen's ink."""
    if ink.max() < MIN_CONTRAST:
        return None, 0
    mask = ink > max(otsu(ink), MIN_CONTRAST / 2)
    if sheet and mask.any():
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if max((rows[-1] - rows[0]) / ink.shape[0], (cols[-1] - cols[0]) / ink.shape[1]) > SPAN:
            mask = ink > otsu(ink[mask])
    labels, sizes = label_marks(mask)
    if sizes.size == 0:
        return None, 0
    keep = sizes >= SPECK * sizes.max()
    if not keep.all():
        mask = np.concatenate([[False], keep])[labels]
    return (mask, int(keep.sum())) if mask.sum() >= 4 else (None, 0)


def label_marks(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The separate marks of a bool `mask` (4-connected): their labels (0 where no ink, k for the
    k-th mark) and each mark's pixel count (the k-th at k - 1). OpenCV labels; a bincount counts,
    where its connectedComponentsWithStats takes 6x as long for the other statistics too."""
    import cv2

    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=4)
    return labels, np.bincount(labels[mask], minlength=n)[1:]


def stroke_width(mask: np.ndarray, precise: bool = True) -> float:
    """Mean stroke width: twice the mean distance from the ink's medial pixels to its edge
    (exact Euclidean distances, or with `precise` False OpenCV's 5x5 chamfer estimate of them)."""
    import cv2  # its exact Euclidean distance (Felzenszwalb's) and 3x3 maximum: scipy's, 6x faster

    mask = _around(mask)
    if mask.all():  # no edge at all (a straight stroke cropped to itself): OpenCV's distances
        # are then "infinite"; measured, as scipy's exact distance transform measures them, from
        # just above the first row, so that such strokes read as they always have
        rows, cols = np.indices(mask.shape)
        distance = np.sqrt((rows + 1.0) ** 2 + cols**2).astype(np.float32)
    else:
        mask_size = cv2.DIST_MASK_PRECISE if precise else cv2.DIST_MASK_5
        distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, mask_size)
    ridge = (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REFLECT)) & mask
    return float(2 * distance[ridge].mean(dtype=np.float64)) if ridge.any() else 1.0


def _around(mask: np.ndarray) -> np.ndarray:
    """`mask` cut to its ink's box and a pixel round it (where the image has one): the same
    stroke_width, for a fraction of the pixels. Each ink pixel's nearest background pixel is then
    still in the cut (a path to one further out crosses the ring of background round the box),
    and so is each ink pixel's 3x3 neighbourhood; a side where the ink reaches the image's edge
    keeps that edge."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return mask
    return mask[max(rows[0] - 1, 0) : rows[-1] + 2, max(cols[0] - 1, 0) : cols[-1] + 2]


def to_mnist(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Crop the ink, scale its longer side to 20 px, and centre its mass in 28x28."""
    import cv2

    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop_mask = mask[top:bottom, left:right]
    # The soft ink (anti-aliased edges) within a pixel of the mask, strongest stroke made 1.
    near = cv2.dilate(crop_mask.view(np.uint8), CROSS) > 0
    crop = np.where(near, ink[top:bottom, left:right], 0.0)
    crop = np.clip(crop / max(percentile(crop[crop_mask], 90), 1e-6), 0.0, 1.0)
    scale = BOX / max(crop.shape)
    # Thin pen lines shrink to faint hairlines and marker strokes to blobs: even them out.
    width = stroke_width(crop_mask) * scale
    if width < STROKE * 0.7:
        crop = _square(cv2.dilate, crop, max(2, round((STROKE - width) / scale)))
    elif width > STROKE * 1.8:
        crop = _square(cv2.erode, crop, max(2, round((width - STROKE) / scale / 2)))
    height_px, width_px = (max(1, round(d * scale)) for d in crop.shape)
    small = np.asarray(
        Image.fromarray(crop.astype(np.float32), mode="F").resize(
            (width_px, height_px), Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR
        )
    )
    small = np.clip(small, 0.0, 1.0)
    out = np.zeros((SIZE, SIZE), np.float32)
    cy, cx = _centre_of_mass(small) if small.sum() > 0 else (height_px / 2, width_px / 2)
    top = min(max(round(SIZE / 2 - cy), 0), SIZE - height_px)  # builtins: np.clip of a scalar costs 10 us
    left = min(max(round(SIZE / 2 - cx), 0), SIZE - width_px)
    out[top : top + height_px, left : left + width_px] = small
    return out


def percentile(values: np.ndarray, q: float) -> float:
    """np.percentile(values, q) of a 1-D, non-empty array of finite floats, its linear method step
    for step (the same float): 7x faster on a digit's few hundred values, read ~25 times a number."""
    index = (values.size - 1) * (q / 100)
    low = int(index)
    high = min(low + 1, values.size - 1)
    below, above = np.partition(values, (low, high))[[low, high]]
    gamma, step = index - low, above - below
    return above - step * (1 - gamma) if gamma >= 0.5 else below + step * gamma


def _square(operation: Callable[..., np.ndarray], image: np.ndarray, size: int) -> np.ndarray:
    """A grey dilation or erosion by a `size` square, reflected at the borders: scipy.ndimage's
    grey_dilation and grey_erosion value for value (their anchors for an even size included),
    without importing SciPy into every serving process (27 MB)."""
    import cv2

    anchor = (size - 1) // 2 if operation is cv2.dilate else size // 2
    return operation(image, np.ones((size, size), np.uint8), anchor=(anchor, anchor), borderType=cv2.BORDER_REFLECT)


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) of the image's centre of mass, summed in scipy.ndimage's order (the same floats)."""
    total = image.sum()
    rows, cols = np.arange(image.shape[0], dtype=float)[:, None], np.arange(image.shape[1], dtype=float)
    return float((image * rows).sum() / total), float((image * cols).sum() / total)


class Inked(NamedTuple):
    """What reading a digit (prepare) and a number (segment.find) both start from."""

    ink: np.ndarray  # white on black, the paper flattened to 0
    mask: np.ndarray | None  # its pixels without specks; None where there is no ink
    marks: int  # separate marks in the mask
    inverted: bool
    place: scene.Frame  # where the image read lies in the image as sent


def ink_of(source: str | Path | bytes | np.ndarray, work: int = WORK_SIZE) -> Inked:
    """The ink of an image (ink_image) at most `work` px on its longer side, its mask and count
    of marks (ink_mask), whether it was inverted, and where it lies in the image as sent: what
    reading a digit (prepare) and a number (segment.find) both start from."""
    grey, place = scene.frame(*decode(source))  # only the sheet, where a desk shows round it
    ink, inverted = ink_image(grey, work)
    mask, marks = ink_mask(ink, place.sheet)
    return Inked(ink, mask, marks, inverted, place)


def prepare(source: str | Path | bytes | np.ndarray) -> Prepared:
    """One digit from a file, bytes or a greyscale array in [0, 1]."""
    return prepare_ink(ink_of(source))


def prepare_ink(inked: Inked) -> Prepared:
    """One digit from what ink_of found in an image."""
    ink, mask, marks, inverted, place = inked
    if mask is None:
        return Prepared(np.zeros((SIZE, SIZE), np.float32), inverted, reason=BLANK)
    if marks > MAX_MARKS:
        return Prepared(
            np.zeros((SIZE, SIZE), np.float32),
            inverted,
            reason=f"{marks} scattered marks: noise or texture, not one digit",
        )
    return Prepared(to_mnist(ink, mask), inverted, source_box=place.source_box(mask, ink.shape))


def naive(source: str | Path | bytes) -> np.ndarray:
    """The usual demo's preprocessing, for comparison: resize to 28x28, invert if light."""
    grey = read_image(source)
    small = np.asarray(Image.fromarray(grey, mode="F").resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    return np.clip(1.0 - small if small.mean() > 0.5 else small, 0.0, 1.0).astype(np.float32)
