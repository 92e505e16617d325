"""Plots and report.md for an evaluated run. Every figure is a PNG written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .data import MNIST
from .files import read_json, write_atomic, write_text
from .runs import reproduce

GALLERY_SIZE = 40  # misclassified digits shown, most confident mistakes first
SAMPLE_SIZE = 30


def save(fig: Figure, path: Path) -> None:
    # A bare Figure, not pyplot: no backend to choose, no global figure list, nothing to close.
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))


def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, key, title in ((axes[0], "loss", "Loss (cross-entropy)"), (axes[1], "accuracy", "Accuracy")):
        ax.plot(epochs, history[key], "o-", label="train")
        ax.plot(epochs, history[f"val_{key}"], "s-", label="validation")
        ax.set(title=title, xlabel="epoch", ylabel=key)
        ax.grid(alpha=0.3)
        ax.legend()
    best = int(np.argmin(history["val_loss"])) + 1
    for ax in axes:
        ax.axvline(best, color="grey", linestyle="--", linewidth=1)
    axes[0].annotate(f"kept: epoch {best} ", (best, max(history["loss"])), fontsize=8, color="grey", ha="right")
    save(fig, path)


def plot_confusion(confusion: np.ndarray, path: Path) -> None:
    normalised = confusion / confusion.sum(axis=1, keepdims=True).clip(min=1)
    fig = Figure(figsize=(13, 5.5))
    axes = fig.subplots(1, 2)
    for ax, matrix, title, fmt in (
        (axes[0], confusion, "Confusion matrix (counts)", "{:d}"),
        (axes[1], normalised, "Row-normalised (recall per class)", "{:.3f}"),
    ):
        # Log-ish colour for counts so the off-diagonal errors stay visible next to ~1000s.
        shown = np.log1p(matrix) if matrix is confusion else matrix
        ax.imshow(shown, cmap="Blues")
        ax.set(title=title, xlabel="predicted digit", ylabel="true digit", xticks=range(10), yticks=range(10))
        for (i, j), v in np.ndenumerate(matrix):
            if v:
                ax.text(
                    j,
                    i,
                    fmt.format(v),
                    ha="center",
                    va="center",
                    fontsize=7 if fmt != "{:d}" else 8,
                    color="white" if shown[i, j] > shown.max() * 0.6 else "black",
                )
    save(fig, path)


def plot_digits(images: np.ndarray, titles: list[str], colours: list[str], path: Path, suptitle: str) -> None:
    cols = 10
    rows = max(1, int(np.ceil(len(images) / cols)))
    fig = Figure(figsize=(cols * 1.25, rows * 1.5))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title, colour in zip(axes.flat, images, titles, colours, strict=False):
        ax.imshow(image.squeeze(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8, color=colour)
    fig.suptitle(suptitle)
    save(fig, path)


def plot_calibration(bins: list[dict], ece: float, path: Path) -> None:
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
    width = bins[0]["upper"] - bins[0]["lower"] if bins else 0.1
    ax.bar(centres, [b["accuracy"] for b in bins], width=width * 0.9, alpha=0.7, label="accuracy in bin")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="C3", label="mean confidence")
    ax.set(
        title=f"Reliability diagram (ECE {ece:.4f})",
        xlabel="confidence (max probability)",
        ylabel="accuracy",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="upper left")
    save(fig, path)


def write_report(
    run_dir: Path, record: dict, metrics: dict, data: MNIST, probs: np.ndarray, robustness: str | None = None
) -> None:
    """Plots and report.md; `robustness`: the suite's Markdown table, when it ran."""
    labels, predicted, confidence = data.y_test, probs.argmax(1), probs.max(1)
    history = read_json(run_dir / "history.json") if (run_dir / "history.json").is_file() else None
    if history:
        plot_curves(history, run_dir / "curves.png")
    plot_confusion(np.array(metrics["confusion"]), run_dir / "confusion.png")
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-confidence[wrong])][:GALLERY_SIZE]
    plot_digits(
        data.x_test[wrong],
        [f"{labels[i]}→{predicted[i]} {confidence[i]:.0%}" for i in wrong],
        ["firebrick"] * len(wrong),
        run_dir / "errors.png",
        f"Misclassified test digits, most confident first (true→predicted confidence); "
        f"{metrics['test_errors']} errors in all",
    )
    sample = np.random.default_rng(0).choice(len(labels), SAMPLE_SIZE, replace=False)
    plot_digits(
        data.x_test[sample],
        [f"pred {predicted[i]} ({confidence[i]:.0%})" for i in sample],
        ["darkgreen" if predicted[i] == labels[i] else "firebrick" for i in sample],
        run_dir / "samples.png",
        "Sample test predictions (red: wrong)",
    )
    plot_calibration(metrics["calibration"]["bins"], metrics["calibration"]["ece"], run_dir / "calibration.png")
    write_text(run_dir / "report.md", markdown(record, metrics, history is not None, robustness))


def markdown(record: dict, metrics: dict, has_curves: bool, robustness: str | None = None) -> str:
    config, best = record["config"], record.get("best", {})
    timings = record.get("timings", {})
    lines = [
        f"# digitlab report: {record['name']}",
        "",
        f"Model **{config['model']}** ({metrics['params']:,} parameters), trained on "
        f"{record.get('data', {}).get('train', '?'):,} images, selected on "
        f"{record.get('data', {}).get('val', '?'):,} validation images, tested once on "
        f"{metrics['test_size']:,} test images.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| test accuracy | **{metrics['test_accuracy']:.2%}** |",
        f"| test errors | {metrics['test_errors']} of {metrics['test_size']} |",
        f"| test loss | {metrics['test_loss']:.4f} |",
        f"| macro F1 | {metrics['macro_f1']:.4f} |",
        f"| expected calibration error | {metrics['calibration']['ece']:.4f} |",
    ]
    if best:
        lines += [
            f"| best epoch (val loss) | {best['epoch']} of {record.get('epochs_run', '?')} |",
            f"| validation accuracy at best | {best['val_accuracy']:.2%} |",
        ]
    if "train_s" in timings:
        lines.append(f"| training time | {timings['train_s']:.0f} s |")
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
        reproduce(record),
        "```",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items()),
        "",
    ]
    return "\n".join(lines)
