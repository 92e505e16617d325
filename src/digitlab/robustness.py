"""The robustness suite: how a model reads what people bring, and how plainly it declines what
is not a digit. Every condition is made from a split's digits (test for the report, validation
for choosing a model) or from the suite's own non-digit sources, with seeds that training never
uses (SEED), so its figures measure generalisation, not memory.

  clean       the split itself, 28x28 arrays
  MNIST-C     Mu & Gilmer's 15 corruptions (corruptions.py), fed as 28x28 arrays as in the paper
  real input  synth.py's photos, canvas strokes, small scans and printed digits, encoded as files
              and read through predict's own preprocessing
  numbers     2-5 digits written side by side, read with --number: the whole string must match
  not digits  negatives.evaluation()'s kinds through the same preprocessing: the share declined,
              and the AUROC of digits against them by calibrated confidence: the clean digits, and
              those with every real-input digit

This module owns the suite's files: robustness.json, .csv, .md and .png.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .files import write_atomic, write_json, write_text
from .predict import Model, scale_temperature

SEED = 20_261_129  # far from training seeds (0, 1, 2, ...); the validation counterpart adds 1
READERS = ("digitlab", "naive")  # digitlab's preprocessing, or the usual demo's resize to 28x28
FILES = ("robustness.json", "robustness.csv", "robustness.md", "robustness.png")


@dataclass
class Row:
    group: str
    condition: str
    n: int
    accuracy: float | None = None  # top digit right, whether declined or not (MNIST-C's figure)
    read: float | None = None  # accepted and right: what a user sees as a right answer
    declined: float = 0.0  # declined by preprocessing or by the threshold
    auroc: float | None = None  # not digits: clean and real-input digits against this kind, by confidence
    auroc_clean: float | None = None  # the same against the split's clean digits only
    example: np.ndarray | None = field(default=None, repr=False)  # one 28x28 the model saw


@dataclass
class Suite:
    split: str
    reader: str
    model: str
    rows: list[Row]

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
    def _pooled_declined(rows: list[Row]) -> float | None:
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
    from .preprocess import naive, prepare

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


def split_seed(split: str) -> int:
    """The suite's seed on a split; each condition adds an offset of its own, under 1,000."""
    return SEED + 10_000 * (split != "test")


def real_inputs(kind: str, images: np.ndarray, labels: np.ndarray, n: int, seed: int) -> tuple[list[bytes], np.ndarray]:
    """The encoded files of a real-input condition (synth.KINDS) and their digits."""
    from . import synth

    return synth.render(kind, images, labels, n, seed=real_input_seed(kind, seed))


def real_input_seed(kind: str, seed: int) -> int:
    """The seed a real-input condition renders with, from the split's seed."""
    from . import synth

    return seed + 100 + synth.KINDS.index(kind)


def not_digits(kind: str, n: int, seed: int) -> list[bytes]:
    """The encoded files of a non-digit condition (negatives.EVAL_KINDS)."""
    from . import negatives

    return negatives.evaluation(kind, n, seed + 300 + negatives.EVAL_KINDS.index(kind))


def _digit_row(group, condition, labels, confidence, digit, images, threshold) -> Row:
    accepted = confidence >= threshold
    return Row(
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
) -> list[Suite]:
    """Every condition on `n` images of the split (`corruption_n` for MNIST-C: the paper uses
    the whole test split), read by each model with its calibrated threshold: one Suite a model.
    Each condition is made and prepared once for all of them (most of the suite's time)."""
    from . import corruptions, negatives, synth

    seed = split_seed(split)
    images, labels = images.reshape(-1, 28, 28), np.asarray(labels)
    rows: list[list[Row]] = [[] for _ in models]
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
        files, kind_labels = real_inputs(kind, images, labels, n, seed)
        each("real input", kind, *prepare_files(files, reader), kind_labels, track=True)

    for m, model in enumerate(models):
        rows[m].append(_numbers(model, images, labels, n, seed + 200, reader))

    # Non-digits against each model's digits: the clean ones, and those with every real input.
    against = [(confidences[0], np.concatenate(confidences)) for confidences in digit_confidence]
    pooled: list[list[np.ndarray]] = [[] for _ in models]
    for kind in negatives.EVAL_KINDS:
        seen, ok = prepare_files(not_digits(kind, n, seed), reader)
        for m, model in enumerate(models):
            confidence, _ = read_prepared(model, seen, ok)
            pooled[m].append(confidence)
            shown = seen[int(np.argmax(confidence > 0))]  # one that preprocessing let through, if any did
            rows[m].append(_not_digit_row(kind, confidence, *against[m], model.info["threshold"], shown))
    for m, model in enumerate(models):
        rows[m].append(_not_digit_row("all", np.concatenate(pooled[m]), *against[m], model.info["threshold"]))
    return [Suite(split, reader, str(m.info.get("name", "model")), r) for m, r in zip(models, rows, strict=True)]


