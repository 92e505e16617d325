"""Architectures on equal terms: same split, same seeds, each trained by its own recipe.

`compare()` trains every model with every seed (finished runs are reused, so an interrupted
comparison picks up where it stopped), then writes the leaderboard as Markdown, CSV and a bar
chart. Selection uses validation only: the ensemble, if asked for, is built from the model with
the best mean *validation* accuracy; each run reads the test split once, at its end.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .files import read_json, write_atomic, write_text

THROUGHPUT_IMAGES = 10_000


def throughput(model_path: Path) -> float:
    """Images per second through Keras' predict, on random images (no data is read for it)."""
    from .predict import KerasModel

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
    from .data import load_mnist
    from .ensemble import ensemble
    from .models import build, check_name, flops_per_image
    from .training import train

    for name in models:
        check_name(name)
    out, overrides = Path(out), overrides or {}
    data = load_mnist(data_dir)
    rows = []
    for name in models:
        runs = []
        for seed in range(seeds):
            run = out / "runs" / f"{name}-seed{seed}"
            done = (run / "run.json").is_file() and read_json(run / "run.json").get("status") == "completed"
            if not done:
                train(TrainConfig.for_model(name, seed=seed, **overrides), data=data, out=run)
            runs.append(run)
        records = [read_json(r / "run.json") for r in runs]
        metrics = [read_json(r / "metrics.json") for r in runs]
        params = records[0]["config"].get("model_params", {})
        rows.append(
            _row(
                name,
                runs,
                records,
                metrics,
                flops_per_image(build(name, **params)),
                throughput(runs[0] / "model.keras"),
            )
        )
    if with_ensemble and seeds >= 2:
        best = max(rows, key=lambda r: r["val_mean"])  # chosen on validation, never on test
        target = out / "runs" / f"ensemble-{best['model']}-x{seeds}"
        if not (target / "metrics.json").is_file():
            ensemble(best["runs"], target, data=data)
        record, metric = read_json(target / "run.json"), read_json(target / "metrics.json")
        rows.append(
            _row(
                f"ensemble of {seeds} {best['model']}",
                [target],
                [record],
                [metric],
                best["flops"] * seeds,
                throughput(target / "model.keras"),
            )
        )
    rows.sort(key=lambda r: -r["test_mean"])
    write_leaderboard(rows, out, seeds, overrides)
    return rows


def _row(name: str, runs: list[Path], records: list[dict], metrics: list[dict], flops: int, speed: float) -> dict:
    test = [m["test_accuracy"] for m in metrics]
    val = [m["serving"]["val_accuracy"] for m in metrics]  # the kept model's, on the whole validation split
    return {
        "model": name,
        "runs": runs,
        "n": len(runs),
        "test_mean": statistics.mean(test),
        "test_std": statistics.stdev(test) if len(test) > 1 else 0.0,
        "val_mean": statistics.mean(val),
        "errors": statistics.mean(m["test_errors"] for m in metrics),
        "params": records[0]["params"],
        "flops": flops,
        "train_s": statistics.mean(r["timings"]["train_s"] for r in records),
        "images_per_s": speed,
    }


def write_leaderboard(rows: list[dict], out: Path, seeds: int, overrides: dict) -> None:
    from matplotlib.figure import Figure

    columns = [
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
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    csv = ["rank,model,runs,test_mean,test_std,test_errors,val_mean,params,flops,train_s,images_per_s"]
    for i, r in enumerate(rows, 1):
        lines.append(
            f"| {i} | `{r['model']}` | {r['test_mean']:.2%} ± {r['test_std']:.2%} (n={r['n']}) | "
            f"{r['errors']:.1f} | {r['val_mean']:.2%} | {r['params']:,} | {r['flops'] / 1e6:.2f} | "
            f"{r['train_s']:.0f} | {r['images_per_s']:,.0f} |"
        )
        csv.append(
            f"{i},{r['model']},{r['n']},{r['test_mean']:.6f},{r['test_std']:.6f},{r['errors']:.1f},"
            f"{r['val_mean']:.6f},{r['params']},{r['flops']},{r['train_s']:.1f},{r['images_per_s']:.0f}"
        )
    settings = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "each model's own recipe"
    intro = (
        f"Each model trained with seeds 0-{seeds - 1} on the same 50k/10k split ({settings}); "
        "test accuracy read once per run at its end. Train time is per run; images/s is Keras "
        "predict on this machine."
    )
    write_text(out / "leaderboard.md", "# Leaderboard\n\n" + intro + "\n\n" + "\n".join(lines) + "\n")
    write_text(out / "leaderboard.csv", "\n".join(csv) + "\n")
    fig = Figure(figsize=(9, 0.5 * len(rows) + 1.5))
    ax = fig.subplots()
    names = [r["model"] for r in rows][::-1]
    means = [100 * r["test_mean"] for r in rows][::-1]
    stds = [100 * r["test_std"] for r in rows][::-1]
    ax.barh(names, means, xerr=stds, capsize=4, color="#3563e9")
    low = min(m - s for m, s in zip(means, stds, strict=True))
    ax.set(
        xlim=(max(0.0, low - 0.5), 100),
        xlabel="test accuracy, % (mean ± std over seeds)",
        title="MNIST test accuracy by model",
    )
    for y, (m, s) in enumerate(zip(means, stds, strict=True)):
        ax.text(m + s + 0.02, y, f"{m:.2f}", va="center", fontsize=8)
    write_atomic(out / "leaderboard.png", lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
