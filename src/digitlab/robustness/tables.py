"""The suite's figures as people read them: the Markdown table in every report (with 95%
intervals), robustness.csv, robustness.json and a picture of one example per condition."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from digitlab.files import write_atomic, write_json, write_text
from digitlab.robustness.suite import Suite

FILES = ("robustness.json", "robustness.csv", "robustness.md", "robustness.png")


def wilson(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a share measured on n images: at 100 images a figure
    near 98% is good to about 3 points, at 1,000 to about 1, so differences inside it are noise."""
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))  # no "-0.0%" from rounding


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
    cols, cell, caption = 8, 28, 16  # px: one picture of every example, the captions above each
    lines = int(np.ceil(len(rows) / cols))
    sheet = np.zeros((lines * (cell + caption), cols * (cell + 8)), np.float32)
    fig = Figure(figsize=(cols * 1.5, lines * 1.75))
    ax = fig.add_subplot(1, 1, 1)
    colour = {"clean": "black", "MNIST-C": "tab:blue", "real input": "tab:green", "numbers": "tab:purple"}
    for i, r in enumerate(rows):
        top, left = (i // cols) * (cell + caption) + caption, (i % cols) * (cell + 8) + 4
        sheet[top : top + cell, left : left + cell] = r.example
        figure = f"declined {r.declined:.0%}" if r.group == "not digits" else f"read {r.read:.1%}"
        shade = {**colour, "in the wild": "tab:orange"}.get(r.group, "tab:red")
        ax.text(left + cell / 2, top - 1, f"{r.condition}\n{figure}", ha="center", va="bottom", fontsize=8, color=shade)
    ax.imshow(sheet, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(f"Robustness of {suite.model} ({suite.split} split): an example of each condition")
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=90, bbox_inches="tight"))


def write(suite: Suite, folder: str | Path) -> Path:
    """robustness.json, .csv, .md and .png in `folder`; returns the Markdown's path."""
    folder = Path(folder)
    write_json(folder / FILES[0], suite.to_json())
    write_text(folder / FILES[1], to_csv(suite))
    plot(suite, folder / FILES[3])
    return write_text(folder / FILES[2], markdown(suite))
