"""Written numbers -> candidate digits: lines, numbers, and the places a mark may be cut.

    ink (preprocess.ink_image) -> lines of writing (empty rows between them)
      -> numbers on a line (gaps wider than NUMBER_GAP of the line's height)
      -> groups: marks whose columns overlap (a 5's flag, a broken stroke) belong together
      -> in a group wide enough to hold two digits: candidate cuts (dips in its outline, columns
         where little ink crosses, the edges of its marks), each a least-ink path from top to
         bottom, and every piece between two of them as a 28x28 image

Which cuts are made is not decided here: read/number.py reads each group whole, and where it
doubts, scores every piece with the classifier and keeps the reading whose pieces look most like
digits (segmentation by recognition).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitlab.errors import DigitlabError
from digitlab.image import scene
from digitlab.image.decode import WORK_SIZE
from digitlab.image.preprocess import BLANK, Inked, ink_of, to_mnist

# Shares of the height of a line's tallest mark (MNIST's digits are all of one height):
FRAGMENT = 0.48  # a mark shorter than this is a piece of a digit whose stroke broke, not a digit
MAY_HOLD_TWO = 0.55  # a group wider than this may be two or more digits: look for cuts in it
MIN_PIECE = 0.12  # no cut closer than this to another or to an edge (a 1 is about this thin)
MAX_PIECE = 1.6  # no piece wider than this is scored (a flat 0 is about 1.3 at one height)
NUMBER_GAP = 0.9  # a gap wider than this ends a number (digits of one stand 0.1-0.6 apart)
CUTS = 7  # candidate cuts per line height of a group's width, the lowest columns of ink first
DIP = 0.1  # a dip in the outline this deep (share of the height) is where two digits may meet
REACH = 0.3  # a cut's path strays at most this far either side of where it starts
SIDESTEP = 0.5  # what straying REACH costs, in pixels of ink crossed: prefer straight cuts
MAX_GROUPS = 400  # per image: beyond this it is a texture or a page of text, not numbers
LINE_PX = 24  # a piece as the piece model sees it: its line's height this many px, in SHAPE
SHAPE = (32, 48)  # rows, columns: room for a piece MAX_PIECE wide
Box = tuple[int, int, int, int]  # top, left, bottom, right


@dataclass
class Group:
    """Marks that belong to one digit or to several touching ones: the whole, and its pieces
    between candidate cuts (found by cut(), only for groups the reader doubts)."""

    box: Box
    height: float  # the height the digits of its line stand at
    ink: np.ndarray  # the group's box of the ink image
    own: np.ndarray  # bool, the box's shape: its marks' pixels
    marks: np.ndarray  # the box's connected-component labels
    ks: list[int]  # its marks' labels
    positions: list[int] = field(default_factory=list)  # where cuts start: left edge, cuts, right edge
    paths: list[np.ndarray] = field(default_factory=list)  # each cut's column in each row

    def cut(self) -> None:
        """Candidate cuts, each a path from top to bottom through the least ink (touching digits
        meet at a slant); none where the group is too narrow to hold two digits."""
        width = self.own.shape[1]
        starts = [0, width]
        if width > MAY_HOLD_TWO * self.height:
            starts = sorted({0, width, *_cuts(self.own, self.ks, self.marks, self.height)})
        self.positions = [self.box[1] + c for c in starts]
        self.paths = [
            np.full(self.own.shape[0], c) if c in (0, width) else _path(self.own, c, self.height) for c in starts
        ]

    def spans(self) -> list[tuple[int, int]]:
        """The (i, j) of every piece worth reading: no wider than MAX_PIECE, but neighbouring cuts
        and the whole always, so that some reading exists."""
        last = len(self.positions) - 1
        return [
            (i, j)
            for i in range(last)
            for j in range(i + 1, last + 1)
            if self.positions[j] - self.positions[i] <= MAX_PIECE * self.height or j == i + 1 or (i, j) == (0, last)
        ]

    def piece(self, i: int | None = None, j: int | None = None) -> tuple[np.ndarray, Box, np.ndarray] | None:
        """The ink between cuts i and j (the whole group by default): as a digit (28x28, as MNIST
        draws one), its box in the work image, and as a piece of its line (SHAPE: the line's
        height kept, so that a half or a pair shows as one); None where there is too little ink."""
        piece = self.mask(i, j)
        if piece.sum() < 4:
            return None
        rows, cols = np.flatnonzero(piece.any(1)), np.flatnonzero(piece.any(0))
        top, left = self.box[:2]
        box = (top + int(rows[0]), left + int(cols[0]), top + int(rows[-1]) + 1, left + int(cols[-1]) + 1)
        return to_mnist(self.ink * piece, piece), box, self._in_line(piece, rows, cols)

    def mask(self, i: int | None = None, j: int | None = None) -> np.ndarray:
        """The pixels of the group's box between cuts i and j (all its marks by default)."""
        if i is None:
            return self.own
        columns = np.arange(self.own.shape[1])[None, :]
        between = (columns >= self.paths[i][:, None]) & (columns < self.paths[j][:, None])
        return _piece(self.own, self.marks, self.ks, between)

    def _in_line(self, piece: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The piece at SHAPE's scale (the line's height to LINE_PX), where it stands in its group."""
        import cv2

        crop = (self.ink * piece)[: rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
        crop /= max(float(crop.max()), 1e-6)
        scale = min(LINE_PX / self.height, (SHAPE[1] - 2) / crop.shape[1], (SHAPE[0] - 4) / crop.shape[0])
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
        out = np.zeros(SHAPE, np.float32)
        left = (SHAPE[1] - size[0]) // 2
        out[2 : 2 + size[1], left : left + size[0]] = small
        return out


@dataclass
class Layout:
    """Every number found, line by line, in reading order."""

    frame: scene.Frame
    work: tuple[int, int]  # the work image's shape, which boxes refer to
    inverted: bool
    lines: list[list[list[Group]]] = field(default_factory=list)  # lines -> numbers -> groups
    reason: str | None = None  # why nothing was found

    def source_box(self, box: Box) -> list[int]:
        """`box` (work image) in the image as sent."""
        return list(self.frame.source_box(box, self.work))


def find(source: str | Path | bytes | np.ndarray, page: bool = True, work: int = WORK_SIZE) -> Layout:
    """The numbers in an image, in reading order; with `page` False the whole image is one number."""
    return arrange(ink_of(source, work), page)


def arrange(inked: Inked, page: bool = True) -> Layout:
    """The numbers in what ink_of found in an image (find)."""
    import cv2

    ink, mask, _, inverted, place = inked
    layout = Layout(place, ink.shape, inverted)
    if mask is None:
        layout.reason = BLANK
        return layout
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    marks = {k + 1: (int(s[1]), int(s[0]), int(s[1] + s[3]), int(s[0] + s[2])) for k, s in enumerate(stats[1:])}
    for top, bottom in _lines(mask) if page else [(0, mask.shape[0])]:
        groups = _groups({k: b for k, b in marks.items() if top <= (b[0] + b[2]) / 2 < bottom})
        if not groups:
            continue
        height = max(b[2] - b[0] for b, _ in groups)
        numbers = _numbers(groups, height) if page else [groups]
        if sum(len(n) for line in layout.lines for n in line) + len(groups) > MAX_GROUPS:
            raise DigitlabError(f"over {MAX_GROUPS} separate marks: too many to be numbers; send an image of numbers")
        layout.lines.append([[_group(b, ks, labels, ink, height) for b, ks in n] for n in numbers])
    return layout


def _lines(mask: np.ndarray) -> list[tuple[int, int]]:
    """Bands of rows with ink, split where whole rows are empty; a band much lower than the
    tallest (a stray mark, a dot) joins the nearer neighbour."""
    filled = mask.any(1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], filled.astype(np.int8), [0]])))
    bands = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    return _join_short(
        bands,
        height=lambda band: band[1] - band[0],
        gap=lambda band, other: max(other[0] - band[1], band[0] - other[1]),
        join=lambda band, other: (min(band[0], other[0]), max(band[1], other[1])),
    )


def _join_short(items: list, height, gap, join) -> list:
    """Each item much shorter than the tallest (FRAGMENT), the shortest first, joined to the
    neighbour before or after it that is nearer: a stray dot to its line, a broken stroke's
    piece to its digit. `join(neighbour, item)` makes the two one."""
    items = list(items)
    while len(items) > 1:
        heights = [height(item) for item in items]
        i = int(np.argmin(heights))
        if heights[i] >= FRAGMENT * max(heights):
            break
        j = min((j for j in (i - 1, i + 1) if 0 <= j < len(items)), key=lambda j: gap(items[i], items[j]))
        items[j] = join(items[j], items[i])
        del items[i]
    return items


def union(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def joined(groups: list[Group]) -> np.ndarray:
    """A number's groups as one: the ink of their marks only (not a neighbouring line's that
    reaches into their box), over the box they span in the work image."""
    top, left, bottom, right = union([g.box for g in groups])
    ink = np.zeros((bottom - top, right - left), np.float32)
    for g in groups:
        t, lf, b, r = g.box
        region = (slice(t - top, b - top), slice(lf - left, r - left))
        np.maximum(ink[region], g.ink * g.own, out=ink[region])
    return ink


def _groups(marks: dict[int, Box]) -> list[tuple[Box, list[int]]]:
    """Marks left to right, those whose columns overlap by half the narrower one together, then
    each group much shorter than the tallest joined to the neighbour whose columns come closest."""
    groups: list[tuple[Box, list[int]]] = []
    for k, b in sorted(marks.items(), key=lambda kb: kb[1][1]):
        if groups:
            box, ks = groups[-1]
            overlap = min(box[3], b[3]) - max(box[1], b[1])
            if overlap > 0.5 * min(box[3] - box[1], b[3] - b[1]):
                groups[-1] = (union([box, b]), [*ks, k])
                continue
        groups.append((b, [k]))
    return _join_short(
        groups,
        height=lambda group: group[0][2] - group[0][0],
        gap=lambda group, other: max(other[0][1] - group[0][3], group[0][1] - other[0][3]),
        join=lambda group, other: (union([group[0], other[0]]), group[1] + other[1]),
    )


def _numbers(groups: list[tuple[Box, list[int]]], height: float) -> list[list[tuple[Box, list[int]]]]:
    """A line's groups split into numbers where the gap is wider than NUMBER_GAP of its height."""
    numbers = [[groups[0]]]
    for previous, group in itertools.pairwise(groups):
        if group[0][1] - previous[0][3] > NUMBER_GAP * height:
            numbers.append([])
        numbers[-1].append(group)
    return numbers


