"""Read digits with a loaded model: the calibrated answer for each image, declined where the
model is not confident enough, and whole images (one digit, or a number) from a file or bytes."""

from __future__ import annotations

import numpy as np

from digitlab.errors import DigitlabError
from digitlab.image import segment
from digitlab.image.preprocess import BLANK, MAX_MARKS, Inked, ink_of, prepare_ink
from digitlab.io.native import Model
from digitlab.nn.calibration import scale_temperature
from digitlab.read.line import LINE_SURE, ranked, read_lines
from digitlab.read.number import read_numbers

PAGE_NUMBERS = 3  # numbers found that make a declined image look like a page (pages hold 3-8)
# A mark this many times wider than tall may be digits that touch: 77% of the validation
# family's declined touching numbers are, none of 248 declined single digits of every synth
# kind (the widest 1.4), 40 of 540 held-out non-digits, wide symbols most (so it says "if").
TOUCHING_ASPECT = 1.5


def read(model: Model, images: np.ndarray, top_k: int = 3, threshold: float | None = None) -> list[dict]:
    """One answer per (28, 28) image: the digit, or None with a reason when the calibrated
    confidence falls below the model's threshold (letters, scribbles, noise)."""
    threshold = model.info["threshold"] if threshold is None else threshold
    probs = scale_temperature(model.probabilities(images.reshape(-1, 28, 28, 1)), model.info["temperature"])
    answers = []
    for p in probs:
        digit = int(p.argmax())
        confidence = float(p[digit])
        answer = {
            "digit": digit,
            "confidence": round(confidence, 6),
            "probabilities": [round(float(v), 6) for v in p],
            "top_k": ranked(p, top_k),
        }
        if confidence < threshold:
            answer |= {
                "digit": None,
                "reason": f"does not look like a digit: confidence {confidence:.2f} is under "
                f"the threshold {threshold:.2f} (closest digit: {digit})",
            }
        answers.append(answer)
    return answers


def _several(inked: Inked) -> str:
    """A hint for a declined image that holds several digits: a page of numbers (PAGE_NUMBERS or
    more found), or, unless its ink is scattered over more marks than a digit has (noise,
    texture: never one written number of the suite's), one number's digits side by side or
    touching. Looked for in the ink found to read a digit (preprocess.ink_of); where no other
    sign says so, the line reader reads the ink whole (a millisecond or two, on declines only).
    A hint that cannot be given is left out: the decline stands."""
    try:
        numbers = sum(len(line) for line in segment.arrange(inked, page=True).lines)
        if numbers >= PAGE_NUMBERS:
            return f"; if it is a page of numbers ({numbers} found), read them all with `digitlab read` (or /v1/read)"
        if inked.marks > MAX_MARKS:
            return ""
        groups = [g for line in segment.arrange(inked, page=False).lines for number in line for g in number]
    except DigitlabError:  # too many marks to be numbers: no hint
        return ""
    tall = max((g.box[2] - g.box[0] for g in groups), default=0)
    count = sum(g.box[2] - g.box[0] >= 0.6 * tall for g in groups)
    how = "read it as a number (--number, or number=true in the API)"
    if count >= 2:
        return f"; it looks like {count} digits side by side: {how}"
    if any(g.box[3] - g.box[1] >= TOUCHING_ASPECT * (g.box[2] - g.box[0]) for g in groups):
        return f"; if it is a number whose digits touch, {how}"
    # Touching digits no wider than one digit show no other sign: read whole, the line reader is
    # sure (its rule's bar) of several digits in most such numbers and in almost no declined single
    # digit or non-digit (figures: SERVING.md).
    if not groups:
        return ""
    try:
        whole = read_lines([groups])[0]
    except DigitlabError:  # the line reader could not run (a missing or broken line.onnx): no hint
        return ""
    if len(whole.text) >= 2 and whole.probability >= LINE_SURE:
        return f"; read whole it looks like the number {whole.text}: {how}"
    return ""


def predict_image(model: Model, source, top_k: int = 3, number: bool = False) -> dict:
    """Read one image (path or bytes): a digit, or with `number` a left-to-right string."""
    if not number:
        inked = ink_of(source)
        prepared = prepare_ink(inked)
        answer = {"digit": None, "confidence": None, "probabilities": None, "reason": prepared.reason}
        if prepared.reason is None:
            answer = read(model, prepared.image, top_k)[0]
        if answer["digit"] is None and prepared.reason != BLANK:
            answer["reason"] += _several(inked)
        # Where the digit is in the image as sent (top, left, bottom, right), to show the user.
        box = list(prepared.source_box) if prepared.source_box else None
        return answer | {"inverted": prepared.inverted, "box": box, "image28": prepared.image}
    found = read_numbers(model, source, page=False, top_k=top_k)
    if not found["numbers"]:
        return {"number": None, "digits": [], "reason": found["reason"], "image28": np.zeros((28, 28), np.float32)}
    return found["numbers"][0] | {"inverted": found["inverted"]}
