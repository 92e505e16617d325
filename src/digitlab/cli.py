"""`digitlab ...`: parses options and calls the Python API, nothing more.

Heavy modules (Keras) are imported inside the commands so `--help` and user errors are instant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import TrainConfig
from .errors import DigitlabError
from .files import DISK_ERRORS

# Typer >= 0.20 vendors click privately; its public BadParameter derives from the usage-error
# class in every version, so that is how we name it without a private import.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

app = typer.Typer(
    name="digitlab",
    help="Train, compare, evaluate and use handwritten-digit classifiers on MNIST.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"digitlab {__version__}")
        raise typer.Exit()


@app.callback(context_settings={"help_option_names": ["-h", "--help"]})
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """Train, compare, evaluate and use handwritten-digit classifiers on MNIST."""


DataDir = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Folder with the MNIST IDX files or mnist.npz (else $DIGITLAB_DATA_DIR, "
        "~/.cache/digitlab/mnist, ~/.keras/datasets; downloaded if absent).",
    ),
]


def _recipe(help: str) -> typer.Option:
    return typer.Option(help=f"{help} (default: the model's recipe, see `digitlab models`)", show_default=False)


@app.command()
def train(
    model: Annotated[
        Optional[str], typer.Option(help="Model name (see `digitlab models`). [default: cnn]", show_default=False)
    ] = None,
    epochs: Annotated[Optional[int], _recipe("Maximum epochs; early stopping may end sooner.")] = None,
    batch_size: Annotated[Optional[int], _recipe("Images per gradient step.")] = None,
    lr: Annotated[Optional[float], _recipe("Peak learning rate (Adam).")] = None,
    schedule: Annotated[Optional[str], _recipe("Learning-rate schedule: cosine, onecycle or constant.")] = None,
    precision: Annotated[
        Optional[str], _recipe("float32, mixed_bfloat16, or auto (bf16 only with AMX or a GPU).")
    ] = None,
    patience: Annotated[Optional[int], _recipe("Epochs without val-loss progress before stopping.")] = None,
    weight_decay: Annotated[Optional[float], _recipe("AdamW weight decay; 0 means plain Adam.")] = None,
    augment: Annotated[
        Optional[float], _recipe("Augmentation strength, 0-3 (1: 10 deg rotation, 10% shift and zoom).")
    ] = None,
    elastic: Annotated[
        Optional[float], _recipe("Elastic warp strength, 0-3 (1: alpha 36, sigma 6 px, as Ciresan et al.).")
    ] = None,
    label_smoothing: Annotated[Optional[float], _recipe("Label smoothing, e.g. 0.1.")] = None,
    real_world: Annotated[
        Optional[float], _recipe("Real-input augmentation, 0-3: stroke width, blur, low resolution, contrast, noise.")
    ] = None,
    negatives: Annotated[
        Optional[float], _recipe("Non-digits to learn to decline, as a share of the training digits (0-1).")
    ] = None,
    params: Annotated[
        Optional[str],
        typer.Option(help="Settings as JSON, or a JSON file such as tune's best.json; explicit options win over it."),
    ] = None,
    seed: Annotated[
        Optional[int], typer.Option(help="Random seed: same seed, same result on CPU. [default: 0]", show_default=False)
    ] = None,
    val_size: Annotated[
        Optional[int],
        typer.Option(help="Validation images from the 60k training set. [default: 10000]", show_default=False),
    ] = None,
    subset: Annotated[Optional[int], typer.Option(help="Train on only this many images (quick looks).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/MODEL-TIMESTAMP).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the interrupted run in this folder.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Train a model, then evaluate it on the test split and write its report."""
    from .runs import load_config
    from .training import train as run_training

    if resume is not None:
        config, out = load_config(resume), resume
    else:
        given = dict(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            schedule=schedule,
            precision=precision,
            patience=patience,
            weight_decay=weight_decay,
            augment=augment,
            elastic=elastic,
            label_smoothing=label_smoothing,
            real_world=real_world,
            negatives=negatives,
            seed=seed,
            val_size=val_size,
            subset=subset,
        )
        # Precedence: the model's recipe, then --params, then the options given here.
        settings = _read_params(params) | {k: v for k, v in given.items() if v is not None}
        name = model or settings.get("model") or "cnn"
        config = TrainConfig.for_model(name, **{k: v for k, v in settings.items() if k != "model"})
    config.check()
    run_dir = run_training(config, out=out, data_dir=data_dir)
    _summary(run_dir)


