"""The robustness suite: how a model reads what people bring, and how plainly it declines what
is not a digit. Every condition is made from a split's digits (test for the report, validation
for choosing a model) or from the suite's own non-digit sources, with seeds that training never
uses (SEED), so its figures measure generalisation, not memory.

  clean       the split itself, 28x28 arrays
  MNIST-C     Mu & Gilmer's 15 corruptions (corruptions.py), fed as 28x28 arrays as in the paper
  real input  synth.py's photos, canvas strokes, small scans and printed digits, encoded as files
              and read through predict's own preprocessing
  numbers     2-5 digits written side by side, read with --number: the whole string must match
  in the wild desk photos, numbers at one height, touching numbers and pages (wild.py)
  not digits  negatives.evaluation()'s kinds through the same preprocessing: the share declined,
              and the AUROC of digits against them by calibrated confidence: the clean digits, and
              those with every real-input digit

tables.py writes the suite's files: robustness.json, .csv, .md and .png.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from digitlab import cache
from digitlab.io.native import Model
from digitlab.nn.calibration import scale_temperature
from digitlab.robustness.wild import family, numbers

SEED = 20_261_129  # far from training seeds (0, 1, 2, ...); the validation counterpart adds 1
READERS = ("digitlab", "naive")  # digitlab's preprocessing, or the usual demo's resize to 28x28


@dataclass
class Result:
    """One condition's figures."""

    group: str
    condition: str
    n: int
    accuracy: float | None = None  # top digit right, whether declined or not (MNIST-C's figure)
    read: float | None = None  # accepted and right: what a user sees as a right answer
    declined: float | None = 0.0  # declined by preprocessing or by the threshold (None: not measured)
    auroc: float | None = None  # not digits: clean and real-input digits against this kind, by confidence
    auroc_clean: float | None = None  # the same against the split's clean digits only
    example: np.ndarray | None = field(default=None, repr=False)  # one 28x28 the model saw


@dataclass
class Suite:
    split: str
    reader: str
    model: str
    rows: list[Result]

    def summary(self) -> dict:
        by_group = {g: [r for r in self.rows if r.group == g] for g in ("clean", "MNIST-C", "not digits")}
        corrupt = by_group["MNIST-C"]
        worst = min(corrupt, key=lambda r: r.accuracy) if corrupt else None
        return {
            "clean_accuracy": by_group["clean"][0].accuracy if by_group["clean"] else None,
            "clean_declined": by_group["clean"][0].declined if by_group["clean"] else None,
            "mnist_c_mean": float(np.mean([r.accuracy for r in corrupt])) if corrupt else None,
            "mnist_c_worst": f"{worst.condition} {worst.accuracy:.2%}" if worst else None,
            "not_digits_declined": self._pooled_declined(by_group["not digits"]),
            "auroc": next((r.auroc for r in self.rows if r.condition == "all"), None),
            "auroc_clean": next((r.auroc_clean for r in self.rows if r.condition == "all"), None),
        }

    @staticmethod
    def _pooled_declined(rows: list[Result]) -> float | None:
        rows = [r for r in rows if r.condition != "all"]
        return float(sum(r.declined * r.n for r in rows) / sum(r.n for r in rows)) if rows else None

    def to_json(self) -> dict:
        rows = [{k: v for k, v in asdict(r).items() if k != "example"} for r in self.rows]
        return {
            "split": self.split,
            "reader": self.reader,
            "model": self.model,
            "summary": self.summary(),
            "rows": rows,
        }