def _not_digit_row(condition, confidence, clean, digits, threshold, example=None) -> Row:
    """Non-digits' confidences: the share declined, and the AUROC against the clean digits'
    confidences and against all digits' (clean and real input)."""
    from sklearn.metrics import roc_auc_score

    def auroc(positives: np.ndarray) -> float:
        truth = np.r_[np.ones(len(positives)), np.zeros(len(confidence))]
        return float(roc_auc_score(truth, np.r_[positives, confidence]))

    declined = float((confidence < threshold).mean())
    return Row(
        "not digits",
        condition,
        len(confidence),
        declined=declined,
        auroc=auroc(digits),
        auroc_clean=auroc(clean),
        example=example,
    )


def _numbers(model: Model, images, labels, n: int, seed: int, reader: str) -> Row:
    """Written numbers read whole: right only if every digit is read and right."""
    from . import synth
    from .predict import predict_image

    if reader == "naive":  # the demo has no segmentation: nothing to measure
        return Row("numbers", "2-5 digits", 0)
    files, texts = synth.numbers(images, labels, n, seed)
    answers = [predict_image(model, f, number=True) for f in files]
    right = np.array([a["number"] == t for a, t in zip(answers, texts, strict=True)])
    declined = np.array([a["number"] is None for a in answers])
    top = [  # every digit's top guess right, declined or not: the number's "accuracy"
        len(a["digits"]) == len(t)
        and all(d.get("top_k", [{}])[0].get("digit") == int(c) for d, c in zip(a["digits"], t, strict=True))
        for a, t in zip(answers, texts, strict=True)
    ]
    return Row(
        "numbers",
        "2-5 digits",
        n,
        accuracy=float(np.mean(top)),
        read=float(right.mean()),
        declined=float(declined.mean()),
        example=answers[0]["image28"][:, :28],
    )


def wilson(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a share measured on n images: at 100 images a figure
    near 98% is good to about 3 points, at 1,000 to about 1, so differences inside it are noise."""
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def markdown(suite: Suite) -> str:
    s = suite.summary()
    pct = "{:.1%}".format
    lines = [
        f"Model `{suite.model}`, {suite.split} split, read by {suite.reader}'s preprocessing.",
        "",
        f"Clean {pct(s['clean_accuracy'])} ({pct(s['clean_declined'])} declined); MNIST-C mean "
        f"{pct(s['mnist_c_mean'])}, worst {s['mnist_c_worst']}; not digits declined "
        f"{pct(s['not_digits_declined'])}, AUROC {s['auroc_clean']:.4f} against clean digits, "
        f"{s['auroc']:.4f} against clean and real-input digits.",
        "",
        "| group | condition | n | accuracy | read right (95% interval) | declined | AUROC, clean digits "
        "| AUROC, all digits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in suite.rows:
        cells = [pct(v) if v is not None and r.n else "" for v in (r.accuracy, r.read, r.declined)]
        if r.read is not None and r.n:
            cells[1] += " ({:.1%}-{:.1%})".format(*wilson(r.read, r.n))
        aurocs = " | ".join(f"{v:.4f}" if v is not None else "" for v in (r.auroc_clean, r.auroc))
        lines.append(f"| {r.group} | {r.condition} | {r.n} | {' | '.join(cells)} | {aurocs} |")
    lines += [
        "",
        "accuracy: the top digit is right, declined or not (MNIST-C's figure); read right: right and "
        "not declined; declined: by preprocessing (no ink, noise) or under the calibrated threshold; AUROC: "
        "non-digits against the clean digits, and against those and every real-input digit together.",
    ]
    return "\n".join(lines) + "\n"


def to_csv(suite: Suite) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["group", "condition", "n", "accuracy", "read", "declined", "auroc_clean", "auroc"])
    for r in suite.rows:
        writer.writerow(
            [
                r.group,
                r.condition,
                r.n,
                *("" if v is None else f"{v:.4f}" for v in (r.accuracy, r.read, r.declined, r.auroc_clean, r.auroc)),
            ]
        )
    return buffer.getvalue()


def plot(suite: Suite, path: Path) -> None:
    """One tile per condition: an example as the model saw it, and the condition's figure."""
    from matplotlib.figure import Figure

    rows = [r for r in suite.rows if r.example is not None]
    cols = 8
    fig = Figure(figsize=(cols * 1.5, int(np.ceil(len(rows) / cols)) * 1.75))
    for i, r in enumerate(rows):
        ax = fig.add_subplot(int(np.ceil(len(rows) / cols)), cols, i + 1)
        ax.imshow(r.example, cmap="gray_r", vmin=0, vmax=1)
        ax.axis("off")
        figure = f"declined {r.declined:.0%}" if r.group == "not digits" else f"read {r.read:.1%}"
        colour = {"clean": "black", "MNIST-C": "tab:blue", "real input": "tab:green", "numbers": "tab:purple"}
        ax.set_title(f"{r.condition}\n{figure}", fontsize=8, color=colour.get(r.group, "tab:red"))
    fig.suptitle(f"Robustness of {suite.model} ({suite.split} split): an example of each condition")
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=90, bbox_inches="tight"))


def write(suite: Suite, folder: str | Path) -> Path:
    """robustness.json, .csv, .md and .png in `folder`; returns the Markdown's path."""
    folder = Path(folder)
    write_json(folder / FILES[0], suite.to_json())
    write_text(folder / FILES[1], to_csv(suite))
    plot(suite, folder / FILES[3])
    return write_text(folder / FILES[2], markdown(suite))