def _group(box: Box, ks: list[int], labels: np.ndarray, ink: np.ndarray, height: float) -> Group:
    top, left, bottom, right = box
    marks = labels[top:bottom, left:right]
    return Group(box, height, ink[top:bottom, left:right], np.isin(marks, ks), marks, ks)


def _path(own: np.ndarray, start: int, height: float) -> np.ndarray:
    """The column of a cut in each row: from `start` at the top, a step of at most one column a
    row, within REACH of the line's height from `start`, crossing as little ink as it can."""
    reach = max(1, int(REACH * height))
    low, high = max(0, start - reach), min(own.shape[1], start + reach + 1)
    cost = own[:, low:high].astype(np.float32) + SIDESTEP * np.abs(np.arange(low, high) - start)[None, :] / reach
    height_px, width = cost.shape
    # Each row's least total to each column; inf either side, so that no step leaves the reach.
    totals = np.full((height_px, width + 2), np.inf, np.float32)
    totals[0, 1:-1] = cost[0]
    best = np.empty(width, np.float32)
    for y in range(1, height_px):
        before = totals[y - 1]
        np.minimum(before[:-2], before[1:-1], out=best)  # from x-1 or x
        np.minimum(best, before[2:], out=best)  # or x+1
        np.add(best, cost[y], out=totals[y, 1:-1])
    path = np.zeros(height_px, np.int64)
    path[-1] = int(totals[-1, 1:-1].argmin())
    for y in range(height_px - 1, 0, -1):  # back up: the first of x-1, x, x+1 with the least total
        path[y - 1] = path[y] - 1 + int(totals[y - 1, path[y] : path[y] + 3].argmin())
    return path + low


