"""Judge a run's model: its serving calibration on validation, then the test split, the one
place digitlab reads it, with the tables, the robustness suite and the report.

`calibrate()` fits and writes serving.json; `test()` scores the test split with that calibration
applied (what predict and serve answer) and writes the files; `evaluate()` does both.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from digitlab import robustness
from digitlab.data.mnist import MNIST, load_mnist
from digitlab.errors import DigitlabError
from digitlab.evaluation.metrics import CLASSES, score
from digitlab.files import write_atomic, write_json, write_text
from digitlab.io import foreign
from digitlab.io.native import KerasModel, Model, OnnxModel
from digitlab.nn import calibration
from digitlab.training.outliers import validation_set
from digitlab.training.record import DataUsed
from digitlab.training.runs import Run, new_run_dir

VAL_NEGATIVES = 500  # validation non-digits, from the training sources with a seed of their own
# Images per condition in every run's report: a sample that costs seconds, so that a quick model's
# command is not mostly its report; `digitlab robustness` measures the full suite, with intervals.
ROBUSTNESS_N = 30


def reader(run: Run, model=None) -> Model:
    """The run's model behind the serving interface: `model` (a keras.Model, or a Model with
    .probabilities()) when it is not the run's model.keras, else that file loaded."""
    if model is None:
        if not run.model.is_file():
            raise DigitlabError(f"{run.path} has no model.keras; is it a finished run? `digitlab runs` lists them")
        from digitlab.io.native import load_own_keras  # after the checks: a typo should not wait for TensorFlow

        model = load_own_keras(run.model)
    if hasattr(model, "probabilities"):
        return model
    return KerasModel(run.model, model, info={"name": run.record.name, **calibration.UNCALIBRATED})


def unseen_digits(run: Run, data: MNIST) -> tuple[np.ndarray, np.ndarray, str]:
    """Digits the model did not train on, to calibrate it with, and what they are. digitlab's
    own runs: the validation split. A model trained elsewhere may have trained on all 60,000
    MNIST training digits (tutorials' fit() does), our validation split among them: only the
    test split is sure to be new to it, so every other test digit calibrates it."""
    if run.record.kind == "foreign":
        return data.x_test[::2], data.y_test[::2], f"every other test digit ({len(data.y_test[::2]):,})"
    return data.x_val, data.y_val, f"the validation split ({len(data.y_val):,})"


def calibrate(run: Run, data: MNIST, model: Model) -> dict:
    """Fit the serving calibration on digits the model did not train on (unseen_digits()) and
    on validation non-digits of digitlab's own, write serving.json and return it."""
    x, y, which = unseen_digits(run, data)
    negatives = validation_set(VAL_NEGATIVES if _full(data) else 100, data.x_val)
    serving = calibration.fit(y, model.probabilities(x), model.probabilities(negatives) if len(negatives) else None)
    serving["calibrated_on"] = which
    write_json(run.serving, serving)
    return serving


def test(run: Run, data: MNIST, model: Model, serving: dict) -> dict:
    """Score the test split as it is served (`serving`'s temperature applied; the raw softmax's
    loss and calibration error beside), run the robustness suite, write metrics.json, the tables
    and the report."""
    from digitlab.evaluation.report import write_report

    record = run.record
    served = {**model.info, **serving, "name": record.name}
    reader = _Served(model, served)
    raw = model.probabilities(data.x_test)
    probs = calibration.scale_temperature(raw, serving["temperature"])
    metrics = score(data.y_test, probs)
    unscaled = score(data.y_test, raw)
    metrics["raw"] = {"test_loss": unscaled["test_loss"], "ece": unscaled["calibration"]["ece"]}
    metrics["serving"] = serving
    metrics["model"] = record.model_name
    if isinstance(model, KerasModel):  # an ONNX model's count is not known
        record.params = model.model.count_params()
    metrics["params"] = record.params
    _write_tables(run, metrics)
    # The robustness suite, on a sample of the test split.
    n = ROBUSTNESS_N if _full(data) else 20
    (suite,) = robustness.measure([reader], data.x_test, data.y_test, n=n, wild=False)
    robustness.write(suite, run.path)
    metrics["robustness"] = suite.summary()
    write_report(run, metrics, data, probs, robustness.markdown(suite))
    write_json(run.metrics, metrics)
    return metrics


