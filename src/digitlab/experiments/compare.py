"""Architectures on equal terms: same split, same seeds, each trained by its own recipe.

`compare()` trains every model with every seed (a finished run of exactly the same settings,
version and data is reused, so an interrupted comparison picks up where it stopped), then
writes the leaderboard as Markdown, CSV and a bar chart. Selection uses validation only: the
ensemble, if asked for, is built from the model with the best mean *validation* accuracy; each
run reads the test split once, at its end.
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from digitlab import __version__
from digitlab.errors import Interrupted
from digitlab.files import write_text
from digitlab.progress import overall
from digitlab.training.config import TrainConfig
from digitlab.training.record import Status
from digitlab.training.runs import Run

THROUGHPUT_IMAGES = 10_000


def throughput(model_path: Path) -> float:
    """Images per second through Keras' predict, on random images (no data is read for it)."""
    from digitlab.io.native import KerasModel

    model = KerasModel(model_path)
    images = np.random.default_rng(0).random((THROUGHPUT_IMAGES, 28, 28, 1), dtype=np.float32)
    model.probabilities(images)  # warm-up: the same shapes, so the timed pass traces nothing
    t0 = time.perf_counter()
    model.probabilities(images)
    return THROUGHPUT_IMAGES / (time.perf_counter() - t0)


def compare(
    models: list[str],
    seeds: int = 3,
    out: str | Path = "runs/compare",
    overrides: dict | None = None,
    with_ensemble: bool = False,
    data_dir: str | Path | None = None,
) -> list[dict]:
    from digitlab.data.mnist import load_mnist
    from digitlab.experiments.ensemble import ensemble
    from digitlab.experiments.pipeline import train
    from digitlab.nn.models import build, check_name, flops_per_image

    for name in models:
        check_name(name)
    out, overrides = Path(out), overrides or {}
    data = load_mnist(data_dir)
    digest = data.subset(overrides.get("subset")).digest()
    rows = []
    bar = overall("compare")
    task = bar.add_task("", total=len(models) * seeds + (1 if with_ensemble and seeds >= 2 else 0))
    try:
        with bar:
            for name in models:
                runs = []
                for seed in range(seeds):
                    config = TrainConfig.for_model(name, seed=seed, **overrides)
                    # One folder per exact run: other settings, another version of digitlab or other
                    # data never reuse it; an interrupted one with the same name resumes.
                    folder = out / "runs" / slug(config, digest)
                    bar.update(task, description=f"{name} seed {seed}")
                    if not (Run.is_run(folder) and Run.open(folder).matches(config, digest)):
                        bar.console.print(f"[bold]{name}[/], seed {seed}: training into {folder}", soft_wrap=True)
                        train(config, data=data, out=folder, verbose=2)
                    runs.append(Run.open(folder))
                    bar.advance(task)
                model = build(name, **runs[0].record.config.model_params)
                rows.append(_row(name, runs, flops_per_image(model), throughput(runs[0].model)))
            if with_ensemble and seeds >= 2:
                best = max(rows, key=lambda r: r["val_mean"])  # chosen on validation, never on test
                members = [str(path) for path in best["runs"]]
                target = out / "runs" / f"ensemble-{best['model']}-x{seeds}-{_hash(members)}"
                bar.update(task, description=f"ensemble of {best['model']}")
                if not (Run.is_run(target) and Run.open(target).record.status == Status.COMPLETED):
                    shutil.rmtree(target, ignore_errors=True)  # a half-built ensemble: build it again
                    ensemble(members, target, data=data)
                run = Run.open(target)
                name = f"ensemble of {seeds} {best['model']}"
                rows.append(_row(name, [run], best["flops"] * seeds, throughput(run.model)))
                bar.advance(task)
    except Interrupted:
        raise Interrupted(
            "interrupted; run the same `digitlab compare` again: finished runs are reused and this one resumes"
        ) from None
    rows.sort(key=lambda r: -r["test_mean"])
    write_leaderboard(rows, out, seeds, overrides)
    return rows


def slug(config: TrainConfig, digest: str) -> str:
    """A run folder's name for exactly this config, digitlab version and data."""
    return f"{config.model}-seed{config.seed}-{_hash([config.cli_args(), __version__, digest])}"


def _hash(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:8]