def _read_params(text: str | None) -> dict:
    """--params: inline JSON or a JSON file, holding TrainConfig fields."""
    import dataclasses
    import json

    if text is None:
        return {}
    source = text if text.lstrip().startswith("{") else None
    if source is None:
        path = Path(text)
        if not path.is_file():
            raise DigitlabError(f"--params: {text} is neither JSON nor a file")
        source = path.read_text()
    try:
        settings = json.loads(source)
    except json.JSONDecodeError as e:
        raise DigitlabError(f"--params: not valid JSON ({e})") from None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if not isinstance(settings, dict) or not set(settings) <= known:
        unknown = sorted(set(settings) - known) if isinstance(settings, dict) else settings
        raise DigitlabError(f"--params: unknown settings {unknown}; known: {', '.join(sorted(known))}")
    return settings


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `digitlab train`.")],
    data_dir: DataDir = None,
) -> None:
    """Evaluate a trained run on the test split; rewrite its metrics, plots and report."""
    from .evaluation import evaluate as run_evaluation

    run_evaluation(run_dir, data_dir=data_dir)
    _summary(run_dir)


@app.command()
def robustness(
    model: Annotated[
        Optional[Path], typer.Argument(help="Run folder, .keras or .onnx (default: the shipped model).")
    ] = None,
    split: Annotated[str, typer.Option(help="test, or validation (for choosing between models).")] = "test",
    n: Annotated[int, typer.Option(help="Images per condition.")] = 1000,
    corruption_n: Annotated[int, typer.Option(help="Images per MNIST-C corruption (the paper: 10000).")] = 10_000,
    reader: Annotated[str, typer.Option(help="digitlab (its preprocessing) or naive (resize to 28x28).")] = "digitlab",
    out: Annotated[
        Optional[Path], typer.Option(help="Folder for the tables and picture (default: a run's own).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Measure a model on corrupted, photographed, drawn, scanned and printed digits and on non-digits."""
    from . import robustness as suite
    from .data import load_mnist
    from .predict import load
    from .runs import load_config

    if split not in ("test", "validation"):
        raise DigitlabError(f"--split must be test or validation, got '{split}'")
    if reader not in suite.READERS:
        raise DigitlabError(f"--reader must be one of {', '.join(suite.READERS)}, got '{reader}'")
    if n < 10 or corruption_n < 10:
        raise DigitlabError("--n and --corruption-n must be at least 10")
    # Beside a run's own report (whose table is a 100-image sample), never over it.
    folder = f"robustness-{split}-{reader}"
    if out is None:
        out = (
            model / folder
            if model is not None and model.is_dir()
            else Path(f"{folder}-{(model or Path('default')).stem}")
        )
    if out.exists() and not out.is_dir():
        raise DigitlabError(f"--out {out} is a file; give a folder for the tables and picture")
    loaded = load(model)
    # A run's validation split is its own (--val-size, --split-seed): another would hold training digits.
    try:  # a run folder's own split; a model file, or a folder with no run record, gets the default
        config = load_config(model) if model is not None and model.is_dir() else TrainConfig()
    except DigitlabError:
        config = TrainConfig()
    data = load_mnist(data_dir, val_size=config.val_size, split_seed=config.split_seed)
    images, labels = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
    result = suite.measure(loaded, images, labels, split, n, reader, corruption_n)
    typer.echo(suite.write(result, out).read_text())


@app.command()
def runs(root: Annotated[Path, typer.Argument(help="Folder holding run folders.")] = Path("runs")) -> None:
    """List runs with their status and key figures."""
    from rich.console import Console
    from rich.table import Table

    from .runs import list_runs, run_status

    records = list_runs(root)
    if not records:
        raise DigitlabError(f"no runs in {root}; train one with `digitlab train`")
    table = Table("model", "status", "epochs", "val acc", "test acc", "train s", "params", title=f"runs in {root}")
    table.add_column("run", no_wrap=True)  # last and unwrapped: the name must stay copyable
    for r in records:
        best = r.get("best") or {}
        table.add_row(
            r["config"]["model"],
            run_status(r),
            str(r.get("epochs_run", "")),
            f"{best['val_accuracy']:.2%}" if best else "",
            f"{r['test_accuracy']:.2%}" if "test_accuracy" in r else "",
            f"{r['timings']['train_s']:.0f}" if "train_s" in r.get("timings", {}) else "",
            f"{r['params']:,}" if "params" in r else "",
            r["path"].name,
        )
    Console(width=None if sys.stdout.isatty() else 160).print(table)  # pipes: no squeezed columns


@app.command()
def models() -> None:
    """List the models digitlab can train."""
    from .config import RECIPES
    from .models import MODELS, describe

    width = max(map(len, MODELS))
    for name in MODELS:
        typer.echo(f"{name:<{width}}  {describe(name)}")
        if name in RECIPES:
            typer.echo(" " * (width + 2) + "recipe: " + ", ".join(f"{k}={v}" for k, v in RECIPES[name].items()))


@app.command()
def compare(
    models: Annotated[list[str], typer.Argument(help="Models to compare (see `digitlab models`).")],
    seeds: Annotated[int, typer.Option(help="Seeds per model: mean and spread are over these.")] = 3,
    epochs: Annotated[Optional[int], typer.Option(help="Override every recipe's epochs.")] = None,
    subset: Annotated[Optional[int], typer.Option(help="Train on only this many images.")] = None,
    augment: Annotated[Optional[float], typer.Option(help="Override every recipe's augmentation.")] = None,
    elastic: Annotated[Optional[float], typer.Option(help="Override every recipe's elastic warp.")] = None,
    ensemble: Annotated[
        bool, typer.Option("--ensemble", help="Add an ensemble of the best model's seeds (best on validation).")
    ] = False,
    out: Annotated[Path, typer.Option(help="Folder for the runs and the leaderboard.")] = Path("runs/compare"),
    data_dir: DataDir = None,
) -> None:
    """Train models on equal terms over several seeds; write a leaderboard (Markdown, CSV, chart)."""
    from .compare import compare as run_comparison

    if seeds < 1:
        raise DigitlabError(f"--seeds must be at least 1, got {seeds}")
    given = {"epochs": epochs, "subset": subset, "augment": augment, "elastic": elastic}
    run_comparison(models, seeds, out, {k: v for k, v in given.items() if v is not None}, ensemble, data_dir)
    typer.echo((out / "leaderboard.md").read_text())


@app.command(name="ensemble")
def ensemble_command(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run folders trained on the same split.")],
    out: Annotated[Path, typer.Option(help="Run folder for the ensemble.")] = Path("runs/ensemble"),
    data_dir: DataDir = None,
) -> None:
    """Average the softmax of several runs into one model; evaluate and report it like any run."""
    from .ensemble import ensemble as build_ensemble

    _summary(build_ensemble(runs, out, data_dir=data_dir))


@app.command()
def tune(
    model: Annotated[str, typer.Argument(help="Model to tune (see `digitlab models`).")],
    trials: Annotated[int, typer.Option(help="Trials this worker runs.")] = 20,
    timeout: Annotated[Optional[float], typer.Option(help="Stop starting trials after this many seconds.")] = None,
    storage: Annotated[
        Optional[str],
        typer.Option(help="Optuna storage URL, e.g. postgresql://user:pw@host/db (default: sqlite under --out)."),
    ] = None,
    study: Annotated[
        Optional[str], typer.Option(help="Study name; the same name continues it (default: MODEL).")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Epochs per trial.")] = 3,
    subset: Annotated[Optional[int], typer.Option(help="Training images per trial (default: all 50k).")] = None,
    seed: Annotated[int, typer.Option(help="Training seed of every trial: trials differ only by their settings.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for trial runs, plots and best.json.")] = Path("runs/tune"),
    heartbeat: Annotated[
        int, typer.Option(help="Seconds between a trial's heartbeats; a trial silent for twice this is marked failed.")
    ] = 10,
    report: Annotated[bool, typer.Option("--report", help="Only summarise the study; run no trial.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Tune a model's hyperparameters with Optuna (TPE + median pruning), on validation only."""
    import json

    from . import tune as tuning

    if trials < 1 or heartbeat < 1:
        raise DigitlabError("--trials and --heartbeat must be at least 1")
    name = study or model
    if report:
        url = storage or tuning.default_storage(out)
        summary = tuning.report(tuning.open_study(name, url, heartbeat, create=False), out / name)
    else:
        summary = tuning.tune(model, trials, timeout, storage, name, epochs, subset, seed, out, heartbeat, data_dir)
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def export(
    source: Annotated[Path, typer.Argument(help="A run folder or a .keras file.")],
    format: Annotated[str, typer.Option("--format", help="onnx or savedmodel.")] = "onnx",
    out: Annotated[Optional[Path], typer.Option(help="Output path (default: beside the model).")] = None,
) -> None:
    """Export a trained model to ONNX (checked against Keras) or a TensorFlow SavedModel."""
    from .export import export as run_export

    typer.echo(f"wrote {run_export(source, format, out)}")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files: PNG, JPEG, BMP, GIF, WebP, ...")],
    model: Annotated[
        Optional[Path], typer.Option(help="Run folder, .keras or .onnx (default: the shipped model).")
    ] = None,
    top_k: Annotated[int, typer.Option(help="How many candidates to show.")] = 3,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per image.")] = False,
    number: Annotated[bool, typer.Option("--number", help="Read a written number: several digits.")] = False,
    show: Annotated[Optional[Path], typer.Option(help="Write the 28x28 input the model saw here, as PNG.")] = None,
) -> None:
    """Read handwritten digits from image files, prepared the way MNIST was."""
    import json

    from .predict import load, predict_image

    if not 1 <= top_k <= 10:
        raise DigitlabError(f"--top-k must be between 1 and 10, got {top_k}")
    reader = load(model)
    failed = 0
    for path in images:
        try:
            answer = predict_image(reader, path, top_k=top_k, number=number)
        except DigitlabError as e:
            failed += 1
            typer.echo(
                json.dumps({"file": str(path), "error": str(e)}) if json_lines else f"error: {e}", err=not json_lines
            )
            continue
        seen = answer.pop("image28")
        if show is not None:
            answer["show"] = str(_save_png(seen, show / f"{path.stem}.28x28.png"))
        typer.echo(json.dumps({"file": str(path), **answer}) if json_lines else f"{path}: {_describe(answer)}")
    if failed:
        raise typer.Exit(2)


@app.command()
def serve(
    model: Annotated[
        Optional[Path], typer.Option(help="Run folder, .keras or .onnx (default: the shipped model).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_upload: Annotated[int, typer.Option(help="Largest request body accepted, in bytes.")] = 4 * 1024 * 1024,
) -> None:
    """Serve the REST API and the draw-a-digit page."""
    from .serve import serve as run_server

    if not 0 < port < 65536:
        raise DigitlabError(f"--port must be between 1 and 65535, got {port}")
    run_server(model, host, port, max_upload)


def _describe(answer: dict) -> str:
    if "number" in answer:
        return answer["number"] if answer["number"] is not None else f"declined ({answer['reason']})"
    if answer["digit"] is None:
        return f"declined ({answer['reason']})"
    others = ", ".join(f"{c['digit']} {c['probability']:.1%}" for c in answer["top_k"][1:])
    return f"{answer['digit']} ({answer['confidence']:.1%})" + (f"; then {others}" if others else "")


def _save_png(image, path: Path) -> Path:
    import numpy as np
    from PIL import Image

    from .files import write_atomic

    pixels = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    return write_atomic(path, lambda tmp: pixels.save(tmp, format="PNG"))


@app.command()
def data(data_dir: DataDir = None) -> None:
    """Find MNIST (downloading it if absent), verify it and show the split."""
    from .data import load_mnist

    mnist = load_mnist(data_dir)
    summary = mnist.summary()
    typer.echo(
        f"MNIST verified (SHA-256) at {summary['source']}: "
        f"{summary['train']:,} train / {summary['val']:,} val / {summary['test']:,} test"
    )


def _summary(run_dir: Path) -> None:
    from .files import read_json

    metrics = read_json(Path(run_dir) / "metrics.json")
    typer.echo(
        f"{metrics['model']}: test accuracy {metrics['test_accuracy']:.2%} "
        f"({metrics['test_errors']} errors of {metrics['test_size']}); report: {Path(run_dir) / 'report.md'}"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit status 2, never a traceback."""
    try:
        code = typer.main.get_command(app).main(args=argv, prog_name="digitlab", standalone_mode=False)
    except DigitlabError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except UsageError as e:
        if not e.format_message():  # bare `digitlab`: the help was shown, nothing went wrong
            return 0
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
        typer.echo(f"error: {e.format_message()}{hint}", err=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        typer.echo(
            f"error: cannot write {e.filename} ({os.strerror(e.errno)}); free some space or choose another folder",
            err=True,
        )
        return 2
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted; resume a training run with `digitlab train --resume RUN_DIR`", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