def evaluate(run: Run | str | Path, data: MNIST | None = None, data_dir: str | Path | None = None, model=None) -> dict:
    """Calibrate the run's model on digits it did not train on, then judge it on test
    (calibrate(), test()).
    `model`: the model itself when it is not the run's model.keras (a foreign SavedModel or ONNX
    file, adapted): a keras.Model, or a Model with .probabilities()."""
    run = run if isinstance(run, Run) else Run.open(run)
    if model is None and not run.model.is_file():
        raise DigitlabError(f"{run.path} has no model.keras; is it a finished run? `digitlab runs` lists them")
    record = run.record
    if data is None:
        data = load_split(record.data, data_dir)
    t0 = time.perf_counter()
    loaded = reader(run, model)
    serving = calibrate(run, data, loaded)
    metrics = test(run, data, loaded, serving)
    record.timings["evaluate_s"] = round(time.perf_counter() - t0, 2)
    record.test_accuracy = metrics["test_accuracy"]
    run.save()
    return metrics


def _full(data: MNIST) -> bool:
    """A run on the whole training split; subset runs (quick looks, tests) get token samples."""
    return len(data.y_train) >= 10_000


class _Served:
    """A model with the calibration it serves with, leaving the caller's model as it was."""

    def __init__(self, model: Model, info: dict):
        self.path, self.info, self.probabilities = model.path, info, model.probabilities


def evaluate_file(
    path: str | Path, out: str | Path | None = None, pixels: str | None = None, data_dir: str | Path | None = None
) -> Path:
    """A model file gets a run folder like any of digitlab's: calibration fitted on digits it did
    not see, test figures, report. One trained elsewhere (.keras, .h5, SavedModel, .onnx) is
    adapted first, and its calibration also written beside the file, so `digitlab predict --model
    FILE` declines as it should; an .onnx digitlab exported (the shipped model) carries its own."""
    path = Path(path)
    fmt = foreign.kind(path)
    own = fmt is None and path.suffix == ".onnx" and path.is_file()
    if fmt is None and not own:
        raise DigitlabError(
            f"{path} is neither a run folder nor a model file digitlab reads (.keras, .h5, .onnx, SavedModel folder)"
        )
    out = Path(out) if out else new_run_dir(f"{path.stem or path.name}-evaluated")
    if Run.is_run(out):
        raise DigitlabError(f"{out} already holds a run; choose another --out")
    if own and pixels is not None:
        raise DigitlabError(f"--pixels is for models trained elsewhere; {path} is digitlab's own")
    t0 = time.perf_counter()
    data = load_mnist(data_dir)
    load_s = round(time.perf_counter() - t0, 2)
    if own:
        model, found = OnnxModel(path), None
    else:
        load = foreign.load_onnx if fmt == "onnx" else foreign.load_keras
        model, found = load(path, data.x_val, data.y_val, pixels)
    command = f"digitlab evaluate {path} --out {out}" + (f" --pixels {pixels}" if pixels else "")
    run = Run.create(
        out,
        kind="export" if own else "foreign",
        source=str(path),
        adapted=found,
        command=command,
        data=DataUsed.of(data),
        timings={"load_s": load_s},
    )
    if fmt not in (None, "onnx", "savedmodel"):  # a SavedModel inside Keras does not reload safely: keep its path
        write_atomic(run.model, model.save)
    try:
        evaluate(run, data=data, model=model)
    except BaseException as e:
        run.fail(e)
        raise
    if not own:
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