def _row(name: str, runs: list[Run], flops: int, speed: float) -> dict:
    metrics = [r.read_metrics() for r in runs]
    test = [m["test_accuracy"] for m in metrics]
    val = [m["serving"]["val_accuracy"] for m in metrics]  # the kept model's, on the whole validation split
    return {
        "model": name,
        "runs": [r.path for r in runs],
        "n": len(runs),
        "test_mean": statistics.mean(test),
        "test_std": statistics.stdev(test) if len(test) > 1 else 0.0,
        "val_mean": statistics.mean(val),
        "errors": statistics.mean(m["test_errors"] for m in metrics),
        "params": runs[0].record.params,
        "flops": flops,
        "train_s": statistics.mean(r.record.timings["train_s"] for r in runs),
        "images_per_s": speed,
        "data": runs[0].record.data,
    }


COLUMNS = [
    "#",
    "model",
    "test accuracy (mean ± std)",
    "test errors",
    "val accuracy",
    "parameters",
    "MFLOP/image",
    "train s",
    "images/s",
]


def cells(rank: int, r: dict) -> list[str]:
    """One leaderboard row as text, the same in the Markdown, the HTML and the terminal's table.
    Test errors are a count: over several seeds their mean, rounded to a whole image."""
    return [
        str(rank),
        r["model"],
        f"{r['test_mean']:.2%} ± {r['test_std']:.2%} (n={r['n']})",
        f"{round(r['errors']):,}",
        f"{r['val_mean']:.2%}",
        f"{r['params']:,}",
        f"{r['flops'] / 1e6:.2f}",
        f"{r['train_s']:.0f}",
        f"{r['images_per_s']:,.0f}",
    ]


def table(rows: list[dict], caption: str | None = None):
    """The leaderboard as a Rich table, for the terminal: figures right-aligned, names unbroken."""
    from rich.table import Table

    board = Table(title="Leaderboard", caption=caption, caption_justify="left")
    for name in COLUMNS:
        board.add_column(name, justify="left" if name == "model" else "right", no_wrap=name == "model")
    for i, r in enumerate(rows, 1):
        board.add_row(*cells(i, r))
    return board


def describe(rows: list[dict], seeds: int, overrides: dict) -> str:
    """How the leaderboard's runs were made: seeds, split and settings."""
    settings = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "each model's own recipe"
    used = rows[0]["data"]
    split = f"{used.train:,} training / {used.val:,} validation images" if used else "the same split"
    which = "seed 0" if seeds == 1 else f"seeds 0-{seeds - 1}"
    return (
        f"Each model trained with {which} on the same {split} ({settings}); "
        "test accuracy read once per run at its end. Train time is per run; images/s is Keras "
        "predict on this machine."
    )


def write_leaderboard(rows: list[dict], out: Path, seeds: int, overrides: dict) -> None:
    """leaderboard.png, .md (the chart in it), .csv and .html in `out`."""
    from digitlab.evaluation.html import write_html
    from digitlab.evaluation.plots import BLUE, SMALL, figure, save, style

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    csv = ["rank,model,runs,test_mean,test_std,test_errors,val_mean,params,flops,train_s,images_per_s"]
    for i, r in enumerate(rows, 1):
        row = cells(i, r)
        row[1] = f"`{row[1]}`"
        lines.append("| " + " | ".join(row) + " |")
        csv.append(
            f"{i},{r['model']},{r['n']},{r['test_mean']:.6f},{r['test_std']:.6f},{r['errors']:g},"
            f"{r['val_mean']:.6f},{r['params']},{r['flops']},{r['train_s']:.1f},{r['images_per_s']:.0f}"
        )
    intro = describe(rows, seeds, overrides)
    fig = figure(9, 0.5 * len(rows) + 1.5)
    ax = fig.subplots()
    names = [r["model"] for r in rows][::-1]
    means = [100 * r["test_mean"] for r in rows][::-1]
    stds = [100 * r["test_std"] for r in rows][::-1]
    ax.barh(names, means, xerr=stds, capsize=4, color=BLUE, error_kw={"elinewidth": 1})
    low = min(m - s for m, s in zip(means, stds, strict=True))
    ax.set_xlim(max(0.0, low - 0.5), 100)
    for y, (m, s) in enumerate(zip(means, stds, strict=True)):
        ax.text(m + s + 0.02, y, f" {m:.2f}", va="center", fontsize=SMALL)
    style(ax, "MNIST test accuracy by model", "test accuracy, % (mean ± std over seeds)", grid="x")
    save(fig, out / "leaderboard.png")
    chart = "\n\n![leaderboard](leaderboard.png)\n"
    write_text(out / "leaderboard.md", "# Leaderboard\n\n" + intro + "\n\n" + "\n".join(lines) + chart)
    write_text(out / "leaderboard.csv", "\n".join(csv) + "\n")
    write_html(out / "leaderboard.md")
