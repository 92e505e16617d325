"""Read digits with a loaded model: the calibrated answer for each image, declined where the
model is not confident enough, and whole images (one digit, or a number) from a file or bytes."""

from __future__ import annotations

import numpy as np

from digitlab.image.preprocess import prepare, segment
from digitlab.io.calibration import scale_temperature
from digitlab.io.native import Model


def read(model: Model, images: np.ndarray, top_k: int = 3, threshold: float | None = None) -> list[dict]:
    """One answer per (28, 28) image: the digit, or None with a reason when the calibrated
    confidence falls below the model's threshold (letters, scribbles, noise)."""
    threshold = model.info["threshold"] if threshold is None else threshold
    probs = scale_temperature(model.probabilities(images.reshape(-1, 28, 28, 1)), model.info["temperature"])
    answers = []
    for p in probs:
        order = np.argsort(-p)[:top_k]
        digit, confidence = int(order[0]), float(p[order[0]])
        answer = {
            "digit": digit,
            "confidence": round(confidence, 6),
            "probabilities": [round(float(v), 6) for v in p],
            "top_k": [{"digit": int(d), "probability": round(float(p[d]), 6)} for d in order],
        }
        if confidence < threshold:
            answer |= {
                "digit": None,
                "reason": f"does not look like a digit: confidence {confidence:.2f} is under "
                f"the threshold {threshold:.2f} (closest digit: {digit})",
            }
        answers.append(answer)
    return answers


def predict_image(model: Model, source, top_k: int = 3, number: bool = False) -> dict:
    """Read one image (path or bytes): a digit, or with `number` a left-to-right string."""
    if not number:
        prepared = prepare(source)
        answer = {"digit": None, "confidence": None, "probabilities": None, "reason": prepared.reason}
        if prepared.reason is None:
            answer = read(model, prepared.image, top_k)[0]
        # Where the digit is in the image as sent (top, left, bottom, right), to show the user.
        box = list(prepared.source_box) if prepared.source_box else None
        return answer | {"inverted": prepared.inverted, "box": box, "image28": prepared.image}
    digits = segment(source)
    found = [d for d in digits if d.reason is None]
    threshold = model.info.get("number_threshold", model.info["threshold"])  # a digit by the user's word
    answers = read(model, np.stack([d.image for d in found]), top_k, threshold) if found else []
    per_digit = []
    for d in digits:
        per_digit.append(answers.pop(0) if d.reason is None else {"digit": None, "reason": d.reason})
        per_digit[-1]["box"] = d.boxes[0] if d.boxes else None
    reasons = [a["reason"] for a in per_digit if a["digit"] is None]
    text = None if reasons else "".join(str(a["digit"]) for a in per_digit)
    return {
        "number": text,
        "digits": per_digit,
        "reason": reasons[0] if reasons else None,
        "image28": np.concatenate([d.image for d in digits], axis=1),
    }
