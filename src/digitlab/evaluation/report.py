"""report.md and report.html for an evaluated run, and its figures (drawn by plots.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digitlab.data.mnist import MNIST
from digitlab.evaluation.html import write_html
from digitlab.evaluation.plots import plot_calibration, plot_confusion, plot_curves, plot_digits
from digitlab.files import write_text
from digitlab.training.runs import Run

GALLERY_SIZE = 40  # misclassified digits shown, most confident mistakes first
SAMPLE_SIZE = 30


def write_report(run: Run, metrics: dict, data: MNIST, probs: np.ndarray, robustness: str | None = None) -> None:
    """Plots, report.md and report.html; `robustness`: the suite's Markdown table, when it ran."""
    labels, predicted, confidence = data.y_test, probs.argmax(1), probs.max(1)
    history = run.read_history()
    if history:
        plot_curves(history, run.figure("curves"))
    plot_confusion(np.array(metrics["confusion"]), run.figure("confusion"))
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-confidence[wrong])][:GALLERY_SIZE]
    plot_digits(
        data.x_test[wrong],
        [f"{labels[i]}→{predicted[i]} {confidence[i]:.0%}" for i in wrong],
        [False] * len(wrong),
        run.figure("errors"),
        f"Misclassified test digits, most confident first (true→predicted confidence); "
        f"{metrics['test_errors']} errors in all",
    )
    sample = np.random.default_rng(0).choice(len(labels), SAMPLE_SIZE, replace=False)
    plot_digits(
        data.x_test[sample],
        [f"pred {predicted[i]} ({confidence[i]:.0%})" for i in sample],
        [bool(predicted[i] == labels[i]) for i in sample],
        run.figure("samples"),
        "Sample test predictions (red: wrong)",
    )
    plot_calibration(metrics["calibration"]["bins"], metrics["calibration"]["ece"], run.figure("calibration"))
    write_text(run.report, markdown(run, metrics, history is not None, robustness))
    write_html(run.report)


def provenance(run: Run, test_size: int) -> str:
    """What the model is and which data it saw, in one sentence."""
    r, used = run.record, run.record.data
    params = f" ({r.params:,} parameters)" if r.params else ""
    if r.kind == "foreign":
        from digitlab.io.adapt import describe

        return (
            f"Model file **{r.source}**{params}, trained elsewhere: digitlab cannot know whether its training saw "
            f"the test split. Calibrated on {used.val:,} validation images, tested on {test_size:,} test images. "
            + (describe(Path(r.source), r.adapted) if r.adapted else "")
        )
    if r.kind == "export":  # an .onnx digitlab exported: what it was trained on is in its metadata
        return (
            f"Model file **{r.source}**{params}, exported by digitlab from a run of its own. Calibrated on "
            f"{used.val:,} validation images, tested on {test_size:,} test images; its training command is in "
            "its metadata (`digitlab serve --model FILE` shows it at /v1/model)."
        )
    seen = f"{used.train:,}" if used else "an unrecorded number of"
    chosen = f"{used.val:,}" if used else "an unrecorded number of"
    what = f"an ensemble of {len(r.members)} runs" if r.kind == "ensemble" else f"**{r.model_name}**"
    subset = f" (--subset {used.subset})" if used and used.subset else ""
    return (
        f"Model {what}{params}, trained on {seen} images{subset}, selected on "
        f"{chosen} validation images, tested once on {test_size:,} test images."
    )


def markdown(run: Run, metrics: dict, has_curves: bool, robustness: str | None = None) -> str:
    record = run.record
    best, timings = record.best, record.timings
    lines = [
        f"# digitlab report: {record.name}",
        "",
        provenance(run, metrics["test_size"]),
        "",
        "| figure | value |",
        "|---|---|",
        f"| test accuracy | **{metrics['test_accuracy']:.2%}** |",
        f"| test errors | {metrics['test_errors']} of {metrics['test_size']} |",
        f"| test loss | {metrics['test_loss']:.4f}{_raw(metrics, 'test_loss')} |",
        f"| macro F1 | {metrics['macro_f1']:.4f} |",
        f"| expected calibration error | {metrics['calibration']['ece']:.4f}{_raw(metrics, 'ece')} |",
    ]
    serving = metrics.get("serving") or {}
    if "calibrated_on" in serving:
        lines.append(
            f"| served calibration | temperature {serving['temperature']:.3g}, decline under "
            f"{serving['threshold']:.2f}; fitted on {serving['calibrated_on']} |"
        )
    if record.head:  # the output layer solved after the epochs (training/ridge.py)
        lines += [
            f"| output layer | least squares over {record.config.hidden or 'no'} random units "
            f"after {record.epochs_run} epochs; "
            f"ridge {record.head['ridge']:g}, temperature {record.head['temperature']:.3g}, chosen on validation |",
            f"| validation accuracy | {best.val_accuracy:.2%} |",
        ]
    elif best:
        lines += [
            f"| best epoch (val loss) | {best.epoch} of {record.epochs_run} |",
            f"| validation accuracy at best | {best.val_accuracy:.2%} |",
        ]
    if "train_s" in timings:
        lines.append(f"| training time | {timings['train_s']:.0f} s |")
    if record.budget:
        b = record.budget
        ran = "stopped when it ran out" if b.stopped else "finished within it"
        chose = f"{b.seconds:.0f} s: chose `{b.recipe}` (~{b.expected_s:.0f} s here); {ran}"
        lines.append(f"| time budget (`--budget`) | {chose} |")
    lines += [""]
    if has_curves:
        lines += ["## Learning curves", "", "![curves](curves.png)", ""]
    lines += [
        "## Confusion matrix",
        "",
        "![confusion](confusion.png)",
        "",
        "Most confused pairs:",
        "",
        "| true | predicted | count |",
        "|---|---|---|",
    ]
    lines += [f"| {p['true']} | {p['predicted']} | {p['count']} |" for p in metrics["most_confused"]]
    lines += ["", "## Per-class report", "", "| digit | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [
        f"| {c} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1-score']:.4f} | {int(r['support'])} |"
        for c, r in metrics["per_class"].items()
    ]
    lines += [
        "",
        "## Misclassified digits",
        "",
        "![errors](errors.png)",
        "",
        "## Sample predictions",
        "",
        "![samples](samples.png)",
        "",
        "## Calibration",
        "",
        "![calibration](calibration.png)",
        "",
        *(["## Robustness", "", robustness, "![robustness](robustness.png)", ""] if robustness else []),
        "## Reproduce",
        "",
        "```",
        run.reproduce().replace(" && ", " &&\n"),  # an ensemble's members, a line each; still one shell command
        "```",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in record.versions.items()),
        "",
    ]
    return "\n".join(lines)


def _raw(metrics: dict, name: str) -> str:
    """The raw softmax's figure beside the served one (the temperature applied), where known."""
    raw = (metrics.get("raw") or {}).get(name)
    return "" if raw is None else f" (raw softmax: {raw:.4f})"
