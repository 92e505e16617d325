"""Judge a trained run on the test split: the one place digitlab reads it.

`score()` turns labels and probabilities into every figure of metrics.json;
`evaluate()` runs a run folder's model on test and writes the files and the report.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, log_loss

from . import predict, robustness
from .data import MNIST, load_mnist
from .errors import DigitlabError
from .files import write_atomic, write_json, write_text
from .outliers import validation_set
from .predict import scale_temperature
from .runs import DataUsed, Run

CLASSES = [str(d) for d in range(10)]
CALIBRATION_BINS = 15
VAL_NEGATIVES = 500  # validation non-digits, from the training sources with a seed of their own
ROBUSTNESS_N = 100  # images per condition in every run's report (~20 s here); `digitlab robustness` does more
# The confidence threshold declines this share of validation digits, mostly the misread ones.
# Lower declines fewer readable photos and lets more non-digits through: 0.75% rather than 1%
# was chosen on the robustness suite's validation split, where it declines half as many readable
# photos for half a point fewer non-digits declined (docs/ROBUSTNESS.md).
DECLINE_RATE = 0.0075
# A digit inside a number that the user asked to read (--number) is a digit by their word: it is
# declined only where the model can hardly tell which, as 0.1% of validation digits are.
NUMBER_DECLINE_RATE = 0.001


def fit_serving(labels: np.ndarray, probs: np.ndarray, negatives: np.ndarray | None = None) -> dict:
    """Temperature and decline threshold, both chosen on the validation split (never test);
    `negatives`: the model's probabilities for validation non-digits, to report how many the
    threshold declines."""
    from scipy.optimize import minimize_scalar

    def nll(t: float) -> float:
        return float(log_loss(labels, scale_temperature(probs, t), labels=range(10)))

    temperature = float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)
    scaled = scale_temperature(probs, temperature)
    confidence, correct = scaled.max(1), scaled.argmax(1) == labels
    threshold = float(np.quantile(confidence, DECLINE_RATE))
    accepted = confidence >= threshold
    serving = {
        "val_images": len(labels),
        "val_accuracy": float((probs.argmax(1) == labels).mean()),
        "temperature": temperature,
        "threshold": threshold,
        "number_threshold": float(np.quantile(confidence, NUMBER_DECLINE_RATE)),
        "val_declined_fraction": float(1 - accepted.mean()),
        "val_accuracy_accepted": float(correct[accepted].mean()),
        "val_nll_before": nll(1.0),
        "val_nll_after": nll(temperature),
    }
    if negatives is not None and len(negatives):
        serving["val_negatives_declined"] = float((scale_temperature(negatives, temperature).max(1) < threshold).mean())
    return serving


def score(labels: np.ndarray, probs: np.ndarray) -> dict:
    """All test figures from true labels (N,) and predicted probabilities (N, 10)."""
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    confusion = confusion_matrix(labels, predicted, labels=range(10))
    report = classification_report(
        labels, predicted, labels=range(10), target_names=CLASSES, output_dict=True, zero_division=0
    )
    return {
        "test_accuracy": float((predicted == labels).mean()),
        "test_loss": float(log_loss(labels, probs, labels=range(10))),
        "test_errors": int((predicted != labels).sum()),
        "test_size": len(labels),
        "per_class": {c: {k: report[c][k] for k in ("precision", "recall", "f1-score", "support")} for c in CLASSES},
        "macro_f1": report["macro avg"]["f1-score"],
        "confusion": confusion.tolist(),
        "most_confused": most_confused(confusion),
        "calibration": calibration(labels, predicted, confidence),
    }


def most_confused(confusion: np.ndarray, top: int = 10) -> list[dict]:
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top]
    pairs = [np.unravel_index(i, off.shape) for i in order]
    return [{"true": int(t), "predicted": int(p), "count": int(off[t, p])} for t, p in pairs if off[t, p] > 0]


def calibration(labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray) -> dict:
    """Top-label reliability: accuracy vs confidence in equal-width bins, and the expected
    calibration error (the bins' |accuracy - confidence| weighted by their share)."""
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, CALIBRATION_BINS - 1)
    correct = predicted == labels
    bins = []
    ece = 0.0
    for b in range(CALIBRATION_BINS):
        mask = which == b
        if mask.any():
            acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
            ece += mask.mean() * abs(acc - conf)
            bins.append(
                {
                    "lower": float(edges[b]),
                    "upper": float(edges[b + 1]),
                    "count": int(mask.sum()),
                    "accuracy": acc,
                    "confidence": conf,
                }
            )
    return {"ece": float(ece), "bins": bins}


