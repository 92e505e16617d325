"""Numbers read by recognition: every candidate piece (image/segment.py) is scored by the
classifier, and each group of marks is read as the pieces that together look most like digits.

A piece's score is the log of its calibrated confidence, less a cost for a piece much wider than
a digit stands tall, less a cost per piece: a halved 0 reads as two confident 1s, so a cut must
buy more confidence than the whole had. The costs were chosen on the validation family of
data/lines.py (docs/robustness/bench-numbers.md); a bonus per piece instead (which a sum of
log-confidences needs to prefer touching digits read apart) split too many wide digits there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digitlab.image import segment
from digitlab.io.calibration import scale_temperature
from digitlab.io.native import Model

WIDE = 1.2  # a piece wider than this share of its line's height pays WIDE_COST per share beyond
WIDE_COST = 2.0
PIECE_BONUS = -0.5  # log-confidence per piece: negative, a cost; each cut must buy this much
SURE = 0.99  # a group read whole with this confidence, at a digit's width, is not cut
SURE_WIDTH = 1.0  # share of the line's height
PAGE_WORK = 1600  # px, a page's longer side: numbers on a page are small


def read_numbers(model: Model, source: str | Path | bytes | np.ndarray, page: bool = True, top_k: int = 3) -> dict:
    """Every number in an image, in reading order (lines top to bottom, left to right), each with
    its digits, confidence and box in the image as sent; or a reason where none is found."""
    layout = segment.find(source, page=page, work=PAGE_WORK if page else segment.WORK_SIZE)
    if layout.reason:
        return {"numbers": [], "reason": layout.reason, "inverted": layout.inverted}
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
            found[id(g)] = [(p, whole[1], whole[0])]
        else:
            doubted.append(g)
    # Then the doubted ones cut: every piece scored, the best reading by dynamic programming.
    pieces = []
    for g in doubted:
        g.cut()
        pieces += [(g, span, g.piece(*span)) for span in g.spans()]
    pieces = [(g, span, piece) for g, span, piece in pieces if piece is not None]
    probs = _probabilities(model, [piece[0] for _, _, piece in pieces])
    scored: dict[int, dict] = {id(g): {} for g in doubted}
    for (g, span, (image, box)), p in zip(pieces, probs, strict=True):
        scored[id(g)][span] = (p, box, image)
    for g in doubted:
        found[id(g)] = _best(g, scored[id(g)])
    threshold = model.info.get("number_threshold", model.info["threshold"])  # a digit by the user's word
    numbers = [
        _number(layout, [r for g in number for r in found.get(id(g), [])], threshold, top_k)
        for line in layout.lines
        for number in line
    ]
    return {"numbers": numbers, "reason": None if numbers else "no number found", "inverted": layout.inverted}


def _probabilities(model: Model, images: list[np.ndarray]) -> np.ndarray:
    if not images:
        return np.zeros((0, 10), np.float32)
    return scale_temperature(model.probabilities(np.stack(images)[..., None]), model.info["temperature"])


def _best(group: segment.Group, scored: dict[tuple[int, int], tuple]) -> list[tuple]:
    """The pieces that read the group best: dynamic programming over its cuts."""
    n = len(group.positions)
    score = np.full(n, -np.inf)
    score[0], back = 0.0, [-1] * n
    for j in range(1, n):
        for i in range(j):
            if (i, j) not in scored or score[i] == -np.inf:
                continue
            width = (group.positions[j] - group.positions[i]) / group.height
            p = scored[(i, j)][0]
            s = score[i] + np.log(max(p.max(), 1e-9)) - WIDE_COST * max(0.0, width - WIDE) + PIECE_BONUS
            if s > score[j]:
                score[j], back[j] = s, i
    if score[-1] == -np.inf:  # no path of pieces with ink: the group whole
        return [scored[(0, n - 1)]] if (0, n - 1) in scored else []
    chosen, j = [], n - 1
    while j > 0:
        chosen.append(scored[(back[j], j)])
        j = back[j]
    return chosen[::-1]


def _number(layout: segment.Layout, read: list[tuple], threshold: float, top_k: int) -> dict:
    """One number's answer from its digits' (probabilities, box, image)."""
    digits = []
    for place, (p, box, _) in enumerate(read, 1):
        order = np.argsort(-p)[:top_k]
        digit = {
            "digit": int(order[0]),
            "confidence": round(float(p[order[0]]), 6),
            "top_k": [{"digit": int(d), "probability": round(float(p[d]), 6)} for d in order],
            "box": layout.source_box(box),
        }
        if p[order[0]] < threshold:
            digit |= {
                "digit": None,
                "reason": f"part {place} of {len(read)} does not look like a digit: confidence "
                f"{p[order[0]]:.2f} under {threshold:.2f} (closest: {int(order[0])})",
            }
        digits.append(digit)
    reasons = [d["reason"] for d in digits if d["digit"] is None]
    box = segment.union([b for _, b, _ in read]) if read else (0, 0, 0, 0)
    return {
        "number": None if reasons or not digits else "".join(str(d["digit"]) for d in digits),
        "confidence": round(float(np.prod([p.max() for p, _, _ in read])), 6) if read else 0.0,
        "box": layout.source_box(box),
        "digits": digits,
        "reason": reasons[0] if reasons else None,
        "image28": np.concatenate([image for _, _, image in read], axis=1) if read else np.zeros((28, 28), np.float32),
    }
