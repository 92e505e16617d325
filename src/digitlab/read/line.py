"""A second reading of each number, whole, by the line reader (assets/line.onnx, trained with CTC
by training/line_reader.py), and when it wins over the reading by cuts (read/number.py).

The reading by cuts is the classifier's, calibrated, and most numbers end there: every digit of
them at least DOUBT. The line reader has seen deep overlaps that no cut separates, and
non-digits, which it learnt to read as nothing. Its reading is taken where each of its digits is
at least LINE_SURE and the reading by cuts found a digit in every part but differs; or where the
cuts declined a part, each of its digits is at least ANSWER and it reads no fewer digits than
the cuts found parts (it reads a blot beside two digits as those two, which must not pass for
the number). The settings were chosen on the validation family of data/lines.py, validation
pages and held-out non-digits by benchmarks/choose_line_rule.py (docs/robustness/bench-numbers.md).
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

import numpy as np

from digitlab.image import segment
from digitlab.image.strip import strip
from digitlab.io.native import onnx_session, run_onnx
from digitlab.training.line_reader import decode

LINE = Path(__file__).resolve().parents[1] / "assets" / "line.onnx"
LINE_SURE = 0.5
DOUBT = 0.99
ANSWER = 0.8


@functools.cache
def _session(path: Path):
    return onnx_session(path)


def reread(read: list[dict], numbers: list[list[segment.Group]], layout: segment.Layout, top_k: int = 3) -> list[dict]:
    """`read` (each of `numbers` read by cuts), with the line reader's reading where the rule above
    says: only numbers the cuts declined or read with a doubtful digit are read again."""
    doubted = [k for k, n in enumerate(read) if doubtful(n)]
    out = list(read)
    for k, (text, confidence, boxes, rows) in zip(doubted, read_lines([numbers[k] for k in doubted]), strict=True):
        if not wins(read[k], text, confidence):
            continue
        digits = [
            {
                "digit": int(c),
                "confidence": round(float(p), 6),
                "top_k": ranked(row, top_k),
                "box": layout.source_box(b),
            }
            for c, p, b, row in zip(text, confidence, boxes, rows, strict=True)
        ]
        # image28 stays the cut pieces: what --show and the suite's picture draw, 28 rows tall
        confident = round(float(np.prod(confidence)), 6)
        out[k] = {**read[k], "number": text, "confidence": confident, "digits": digits, "reason": None}
    return out


def ranked(p: np.ndarray, top_k: int) -> list[dict]:
    """The `top_k` most probable digits of ten probabilities `p`, most probable first: an answer's top_k."""
    return [{"digit": int(d), "probability": round(float(p[d]), 6)} for d in np.argsort(-p)[:top_k]]


def doubtful(cut: dict, doubt: float | None = None) -> bool:
    """Whether a number read by cuts is read again: a digit of it under `doubt` (DOUBT)."""
    doubt = DOUBT if doubt is None else doubt
    return bool(cut["digits"]) and min(d["confidence"] for d in cut["digits"]) < doubt


def wins(cut: dict, text: str, confidence: np.ndarray, sure: float | None = None, answer: float | None = None) -> bool:
    """Whether the line reader's reading (`text`, each digit's probability) replaces a doubtful
    reading by cuts (LINE_SURE and ANSWER unless given)."""
    sure, answer = LINE_SURE if sure is None else sure, ANSWER if answer is None else answer
    declined = cut["number"] is None
    if declined and len(text) < len(cut["digits"]):  # a part it read as nothing
        return False
    return bool(text) and text != cut["number"] and float(confidence.min()) >= (answer if declined else sure)


def read_lines(numbers: list[list[segment.Group]], path: Path = LINE) -> list[tuple]:
    """Each number read whole by the line reader at `path`: its digits, each digit's probability,
    box (work image) and ten digits' probabilities."""
    if not numbers:
        return []
    session = _session(path)
    feeds = {session.get_inputs()[0].name: np.stack([strip(groups) for groups in numbers])[..., None]}
    out = []
    for groups, (text, confidence, rows) in zip(numbers, decode(run_onnx(session, path, feeds)), strict=True):
        top, first, bottom, last = segment.union([g.box for g in groups])
        # CTC says which digits, not where: a digit is often emitted steps after its ink, once
        # the reader has seen past it. Each digit gets an equal share of the number's columns.
        edges = np.linspace(first, last, len(text) + 1).round().astype(int)
        boxes = [(top, int(a), bottom, int(max(b, a + 1))) for a, b in itertools.pairwise(edges)]
        out.append((text, confidence, boxes, rows))
    return out