def evaluate(run: Run | str | Path, data: MNIST | None = None, data_dir: str | Path | None = None, model=None) -> dict:
    """Predict the test split with the run's model; write metrics.json, CSVs, plots, report.md.
    `model`: the model itself when it is not the run's model.keras (a foreign SavedModel or ONNX
    file, adapted): a keras.Model, or a predict.Model with .probabilities()."""
    run = run if isinstance(run, Run) else Run.open(run)
    if model is None and not run.model.is_file():
        raise DigitlabError(f"{run.path} has no model.keras; is it a finished run? `digitlab runs` lists them")

    from .report import write_report

    record = run.record
    if data is None:
        data = load_split(record.data, data_dir)
    t0 = time.perf_counter()
    if model is None:
        from .models import load  # after the checks: a typo should not wait for TensorFlow

        model = load(run.model)
    keras_model = not hasattr(model, "probabilities")
    probabilities = (lambda x: model.predict(x, batch_size=1000, verbose=0)) if keras_model else model.probabilities
    full = len(data.y_train) >= 10_000  # subset runs (quick looks, tests) get token samples below
    negatives = validation_set(VAL_NEGATIVES if full else 100, data.x_val)
    serving = fit_serving(data.y_val, probabilities(data.x_val), probabilities(negatives) if len(negatives) else None)
    write_json(run.serving, serving)
    probs = probabilities(data.x_test)
    metrics = score(data.y_test, probs)
    metrics["serving"] = serving
    metrics["model"] = record.model
    if keras_model:  # an ONNX model's count is not known
        record.params = model.count_params()
    metrics["params"] = record.params
    _write_tables(run, metrics)
    # The robustness suite, on a sample of the test split (subset runs: a token one, quick).
    if keras_model:  # the model loaded above, with serving.json's calibration
        reader = predict.KerasModel(run.model, model)
    else:
        reader, model.info = model, {"name": record.name, **serving}
    (suite,) = robustness.measure([reader], data.x_test, data.y_test, n=ROBUSTNESS_N if full else 20)
    robustness.write(suite, run.path)
    metrics["robustness"] = suite.summary()
    write_report(run, metrics, data, probs, robustness.markdown(suite))
    write_json(run.metrics, metrics)
    record.timings["evaluate_s"] = round(time.perf_counter() - t0, 2)
    record.test_accuracy = metrics["test_accuracy"]
    run.save()
    return metrics


def evaluate_file(
    path: str | Path, out: str | Path | None = None, pixels: str | None = None, data_dir: str | Path | None = None
) -> Path:
    """A model trained elsewhere (.keras, .h5, SavedModel, .onnx) gets a run folder like any of
    digitlab's: calibration fitted on validation, test figures, report. The calibration is also
    written beside the file, so `digitlab predict --model FILE` declines as it should."""
    from . import foreign
    from .runs import new_run_dir

    path = Path(path)
    fmt = foreign.kind(path)
    if fmt is None:
        raise DigitlabError(
            f"{path} is neither a run folder nor a model file digitlab reads (.keras, .h5, .onnx, SavedModel folder)"
        )
    out = Path(out) if out else new_run_dir(f"{path.stem or path.name}-evaluated")
    if Run.is_run(out):
        raise DigitlabError(f"{out} already holds a run; choose another --out")
    t0 = time.perf_counter()
    data = load_mnist(data_dir)
    load_s = round(time.perf_counter() - t0, 2)
    load = foreign.load_onnx if fmt == "onnx" else foreign.load_keras
    model, found = load(path, data.x_val, data.y_val, pixels)
    command = f"digitlab evaluate {path} --out {out}" + (f" --pixels {pixels}" if pixels else "")
    run = Run.create(
        out,
        kind="foreign",
        source=str(path),
        adapted=found,
        command=command,
        data=DataUsed.of(data),
        timings={"load_s": load_s},
    )
    if fmt not in ("onnx", "savedmodel"):  # a SavedModel inside Keras does not reload safely: keep its path
        write_atomic(run.model, model.save)
    try:
        evaluate(run, data=data, model=model)
    except BaseException as e:
        run.fail(e)
        raise
    write_json(foreign.serving_file(path), {**run.read_serving(), "foreign": found})
    run.complete()
    return run.path


def load_split(used: DataUsed | None, data_dir: str | Path | None = None) -> MNIST:
    """The split a run was trained and selected on, --subset included: calibrating on more
    validation images than the run had would describe another run."""
    if used is None:  # a run from before the record said
        return load_mnist(data_dir)
    return load_mnist(data_dir, val_size=used.val_size, split_seed=used.split_seed).subset(used.subset)


def _write_tables(run: Run, metrics: dict) -> None:
    confusion = np.array(metrics["confusion"])
    normalised = confusion / confusion.sum(axis=1, keepdims=True).clip(min=1)
    header = "true\\predicted," + ",".join(CLASSES)
    write_text(run.table("confusion"), _csv(header, confusion, "{:d}"))
    write_text(run.table("confusion_normalized"), _csv(header, normalised, "{:.4f}"))
    rows = ["class,precision,recall,f1,support"]
    for c, r in metrics["per_class"].items():
        rows.append(f"{c},{r['precision']:.4f},{r['recall']:.4f},{r['f1-score']:.4f},{int(r['support'])}")
    write_text(run.table("per_class"), "\n".join(rows) + "\n")


def _csv(header: str, matrix: np.ndarray, fmt: str) -> str:
    lines = [header] + [f"{i}," + ",".join(fmt.format(v) for v in row) for i, row in enumerate(matrix)]
    return "\n".join(lines) + "\n"