def _confidence(model: Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated top probability and top digit of (N, 28, 28) images."""
    if len(images) == 0:
        return np.zeros(0), np.zeros(0, int)
    probs = scale_temperature(model.probabilities(images.reshape(-1, 28, 28, 1)), model.info["temperature"])
    return probs.max(1), probs.argmax(1)


def prepare_files(files: list[bytes], reader: str) -> tuple[np.ndarray, np.ndarray]:
    """Each file through preprocessing: the (N, 28, 28) images and which ones it let through."""
    from digitlab.image.preprocess import naive, prepare

    if reader == "naive":
        return np.stack([naive(f) for f in files]), np.ones(len(files), bool)
    prepared = [prepare(f) for f in files]
    return np.stack([p.image for p in prepared]), np.array([p.reason is None for p in prepared])


def read_prepared(model: Model, images: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, digit) of prepared images; one that preprocessing declined (not `ok`) has
    confidence 0 and digit -1."""
    confidence, digit = np.zeros(len(images)), np.full(len(images), -1)
    confidence[ok], digit[ok] = _confidence(model, images[ok])
    return confidence, digit


def suite_seed(split: str) -> int:
    """The suite's seed on a split; each condition adds an offset of its own, under 1,000."""
    return SEED + 10_000 * (split != "test")


def real_inputs(kind: str, images: np.ndarray, labels: np.ndarray, n: int, seed: int) -> tuple[list[bytes], np.ndarray]:
    """The encoded files of a real-input condition (synth.KINDS) and their digits."""
    from digitlab.data import synth

    return synth.render(kind, images, labels, n, seed=real_input_seed(kind, seed))


def real_input_seed(kind: str, seed: int) -> int:
    """The seed a real-input condition renders with, from the split's seed."""
    from digitlab.data import synth

    return seed + 100 + synth.KINDS.index(kind)


def not_digits(kind: str, n: int, seed: int) -> list[bytes]:
    """The encoded files of a non-digit condition (negatives.EVAL_KINDS)."""
    from digitlab.data import negatives

    return negatives.evaluation(kind, n, seed + 300 + negatives.EVAL_KINDS.index(kind))


def _digit_row(group, condition, labels, confidence, digit, images, threshold) -> Result:
    accepted = confidence >= threshold
    return Result(
        group,
        condition,
        len(labels),
        accuracy=float((digit == labels).mean()),
        read=float(((digit == labels) & accepted).mean()),
        declined=float(1 - accepted.mean()),
        example=images[0],
    )


def measure(
    models: list[Model],
    images: np.ndarray,
    labels: np.ndarray,
    split: str = "test",
    n: int = 500,
    reader: str = "digitlab",
    corruption_n: int | None = None,
    wild: bool = True,
) -> list[Suite]:
    """Every condition on `n` images of the split (`corruption_n` for MNIST-C: the paper uses
    the whole test split), read by each model with its calibrated threshold: one Suite a model.
    `wild`: with the desk photos, numbers and pages (wild.py).
    Each condition is made and prepared once for all of them (most of the suite's time)."""
    from digitlab.data import corruptions, negatives, scenes, synth

    seed = suite_seed(split)
    images, labels = images.reshape(-1, 28, 28), np.asarray(labels)
    source = cache.fingerprint(images), cache.fingerprint(labels)

    def prepared(condition: str, make: Callable[[], tuple[list[bytes], np.ndarray]]) -> tuple[np.ndarray, ...]:
        """A condition's images through preprocessing, which ones it let through, and their labels:
        the same for every model, so made once (cache.py)."""

        def made() -> tuple[np.ndarray, ...]:
            files, truth = make()
            return (*prepare_files(files, reader), np.asarray(truth))

        return cache.arrays("suite", (condition, n, seed, reader, *source), made)

    rows: list[list[Result]] = [[] for _ in models]
    digit_confidence: list[list[np.ndarray]] = [[] for _ in models]

    def each(group: str, condition: str, seen: np.ndarray, ok: np.ndarray, truth: np.ndarray, track: bool) -> None:
        for m, model in enumerate(models):
            confidence, digit = read_prepared(model, seen, ok)
            rows[m].append(_digit_row(group, condition, truth, confidence, digit, seen, model.info["threshold"]))
            if track:
                digit_confidence[m].append(confidence)

    pick = np.random.default_rng(seed).permutation(len(labels))  # offset 0; the conditions start at 1
    clean = images[pick[:n]]
    each("clean", "clean", clean, np.ones(len(clean), bool), labels[pick[:n]], track=True)

    some = pick[: corruption_n or n]
    for i, name in enumerate(corruptions.NAMES):
        corrupted = corruptions.corrupt(name, images[some], seed=seed + 1 + i)
        each("MNIST-C", name, corrupted, np.ones(len(some), bool), labels[some], track=False)

    for kind in synth.KINDS:
        seen, ok, truth = prepared(f"real input {kind}", lambda kind=kind: real_inputs(kind, images, labels, n, seed))
        each("real input", kind, seen, ok, truth, track=True)

    for m, model in enumerate(models):
        rows[m].append(_numbers(model, images, labels, n, seed + 200, reader))

    if wild:  # what users photograph: the generators' family of this split (wild.py)
        seen, ok, truth = prepared("desk photos", lambda: scenes.render(images, labels, n, family=family(split)))
        each("in the wild", "desk photos", seen, ok, truth, track=False)
        for m, model in enumerate(models):
            if reader == "naive":  # the demo has no segmentation: numbers are not measured
                rows[m] += [Result("in the wild", c, 0) for c in ("one height", "touching", "pages")]
            else:
                rows[m] += [Result("in the wild", **row) for row in numbers(model, images, labels, split, n)]

    # Non-digits against each model's digits: the clean ones, and those with every real input.
    against = [(confidences[0], np.concatenate(confidences)) for confidences in digit_confidence]
    pooled: list[list[np.ndarray]] = [[] for _ in models]
    for kind in negatives.EVAL_KINDS:
        seen, ok, _ = prepared(f"not digits {kind}", lambda kind=kind: (not_digits(kind, n, seed), []))
        for m, model in enumerate(models):
            confidence, _ = read_prepared(model, seen, ok)
            pooled[m].append(confidence)
            shown = seen[int(np.argmax(confidence > 0))]  # one that preprocessing let through, if any did
            rows[m].append(_not_digit_row(kind, confidence, *against[m], model.info["threshold"], shown))
    for m, model in enumerate(models):
        rows[m].append(_not_digit_row("all", np.concatenate(pooled[m]), *against[m], model.info["threshold"]))
    return [Suite(split, reader, str(m.info.get("name", "model")), r) for m, r in zip(models, rows, strict=True)]


def _not_digit_row(condition, confidence, clean, digits, threshold, example=None) -> Result:
    """Non-digits' confidences: the share declined, and the AUROC against the clean digits'
    confidences and against all digits' (clean and real input)."""
    from sklearn.metrics import roc_auc_score

    def auroc(positives: np.ndarray) -> float:
        truth = np.r_[np.ones(len(positives)), np.zeros(len(confidence))]
        return float(roc_auc_score(truth, np.r_[positives, confidence]))

    declined = float((confidence < threshold).mean())
    return Result(
        "not digits",
        condition,
        len(confidence),
        declined=declined,
        auroc=auroc(digits),
        auroc_clean=auroc(clean),
        example=example,
    )


def _guess(digit: dict) -> int | None:
    """A number's digit as read, or where it was declined, its top guess."""
    if digit.get("digit") is not None:
        return digit["digit"]
    return digit.get("top_k", [{}])[0].get("digit")


def _numbers(model: Model, images, labels, n: int, seed: int, reader: str) -> Result:
    """Written numbers read whole: right only if every digit is read and right."""
    from digitlab.data import synth
    from digitlab.read.predict import predict_image

    if reader == "naive":  # the demo has no segmentation: nothing to measure
        return Result("numbers", "2-5 digits", 0)
    files, texts = synth.numbers(images, labels, n, seed)
    answers = [predict_image(model, f, number=True) for f in files]
    right = np.array([a["number"] == t for a, t in zip(answers, texts, strict=True)])
    declined = np.array([a["number"] is None for a in answers])
    top = [  # every digit's reading right, declined (its top guess) or not: the number's "accuracy"
        len(a["digits"]) == len(t) and all(_guess(d) == int(c) for d, c in zip(a["digits"], t, strict=True))
        for a, t in zip(answers, texts, strict=True)
    ]
    return Result(
        "numbers",
        "2-5 digits",
        n,
        accuracy=float(np.mean(top)),
        read=float(right.mean()),
        declined=float(declined.mean()),
        example=answers[0]["image28"][:, :28],
    )
