"""A second reading of each number, whole, by the line reader (assets/line.onnx, trained with CTC
by training/line_reader.py), and when it wins over the reading by cuts (read/number.py).

The reading by cuts is the classifier's, calibrated, and most numbers end there. The line reader
has seen deep overlaps that no cut separates, but never a non-digit: given a letter or a blot it
reads digits all the same. So its reading is taken only where the reading by cuts found a digit
in every part, differs from it with a digit under DOUBT, and each of the line reader's digits is
at least LINE_SURE. Both were chosen on the validation family of data/lines.py
(docs/robustness/bench-numbers.md).
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np

from digitlab.image import segment
from digitlab.image.strip import WIDTH, strip
from digitlab.io.native import onnx_session, run_onnx
from digitlab.training.line_reader import STEPS, decode

LINE = Path(__file__).resolve().parents[1] / "assets" / "line.onnx"
LINE_SURE = 0.8
DOUBT = 0.9


@functools.cache
def _session():
    return onnx_session(LINE)


def read_lines(numbers: list[list[segment.Group]]) -> list[tuple]:
    """Each number read whole: its digits, each digit's probability, box (work image) and ten
    digits' probabilities, and the strip the reader saw."""
    if not numbers:
        return []
    strips = [strip(groups) for groups in numbers]
    session = _session()
    feeds = {session.get_inputs()[0].name: np.stack([s for s, _, _ in strips])[..., None]}
    out = []
    for groups, (image, scale, left), (text, confidence, steps, rows) in zip(
        numbers, strips, decode(run_onnx(session, LINE, feeds)), strict=True
    ):
        top, first, bottom, last = segment.union([g.box for g in groups])
        centres = (steps + 0.5) * WIDTH / STEPS  # strip columns
        edges = np.concatenate([[0.0], (centres[1:] + centres[:-1]) / 2, [WIDTH]])
        boxes = [
            (top, max(first, left + int(a * scale)), bottom, min(last, left + int(np.ceil(b * scale))))
            for a, b in itertools.pairwise(edges)
        ]
        out.append((text, confidence, boxes, rows, image))
    return out


def prefer(number: dict, reading: tuple, layout: segment.Layout, top_k: int = 3) -> dict:
    """`number` (the reading by cuts) or, where the rule above says so, the line reader's."""
    text, confidence, boxes, rows, _ = reading
    if not text or confidence.min() < LINE_SURE or number["number"] is None:
        return number  # a part the classifier takes for no digit stays declined: the line reader never saw one
    cuts = [d["confidence"] for d in number["digits"]]
    if number["number"] == text or min(cuts, default=0) >= DOUBT:
        return number
    digits = [
        {
            "digit": int(c),
            "confidence": round(float(p), 6),
            "top_k": [{"digit": int(d), "probability": round(float(row[d]), 6)} for d in np.argsort(-row)[:top_k]],
            "box": layout.source_box(b),
        }
        for c, p, b, row in zip(text, confidence, boxes, rows, strict=True)
    ]
    confident = round(float(np.prod(confidence)), 6)
    return {**number, "number": text, "confidence": confident, "digits": digits}  # image28: the cut pieces
