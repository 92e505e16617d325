"""Find the sheet of paper in a photo of a desk, so that only the sheet is read.

preprocess reads the whole frame as paper: where a desk shows round a sheet, the desk and the
sheet's edges would be taken for ink (and the dark border for dark paper). The finder looks, on
a small copy of the image, for the largest bright, smooth region whose outline is a convex
quadrilateral (cut by the frame where the sheet runs off it) with a sharp step down to a darker
surround. When it finds one that leaves a real part of the frame outside, it returns the box to
read and the sheet's pixels in it; otherwise None, and the image is read as before. Its settings
were chosen on scenes.py's validation family only (docs/robustness/bench-desk.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENABLED = True  # benchmarks switch the finder off to measure the reading without it
SMALL = 160  # the finder's working size (longer side): a sheet is large, the desk's grain is not needed
TEXTURE = 0.035  # local spread (std of a 3x3 window) above which a pixel is grain or an edge, not paper
MIN_DESK_EDGE = 0.05  # the desk (darker than Otsu's cut) makes at least this share of the frame's edge
MIN_AREA = 0.2  # a sheet covers at least this share of the frame
MAX_AREA = 0.97  # and leaves at least the rest of it to the desk
MIN_FILL = 0.55  # share of the sheet's outline (convex hull) that is bright and smooth: not a ring or a stroke
MIN_STEP = 0.1  # the sheet is brighter than the surface just outside its outline by this much
CORNER_FIT = 0.015  # the outline is fitted by a polygon within this share of its perimeter
MAX_CORNERS = 6  # corners of that polygon inside the frame: a sheet has four, a blob many
MAX_OUTSIDE_PAPER = 0.15  # beyond the sheet is desk, not more paper (a canvas cut by a stroke)
INSET = 0.02  # the sheet's edge is dropped: this share of its size, inward (blur, shadow, curl)
# Beyond the sheet lies a desk, lit and grainy: a surround mostly flat and black is ink (a marker
# stroke running off a canvas), not a desk. Validation desks stay well under this share.
MAX_INK_SURROUND = 0.5


@dataclass
class Region:
    """The part of an image to read: a box in its coordinates, and the paper pixels in it."""

    box: tuple[int, int, int, int]  # top, left, bottom, right
    mask: np.ndarray  # bool, the box's shape: True on the sheet
    paper: np.ndarray  # float32, the box's shape: the sheet's brightness, to fill what is not sheet


def find(grey: np.ndarray) -> Region | None:
    """The sheet in `grey` (float, [0, 1]), or None when the frame is all paper (or no sheet)."""
    import cv2

    if not ENABLED or min(grey.shape) < 32:
        return None
    h, w = grey.shape
    scale = min(1.0, SMALL / max(h, w))
    small = np.asarray(grey, np.float32)
    if scale < 1:
        small = cv2.resize(small, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    found = _sheet(small)
    if found is None:
        return None
    outline, smooth = found
    # The sheet's edge is dropped (blur, shadow, curl): the outline pulled in, on the small copy.
    r = max(1, round(INSET * np.sqrt(outline.sum())))
    inset = cv2.erode(outline, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    rows, cols = np.flatnonzero(inset.any(1)), np.flatnonzero(inset.any(0))
    if rows.size < 4 or cols.size < 4:
        return None
    sy, sx = h / small.shape[0], w / small.shape[1]
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box = (int(y0 * sy), int(x0 * sx), min(h, int(np.ceil(y1 * sy))), min(w, int(np.ceil(x1 * sx))))
    size = (box[3] - box[1], box[2] - box[0])
    mask = cv2.resize(inset[y0:y1, x0:x1].astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0.5
    level = _extend(small, (inset > 0) & smooth)
    paper = cv2.resize(level[y0:y1, x0:x1], size, interpolation=cv2.INTER_LINEAR)
    return Region(box, mask, paper)


def _sheet(small: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The sheet's outline (its convex hull, filled, uint8) and the smooth pixels of `small`
    (bool), or None where no region passes for a sheet with a desk round it."""
    found = measure(small)
    if found is None:
        return None
    f, outline, smooth = found
    if not (
        f["area"] >= MIN_AREA
        and f["covered"] <= MAX_AREA
        and f["fill"] >= MIN_FILL
        and f["corners"] <= MAX_CORNERS
        and f["step"] >= MIN_STEP
        and f["outside_paper"] <= MAX_OUTSIDE_PAPER
        and f["ink_surround"] <= MAX_INK_SURROUND
    ):
        return None
    return outline, smooth


