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


def reread(read: list[dict], numbers: list[list[segment.Group]], layout: segment.Layout, top_k: int = 3) -> list[dict]:
    """`read` (each of `numbers` read by cuts), with the line reader's reading where the rule above
    says: only numbers the cuts read whole with a doubtful digit are read again."""
    doubted = [
        k for k, n in enumerate(read) if n["number"] is not None and min(d["confidence"] for d in n["digits"]) < DOUBT
    ]
    out = list(read)
    for k, (text, confidence, boxes, rows) in zip(doubted, read_lines([numbers[k] for k in doubted]), strict=True):
        if text and text != read[k]["number"] and confidence.min() >= LINE_SURE:
            digits = [
                {
                    "digit": int(c),
                    "confidence": round(float(p), 6),
                    "top_k": [
                        {"digit": int(d), "probability": round(float(row[d]), 6)} for d in np.argsort(-row)[:top_k]
                    ],
                    "box": layout.source_box(b),
                }
                for c, p, b, row in zip(text, confidence, boxes, rows, strict=True)
            ]
            # image28 stays the cut pieces: what --show and the suite's picture draw, 28 rows tall
            out[k] = {**read[k], "number": text, "confidence": round(float(np.prod(confidence)), 6), "digits": digits}
    return out


def read_lines(numbers: list[list[segment.Group]]) -> list[tuple]:
    """Each number read whole: its digits, each digit's probability, box (work image) and ten
    digits' probabilities."""
    if not numbers:
        return []
    strips = [strip(groups) for groups in numbers]
    session = _session()
    feeds = {session.get_inputs()[0].name: np.stack([s for s, _, _ in strips])[..., None]}
    out = []
    for groups, (_, scale, left), (text, confidence, steps, rows) in zip(
        numbers, strips, decode(run_onnx(session, LINE, feeds)), strict=True
    ):
        top, first, bottom, last = segment.union([g.box for g in groups])
        centres = (steps + 0.5) * WIDTH / STEPS  # strip columns
        edges = np.concatenate([[0.0], (centres[1:] + centres[:-1]) / 2, [WIDTH]])
        boxes = [
            (top, max(first, left + int(a * scale)), bottom, min(last, left + int(np.ceil(b * scale))))
            for a, b in itertools.pairwise(edges)
        ]
        out.append((text, confidence, boxes, rows))
    return out