def _cuts(own: np.ndarray, ks: list[int], labels: np.ndarray, height: float) -> list[int]:
    """Candidate cuts in a group: the columns where least ink crosses (local minima of the
    column counts), and the edges of its separate marks; none nearer than MIN_PIECE to another."""
    counts = np.convolve(own.sum(0).astype(np.float32), [0.25, 0.5, 0.25], mode="same")
    margin = max(1, int(MIN_PIECE * height))
    inner = np.arange(margin, own.shape[1] - margin)
    minima = [c for c in inner if counts[c] <= counts[c - 1] and counts[c] <= counts[c + 1]]
    # Where two digits meet, the outline dips from above or below: the deepest dips first.
    has = own.any(0)
    top = np.where(has, own.argmax(0), own.shape[0]).astype(np.float32)
    bottom = np.where(has, own.shape[0] - own[::-1].argmax(0), 0).astype(np.float32)
    dips = [(top[c] - min(top[: c + 1].min(), top[c:].min()), c) for c in inner if _peak(top, c)]
    dips += [(max(bottom[: c + 1].max(), bottom[c:].max()) - bottom[c], c) for c in inner if _peak(-bottom, c)]
    dips = [c for depth, c in sorted(dips, reverse=True) if depth >= DIP * height] if DIP else []
    edges = []
    if len(ks) > 1:
        for k in ks:
            cols = np.flatnonzero((labels == k).any(0))
            edges += [int(cols[0]), int(cols[-1]) + 1]
    chosen: list[int] = []
    inside = [e for e in edges if margin <= e <= own.shape[1] - margin]
    for c in [*inside, *dips, *sorted(minima, key=lambda c: counts[c])]:
        if len(chosen) >= CUTS * own.shape[1] / height:
            break
        if all(abs(c - o) >= margin for o in chosen):
            chosen.append(int(c))
    return chosen


def _peak(profile: np.ndarray, c: int) -> bool:
    """A local maximum of `profile` at column c (or on a plateau)."""
    return bool(profile[c] >= profile[c - 1] and profile[c] >= profile[c + 1])


def _piece(own: np.ndarray, marks: np.ndarray, ks: list[int], between: np.ndarray) -> np.ndarray:
    """The ink `between` two cuts: a mark mostly inside (or out) is taken whole (or left), a
    mark that crosses a cut (touching digits) is cut along it."""
    piece = own & between
    if len(ks) > 1:
        for k in ks:
            mark = marks == k
            inside = (mark & between).sum() / max(1, mark.sum())
            if inside >= 0.8:
                piece |= mark
            elif inside <= 0.2:
                piece &= ~mark
    return piece
