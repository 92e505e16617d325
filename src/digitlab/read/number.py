"""Numbers read by recognition: every candidate piece (image/segment.py) is scored by the
classifier and by the piece model, and each group of marks is read as the pieces that together
look most like whole digits.

A cut piece is read by two experts: the classifier (calibrated probabilities of each digit) and
the piece model (assets/pieces.onnx, training/pieces.py), which sees the piece at its line's
height and has learnt from numbers written with training digits which digit a cut piece is, or
that it is not one whole digit (a half, a fragment, a pair). The classifier alone reads half a 0
as a confident 1 and a 1 touching a 7 as a 7. A piece reads as the digit d that maximises
p(d) * q(d) ** WHOLE; its score is the log of that, plus PIECE_BONUS per piece. The confidence
given, and the threshold under which a digit is declined, stay the classifier's p(d): where the
two disagree the answer says so by a low confidence. The weights
were chosen on the validation family of data/lines.py (docs/robustness/bench-numbers.md): with
the piece model a cost for pieces wider than a digit, which the classifier alone needed, no
longer helps.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from digitlab.image import segment
from digitlab.io.native import Model
from digitlab.io.runtime import onnx_session, run_onnx
from digitlab.nn.calibration import scale_temperature
from digitlab.read.line import ranked, reread

PIECES = Path(__file__).resolve().parents[1] / "assets" / "pieces.onnx"
WHOLE = 0.25  # weight of the piece model's log-probabilities beside the classifier's
PIECE_BONUS = 0.5  # per piece: two touching digits read apart score two logs, each below 0
SURE = 0.99  # a group read whole with this confidence, at a digit's width, is not cut
SURE_WIDTH = 1.0  # share of the line's height
PAGE_WORK = 1600  # px, a page's longer side: numbers on a page are small


def read_numbers(model: Model, source: str | Path | bytes | np.ndarray, page: bool = True, top_k: int = 3) -> dict:
    """Every number in an image, in reading order (lines top to bottom, left to right), each with
    its digits, confidence and box in the image as sent; or a reason where none is found."""
    layout = find(source, page)
    if layout.reason:
        return {"numbers": [], "reason": layout.reason, "inverted": layout.inverted}
    read, numbers = read_by_cuts(model, layout, top_k)
    # Then the doubtful ones read whole by the line reader, whose reading wins where read/line.py says.
    read = reread(read, numbers, layout, top_k)
    return {"numbers": read, "reason": None if read else "no number found", "inverted": layout.inverted}


def find(source: str | Path | bytes | np.ndarray, page: bool) -> segment.Layout:
    """The marks of an image grouped into lines and numbers, a page at its larger working size."""
    return segment.find(source, page=page, work=PAGE_WORK if page else segment.WORK_SIZE)


def read_by_cuts(model: Model, layout: segment.Layout, top_k: int = 3) -> tuple[list[dict], list[list[segment.Group]]]:
    """Each number of a layout read by the classifier and the piece model, and its groups."""
    groups = [g for line in layout.lines for number in line for g in number]
    # First each group whole: most are one digit, read with confidence at a digit's width.
    wholes = [g.piece() for g in groups]
    probs = _probabilities(model, [w[0] for w in wholes if w is not None])
    found, doubted, k = {}, [], 0
    for g, whole in zip(groups, wholes, strict=True):
        if whole is None:
            continue
        p, k = probs[k], k + 1
        narrow = whole[1][3] - whole[1][1] <= SURE_WIDTH * g.height
        if narrow and p.max() >= SURE:
            found[id(g)] = [(p, whole[1], whole[0], int(p.argmax()))]
        else:
            doubted.append(g)
    # Then the doubted ones cut: every piece scored, the best reading by dynamic programming.
    scored = score_pieces(model, doubted)
    for g in doubted:
        found[id(g)] = _best(g, scored[id(g)])
    threshold = model.info.get("number_threshold", model.info["threshold"])  # a digit by the user's word
    numbers = [number for line in layout.lines for number in line]
    read = [_number(layout, [r for g in number for r in found.get(id(g), [])], threshold, top_k) for number in numbers]
    return read, numbers


def score_pieces(model: Model, groups: list[segment.Group]) -> dict[int, dict]:
    """Every piece of every group cut: {id(group): {span: (probabilities, box, image, piece
    model's probabilities)}}."""
    pieces = []
    for g in groups:
        g.cut()
        pieces += [(g, span, g.piece(*span)) for span in g.spans()]
    pieces = [(g, span, piece) for g, span, piece in pieces if piece is not None]
    probs = _probabilities(model, [piece[0] for _, _, piece in pieces])
    whole = piece_probabilities(np.stack([piece[2] for _, _, piece in pieces])) if pieces else []
    scored: dict[int, dict] = {id(g): {} for g in groups}
    for (g, span, (image, box, _)), p, w in zip(pieces, probs, whole, strict=True):
        scored[id(g)][span] = (p, box, image, w)
    return scored


@functools.cache
def _piece_model():
    return onnx_session(PIECES)


def piece_probabilities(shapes: np.ndarray) -> np.ndarray:
    """The piece model's (N, 11) for pieces (N, *segment.SHAPE): each digit, then not one."""
    session = _piece_model()
    feeds = {session.get_inputs()[0].name: np.ascontiguousarray(shapes[..., None], np.float32)}
    return run_onnx(session, PIECES, feeds)


def _probabilities(model: Model, images: list[np.ndarray]) -> np.ndarray:
    if not images:
        return np.zeros((0, 10), np.float32)
    return scale_temperature(model.probabilities(np.stack(images)[..., None]), model.info["temperature"])


def _best(
    group: segment.Group,
    scored: dict[tuple[int, int], tuple],
    whole: float = WHOLE,
    bonus: float = PIECE_BONUS,
) -> list[tuple]:
    """The pieces that read the group best: dynamic programming over its cuts."""
    n = len(group.positions)
    score = np.full(n, -np.inf)
    score[0], back, read = 0.0, [-1] * n, [None] * n
    for j in range(1, n):
        for i in range(j):
            if (i, j) not in scored or score[i] == -np.inf:
                continue
            p, box, image, q = scored[(i, j)]
            joint = p * np.maximum(q[:10], 1e-9) ** whole
            s = score[i] + np.log(max(joint.max(), 1e-12)) + bonus
            if s > score[j]:
                score[j], back[j], read[j] = s, i, (p, box, image, int(joint.argmax()))
    if score[-1] == -np.inf:  # no path of pieces with ink: the group whole
        entire = scored.get((0, n - 1))
        return [(*entire[:3], int(entire[0].argmax()))] if entire else []
    chosen, j = [], n - 1
    while j > 0:
        chosen.append(read[j])
        j = back[j]
    return chosen[::-1]


def _number(layout: segment.Layout, read: list[tuple], threshold: float, top_k: int) -> dict:
    """One number's answer from its digits' (probabilities, box, image, digit read)."""
    digits = []
    for place, (p, box, _, d) in enumerate(read, 1):
        digit = {
            "digit": d,
            "confidence": round(float(p[d]), 6),
            "top_k": ranked(p, top_k),
            "box": layout.source_box(box),
        }
        if p[d] < threshold:
            digit |= {
                "digit": None,
                "reason": f"part {place} of {len(read)} does not look like a digit: confidence "
                f"{p[d]:.2f} under {threshold:.2f} (closest: {d})",
            }
        digits.append(digit)
    reasons = [d["reason"] for d in digits if d["digit"] is None]
    box = segment.union([r[1] for r in read]) if read else (0, 0, 0, 0)
    return {
        "number": None if reasons or not digits else "".join(str(d["digit"]) for d in digits),
        "confidence": round(float(np.prod([r[0][r[3]] for r in read])), 6) if read else 0.0,
        "box": layout.source_box(box),
        "digits": digits,
        "reason": reasons[0] if reasons else None,
        "image28": np.concatenate([r[2] for r in read], axis=1) if read else np.zeros((28, 28), np.float32),
    }
