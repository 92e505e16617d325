"""A written number as one strip, for the line reader: its groups' ink side by side, at one height.

The line reader (training/line_reader.py, read/number.py) reads a number whole, without cutting
it, so the strip keeps what cutting loses: where one digit's stroke runs into the next. Only the
number's own marks are kept (not a neighbouring line's that reaches into its box), the strongest
stroke made 1, the number's height scaled to HEIGHT and its width with it, left-aligned in WIDTH
columns (a number wider than that is shrunk to fit, its height with it).
"""

from __future__ import annotations

import numpy as np

from digitlab.image.preprocess import percentile
from digitlab.image.segment import Group, joined

HEIGHT = 32
WIDTH = 192  # 6 digit heights: five wide digits with ordinary gaps; wider numbers shrink
MARGIN = 2  # px of paper above and below, so that no stroke touches the edge


def strip(groups: list[Group]) -> np.ndarray:
    """The strip (HEIGHT, WIDTH) float32 of a number's groups."""
    import cv2

    ink = joined(groups)
    if ink.max() > 0:
        ink /= max(float(percentile(ink[ink > 0], 90)), 1e-6)
    ink = np.clip(ink, 0.0, 1.0)
    scale = min((HEIGHT - 2 * MARGIN) / ink.shape[0], WIDTH / ink.shape[1])
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    small = cv2.resize(ink, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((HEIGHT, WIDTH), np.float32)
    row = (HEIGHT - size[1]) // 2
    out[row : row + size[1], : size[0]] = small
    return out