def measure(small: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray] | None:
    """What _sheet judges by, for the largest bright, smooth region of `small`: its share of the
    frame (area), its convex hull's (covered), how much of the hull it fills, the hull's corners
    inside the frame, the step down in light across its outline, and the shares of what lies
    outside that are as bright and smooth as paper, and as black and flat as ink. With the hull
    (filled) and the smooth pixels. None where no desk shows on the frame's edge, or nothing is bright and smooth."""
    import cv2

    cut, _ = cv2.threshold((small * 255).astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    edge = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    if (edge * 255 <= cut).mean() < MIN_DESK_EDGE:  # bright all round: no desk shows (most images; fast)
        return None
    mean = cv2.blur(small, (3, 3))
    spread = np.sqrt(np.maximum(cv2.blur(small * small, (3, 3)) - mean * mean, 0))
    smooth = spread < TEXTURE
    paper = (smooth & (small * 255 > cut)).astype(np.uint8)
    # Thin bridges of bright grain would join the sheet to the desk: cut them.
    bright = cv2.morphologyEx(paper, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels = cv2.connectedComponents(bright, connectivity=4)  # WithStats takes 6x as long
    if n < 2:
        return None
    areas = np.bincount(labels[bright > 0], minlength=n)
    biggest = 1 + int(np.argmax(areas[1:]))
    sheet = (labels == biggest).astype(np.uint8)
    contours, _ = cv2.findContours(sheet, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(max(contours, key=cv2.contourArea))
    outline = cv2.fillConvexPoly(np.zeros_like(sheet), hull, 1)
    h, w = small.shape
    corners = cv2.approxPolyDP(hull, CORNER_FIT * cv2.arcLength(hull, True), True).reshape(-1, 2)
    free = (corners[:, 0] > 1) & (corners[:, 0] < w - 2) & (corners[:, 1] > 1) & (corners[:, 1] < h - 2)
    near, ring = np.ones((3, 3), np.uint8), np.ones((5, 5), np.uint8)
    inside = (cv2.erode(outline, near) > cv2.erode(outline, ring)) & (sheet > 0)
    outside = cv2.dilate(outline, ring) > cv2.dilate(outline, near)
    beyond = cv2.dilate(outline, near) == 0
    frame, area, covered = float(small.size), float(areas[biggest]), float(outline.sum())
    features = {
        "area": area / frame,
        "covered": covered / frame,
        "fill": area / max(covered, 1.0),
        "corners": int(free.sum()),
        "step": float(np.median(small[inside]) - np.median(small[outside])) if inside.any() and outside.any() else 0.0,
        "outside_paper": float(paper[beyond].mean()) if beyond.any() else 1.0,
        "ink_surround": float(((small < 0.08) & smooth)[beyond].mean()) if beyond.any() else 0.0,
    }
    return features, outline, smooth


def _extend(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """`values` where `known`, and elsewhere the known values carried outward smoothly (push-pull
    over a pyramid): what is filled in beyond the sheet continues its light, with no edge that
    could be read as ink."""
    import cv2

    weight = known.astype(np.float32)
    levels = [(values * weight, weight)]
    while min(levels[-1][1].shape) > 4 and not (levels[-1][1] > 1e-3).all():
        levels.append((cv2.pyrDown(levels[-1][0]), cv2.pyrDown(levels[-1][1])))
    coarse_sum, coarse_weight = levels[-1]
    fallback = float(values[known].mean()) if known.any() else float(values.mean())
    estimate = np.where(coarse_weight > 1e-3, coarse_sum / np.maximum(coarse_weight, 1e-3), fallback)
    for total, weight in reversed(levels[:-1]):
        up = cv2.pyrUp(estimate.astype(np.float32), dstsize=(weight.shape[1], weight.shape[0]))
        trust = np.clip(weight * 2, 0, 1)  # a level's own average where enough known pixels feed it
        estimate = trust * total / np.maximum(weight, 1e-3) + (1 - trust) * up
    return estimate.astype(np.float32)


def apply(grey: np.ndarray, region: Region) -> np.ndarray:
    """The box of `grey` with everything that is not sheet replaced by the sheet's own light."""
    top, left, bottom, right = region.box
    return np.where(region.mask, grey[top:bottom, left:right], region.paper).astype(np.float32, copy=False)


@dataclass
class Frame:
    """Where the image that is read lies in the image as sent (upright, before any reduction)."""

    shape: tuple[int, int]  # the image that is read
    offset: tuple[int, int] = (0, 0)  # its top left corner in the image that was searched
    scale: tuple[float, float] = (1.0, 1.0)  # pixels of the image as sent per pixel searched
    sheet: bool = False  # a sheet was found: only it is read

    def source_box(self, box: tuple | np.ndarray, work: tuple[int, int]) -> tuple[int, int, int, int]:
        """`box` (top, left, bottom, right; or a mask's box) in an image of shape `work`, resized
        from the image that is read, in the image as sent."""
        if isinstance(box, np.ndarray):
            rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
            box = (rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)
        ky, kx = self.shape[0] / work[0], self.shape[1] / work[1]
        (dy, dx), (sy, sx) = self.offset, self.scale
        top, left, bottom, right = box
        return (
            int((top * ky + dy) * sy),
            int((left * kx + dx) * sx),
            int(np.ceil((bottom * ky + dy) * sy)),
            int(np.ceil((right * kx + dx) * sx)),
        )


def frame(grey: np.ndarray, upright: tuple[int, int]) -> tuple[np.ndarray, Frame]:
    """The image to read: the sheet alone where a desk shows round it, else `grey` itself, and
    where it lies in the image as sent (`upright`: its height and width)."""
    scale = (upright[0] / grey.shape[0], upright[1] / grey.shape[1])
    region = find(grey)
    if region is None:
        return grey, Frame(grey.shape, scale=scale)
    read = apply(grey, region)
    return read, Frame(read.shape, region.box[:2], scale, sheet=True)
