"""A second reading of each number, whole, by the line reader (assets/line.onnx: two readers
trained with CTC by training/line_reader.py from seeds of their own, read together), and when it
wins over the reading by cuts (read/number.py).

The reading by cuts is the classifier's, calibrated, and most numbers end there: each digit a
mark of its own, every one at least DOUBT. The line reader has seen deep overlaps that no cut
separates, and non-digits, which it learnt to read as nothing. How sure it is of a reading is
the probability it gives the whole number (CTC's sum over the paths that spell it), not its
least digit's: that one stays high where two readings share the steps. Its reading is taken
where it differs from the cuts' and is at least
  CUT_SURE    where the cuts had to split a mark: touching digits, where cuts go wrong most;
  LINE_SURE   where each digit was a mark of its own but one read under DOUBT;
  ANSWER      where the cuts declined a part, and it reads no fewer digits than the cuts found
              parts (it reads a blot beside two digits as those two, which must not pass).
The settings were chosen on the validation family of data/lines.py, validation pages and
held-out non-digits by benchmarks/choose_line_rule.py (docs/robustness/bench-numbers.md).
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import NamedTuple

import numpy as np

from digitlab.image import segment
from digitlab.image.strip import HEIGHT, WIDTH, strip
from digitlab.io.runtime import onnx_session, run_onnx
from digitlab.training.line_reader import decode

LINE = Path(__file__).resolve().parents[1] / "assets" / "line.onnx"
DOUBT = 0.99
CUT_SURE = 0.0  # any reading it gives: where a mark was split, it reads touching digits better than cuts
LINE_SURE = 0.5
ANSWER = 0.5


class Reading(NamedTuple):
    """A number read whole by the line reader."""

    text: str  # its digits
    confidence: np.ndarray  # each digit's probability, at the step where it was read
    boxes: list[tuple[int, int, int, int]]  # each digit's box in the work image: equal shares of the number
    rows: np.ndarray  # (digits, 10): the ten digits' probabilities at each digit's step
    probability: float  # the probability the reader gives the whole reading


@functools.cache
def _session(path: Path):
    return onnx_session(path)


def reread(read: list[dict], numbers: list[list[segment.Group]], layout: segment.Layout, top_k: int = 3) -> list[dict]:
    """`read` (each of `numbers` read by cuts), with the line reader's reading where the rule above
    says: only numbers the cuts declined, split or read with a doubtful digit are read again."""
    doubted = [k for k, n in enumerate(read) if doubtful(n, len(numbers[k]))]
    out = list(read)
    lines = read_lines([numbers[k] for k in doubted])
    for k, (text, confidence, boxes, rows, probability) in zip(doubted, lines, strict=True):
        if not wins(read[k], len(numbers[k]), text, probability):
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
        out[k] = {**read[k], "number": text, "confidence": round(probability, 6), "digits": digits, "reason": None}
    return out


def ranked(p: np.ndarray, top_k: int) -> list[dict]:
    """The `top_k` most probable digits of ten probabilities `p`, most probable first: an answer's top_k."""
    return [{"digit": int(d), "probability": round(float(p[d]), 6)} for d in np.argsort(-p)[:top_k]]


def doubtful(cut: dict, marks: int, doubt: float | None = None) -> bool:
    """Whether a number read by cuts from `marks` marks is read again: declined, a mark split, or
    a digit under `doubt` (DOUBT)."""
    doubt = DOUBT if doubt is None else doubt
    if not cut["digits"]:
        return False
    return cut["number"] is None or _split(cut, marks) or min(d["confidence"] for d in cut["digits"]) < doubt


def _split(cut: dict, marks: int) -> bool:
    """Whether the cuts read more digits than there were marks: a mark cut into several."""
    return len(cut["digits"]) > marks


def wins(
    cut: dict,
    marks: int,
    text: str,
    probability: float,
    sure: float | None = None,
    cut_sure: float | None = None,
    answer: float | None = None,
) -> bool:
    """Whether the line reader's reading (`text`, its `probability`) replaces a doubtful reading
    by cuts from `marks` marks (LINE_SURE, CUT_SURE and ANSWER unless given)."""
    sure = LINE_SURE if sure is None else sure
    cut_sure = CUT_SURE if cut_sure is None else cut_sure
    answer = ANSWER if answer is None else answer
    if not text or text == cut["number"]:
        return False
    if cut["number"] is None:  # declined; and a part it read as nothing stays declined
        return len(text) >= len(cut["digits"]) and probability >= answer
    return probability >= (cut_sure if _split(cut, marks) else sure)


def _logits(strips: np.ndarray, path: Path) -> np.ndarray:
    """The line reader's logits for (N, HEIGHT, WIDTH) strips: (READERS, N, STEPS, 11) for
    readers joined in one file (training/line_reader.join), (N, STEPS, 11) for one alone."""
    session = _session(path)
    return run_onnx(session, path, {session.get_inputs()[0].name: strips[..., None]})


def warm_up(path: Path = LINE) -> None:
    """The line reader's session made and run once on a blank strip: its set-up (~50 ms) paid
    before the first number, or the first declined digit that may be one, is read."""
    _logits(np.zeros((1, HEIGHT, WIDTH), np.float32), path)


def read_lines(numbers: list[list[segment.Group]], path: Path = LINE) -> list[Reading]:
    """Each number read whole by the line reader at `path`."""
    if not numbers:
        return []
    out = []
    read = decode(_logits(np.stack([strip(groups) for groups in numbers]), path))
    for groups, (text, confidence, rows, probability) in zip(numbers, read, strict=True):
        top, first, bottom, last = segment.union([g.box for g in groups])
        # CTC says which digits, not where: a digit is often emitted steps after its ink, once
        # the reader has seen past it. Each digit gets an equal share of the number's columns.
        edges = np.linspace(first, last, len(text) + 1).round().astype(int)
        boxes = [(top, int(a), bottom, int(max(b, a + 1))) for a, b in itertools.pairwise(edges)]
        out.append(Reading(text, confidence, boxes, rows, probability))
    return out
