"""The look every digitlab plot shares (run reports, compare's leaderboard, tune's study), and
the figures of a run's report and of a tuning study. Each plot function saves its PNG; the report's
also return their Figure, to look into.

Figures are bare matplotlib Figures, never pyplot: no backend to choose, no global figure list.
The look is applied per axes by `style()` rather than through rcParams, which are global state
that another figure (or a user's notebook) would share.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from digitlab.files import write_atomic

BLUE = "#3563e9"  # the main series: train, accuracy bars, trials
ORANGE = "#e8702a"  # the second series: validation
RED = "#b42318"  # what stands out: best so far, mean confidence, wrong predictions
GREEN = "#067647"  # right predictions
GREY = "#667085"  # references: the kept epoch, perfect calibration
TITLE, LABEL, TICK, SMALL = 11, 9.5, 8.5, 8  # font sizes in points
GRID_ALPHA = 0.3
DPI = 110


def figure(width: float, height: float) -> Figure:
    # Constrained layout keeps titles, labels and colour bars of several axes from overlapping.
    return Figure(figsize=(width, height), layout="constrained")


def style(
    ax: Axes,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    grid: str | None = "both",
    legend: str | None = None,
) -> Axes:
    """Titles, labels, ticks, grid and legend in the shared look; `grid` None for images."""
    if title is not None:
        ax.set_title(title, fontsize=TITLE)
    if xlabel is not None:
        ax.set_xlabel(xlabel, fontsize=LABEL)
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=LABEL)
    ax.tick_params(labelsize=TICK)
    if grid:
        ax.grid(alpha=GRID_ALPHA, axis=grid)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
    if legend:
        ax.legend(loc=legend, fontsize=SMALL, frameon=False)
    return ax


def suptitle(fig: Figure, text: str) -> None:
    fig.suptitle(text, fontsize=TITLE)


def save(fig: Figure, path: Path) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=DPI, bbox_inches="tight", facecolor="white"))


def plot_curves(history: dict[str, list[float]], path: Path) -> Figure:
    epochs = np.arange(1, len(history["loss"]) + 1)
    best = int(np.argmin(history["val_loss"])) + 1
    fig = figure(11, 4)
    panels = (("loss", "Loss (cross-entropy)"), ("accuracy", "Accuracy"))
    for ax, (key, title) in zip(fig.subplots(1, 2), panels, strict=True):
        ax.plot(epochs, history[key], "o-", color=BLUE, label="train")
        ax.plot(epochs, history[f"val_{key}"], "s-", color=ORANGE, label="validation")
        ax.axvline(best, color=GREY, linestyle="--", linewidth=1, label=f"kept: epoch {best}")
        # Epochs are whole: no 1.2, 1.4 ... ticks, and a lone epoch still gets its own tick.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, len(epochs) + 0.5)
        style(ax, title, "epoch", key, legend="best")
    save(fig, path)
    return fig


def plot_confusion(confusion: np.ndarray, path: Path) -> Figure:
    normalised = confusion / confusion.sum(axis=1, keepdims=True).clip(min=1)
    fig = figure(12, 5.4)
    for ax, matrix, title, fmt in zip(
        fig.subplots(1, 2),
        (confusion, normalised),
        ("Confusion matrix (counts)", "Row-normalised (recall per class)"),
        ("{:d}", "{:.3f}"),
        strict=True,
    ):
        # Log-ish colour for counts so the off-diagonal errors stay visible next to ~1000s.
        shown = np.log1p(matrix) if matrix is confusion else matrix
        ax.imshow(shown, cmap="Blues")
        ax.set(xticks=range(10), yticks=range(10))
        style(ax, title, "predicted digit", "true digit", grid=None)
        for (i, j), v in np.ndenumerate(matrix):
            if v:
                colour = "white" if shown[i, j] > shown.max() * 0.6 else "black"
                size = SMALL if fmt == "{:d}" else SMALL - 1
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=size, color=colour)
    save(fig, path)
    return fig


def plot_digits(images: np.ndarray, titles: list[str], right: list[bool], path: Path, title: str) -> Figure:
    """A gallery, ten a row; each digit's caption green when right, red when wrong."""
    # One picture of all the digits with the captions above them: a grid of 100 small axes takes
    # matplotlib seconds to draw, one axes a fraction of that.
    cols, cell, caption_px = 10, 28, 12
    rows = max(1, int(np.ceil(len(images) / cols)))
    tall, wide = cell + caption_px, cell + 6
    sheet = np.zeros((rows * tall, cols * wide), np.float32)
    fig = figure(cols * 1.25, rows * 1.5 + 0.4)
    ax = fig.add_subplot(1, 1, 1)
    for k, (image, caption, ok) in enumerate(zip(images, titles, right, strict=False)):
        top, left = (k // cols) * tall + caption_px, (k % cols) * wide + 3
        sheet[top : top + cell, left : left + cell] = image.squeeze()
        ax.text(left + cell / 2, top - 1, caption, ha="center", va="bottom", fontsize=SMALL, color=GREEN if ok else RED)
    ax.imshow(sheet, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    suptitle(fig, title)
    save(fig, path)
    return fig


def plot_calibration(bins: list[dict], ece: float, path: Path) -> Figure:
    """Reliability diagram over a histogram of how many test images fall in each confidence bin
    (scikit-learn's CalibrationDisplay layout): a bin's bar means little without its count."""
    fig = figure(5.5, 6.5)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
    width = 0.9 * (bins[0]["upper"] - bins[0]["lower"] if bins else 0.1)
    top.bar(centres, [b["accuracy"] for b in bins], width=width, color=BLUE, alpha=0.75, label="accuracy in bin")
    top.plot([0, 1], [0, 1], "--", color=GREY, linewidth=1, label="perfect calibration")
    top.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color=RED, label="mean confidence")
    top.set(xlim=(0, 1), ylim=(0, 1.02))
    style(top, f"Reliability diagram (ECE {ece:.4f})", None, "accuracy", legend="upper left")
    counts = [b["count"] for b in bins]
    bottom.bar(centres, counts, width=width, color=BLUE, alpha=0.75)
    # A trained model puts most images in the top bin: a log scale keeps the other bins visible.
    if counts and max(counts) > 20 * min(counts):
        bottom.set_yscale("log")
        bottom.set_ylim(0.7, max(counts) * 6)
        bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))  # 1,000 rather than 10³
    else:
        bottom.set_ylim(0, max(counts, default=1) * 1.3)
    for x, n in zip(centres, counts, strict=True):
        bottom.text(x, n, f"{n:,}", ha="center", va="bottom", fontsize=SMALL - 1.5, color=GREY)
    style(bottom, None, "confidence (max probability)", "test images", grid="y")
    save(fig, path)
    return fig


def plot_study(name: str, complete: list, folder: Path) -> list[Path]:
    """A study's optimisation history (history.png) and each setting against the objective
    (settings.png), from its completed Optuna trials; returns the paths written."""
    numbers, values = [t.number for t in complete], [100 * t.value for t in complete]
    fig = figure(9, 4.5)
    ax = fig.subplots()
    ax.plot(numbers, values, "o", color=BLUE, label="completed trial")
    ax.step(numbers, np.maximum.accumulate(values), where="post", color=RED, label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # trials are whole
    ax.set_xlim(min(numbers) - 0.5, max(numbers) + 0.5)
    style(ax, f"Study {name}: optimisation history", "trial", "validation accuracy, %", legend="best")
    written = [folder / "history.png"]
    save(fig, written[0])
    settings = sorted({p for t in complete for p in t.params})
    if settings:
        cols = min(3, len(settings))
        rows = -(-len(settings) // cols)
        fig = figure(4 * cols + 0.8, 3.2 * rows + 0.4)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.flat[len(settings) :]:
            ax.axis("off")
        best = max(complete, key=lambda t: t.value)
        for ax, setting in zip(axes.flat, settings, strict=False):
            shown = [t for t in complete if setting in t.params]
            x, y = [t.params[setting] for t in shown], [100 * t.value for t in shown]
            dots = ax.scatter(x, y, c=[t.number for t in shown], cmap="viridis", s=28)
            dots.set_clim(min(numbers), max(max(numbers), min(numbers) + 1))
            if setting in best.params:
                ax.scatter([best.params[setting]], [100 * best.value], s=110, facecolors="none", edgecolors=RED)
            distribution = shown[0].distributions[setting]
            if getattr(distribution, "log", False):
                ax.set_xscale("log")
                # Over less than a decade (widths 32-512) matplotlib labels minor ticks too, and
                # "2x10^2 3x10^2 4x10^2" run into each other: label the decades only.
                ax.xaxis.set_minor_formatter(NullFormatter())
            choices = getattr(distribution, "choices", ())
            if choices and all(isinstance(c, (int, float)) for c in choices):  # batch sizes: ticks at the choices
                ax.set_xticks(choices, [str(c) for c in choices])
            style(ax, None, setting, "validation accuracy, %")
        bar = fig.colorbar(dots, ax=axes[:, -1].tolist(), shrink=0.9)
        bar.set_label("trial", fontsize=LABEL)
        bar.ax.tick_params(labelsize=TICK)
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        suptitle(fig, "Each setting against validation accuracy (red ring: the best trial)")
        written.append(folder / "settings.png")
        save(fig, written[-1])
    return written
