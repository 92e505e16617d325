"""`digitlab ...`: parses options and calls the Python API, nothing more.

Heavy modules (Keras) are imported inside the commands so `--help` and user errors are instant.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import RECIPES, TrainConfig
from .errors import DigitlabError, Interrupted
from .files import DISK_ERRORS

# Typer >= 0.20 vendors click privately; its public BadParameter derives from the usage-error
# class in every version, so that is how we name it without a private import.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

app = typer.Typer(
    name="digitlab",
    help="Train, compare, evaluate and use handwritten-digit classifiers on MNIST.",
    add_completion=True,
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


def config_options(command):
    """Give `command` one option per TrainConfig field, from the field's type and help text:
    the CLI cannot drift from the config, and every run's config is a command that runs."""
    types = {"int": int, "float": float, "str": str, "dict": str, "int | None": int}
    options = []
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = "all" if default is None else json.dumps(default) if isinstance(default, dict) else str(default)
        if any(f.name in recipe for recipe in RECIPES.values()):
            shown = f"the model's recipe, else {shown}"
        options.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    Optional[types[f.type]],
                    typer.Option(help=f"{f.metadata['help']} (default: {shown})", show_default=False),
                ],
            )
        )
    own = [
        p
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.kind != inspect.Parameter.VAR_KEYWORD
    ]
    command.__signature__ = inspect.Signature(options + own)
    command.__annotations__ = {p.name: p.annotation for p in options + own}
    return command


@app.command()
@config_options
def train(
    *,
    params: Annotated[
        Optional[str],
        typer.Option(help="Settings as JSON, or a JSON file such as tune's best.json; options given win over it."),
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default: runs/MODEL-TIMESTAMP).")] = None,
    resume: Annotated[
        Optional[Path], typer.Option(help="Continue the interrupted run in this folder, with its own settings.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the settings as JSON and stop.")] = False,
    data_dir: DataDir = None,
    **settings,
) -> None:
    """Train a model, then evaluate it on the test split and write its report."""
    given = {k: v for k, v in settings.items() if v is not None}
    if resume is not None:
        from .runs import Run

        ignored = [f"--{k.replace('_', '-')}" for k in given] + (["--params"] if params else [])
        ignored += ["--out"] if out is not None and out != resume else []
        if ignored:
            raise DigitlabError(f"--resume continues a run with its own settings; drop {', '.join(ignored)}")
        config, out = Run.open(resume).record.config, resume
        if config is None:
            raise DigitlabError(f"{resume} is not a training run; only `digitlab train` runs resume")
    else:
        config = make_config(_read_params(params), given)
    config.check()
    if dry_run:
        typer.echo(json.dumps(dataclasses.asdict(config), indent=2))
        return
    from .training import train as run_training

    _summary(run_training(config, out=out, data_dir=data_dir))


def make_config(from_params: dict, given: dict) -> TrainConfig:
    """Precedence: the model's recipe, then --params, then the options given."""
    settings = from_params | given
    if isinstance(settings.get("model_params"), str):
        try:
            settings["model_params"] = json.loads(settings["model_params"])
        except json.JSONDecodeError as e:
            raise DigitlabError(f"--model-params: not valid JSON ({e})") from None
    if not isinstance(settings.get("model_params", {}), dict):
        raise DigitlabError("--model-params must be a JSON object, e.g. '{\"width\": 48}'")
    name = settings.pop("model", None) or "cnn"
    return TrainConfig.for_model(name, **settings)


def _read_params(text: str | None) -> dict:
    """--params: inline JSON or a JSON file, holding TrainConfig fields."""
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
    model: Annotated[
        Path,
        typer.Argument(help="A run folder, or a model trained elsewhere: .keras, .h5, .onnx or a SavedModel folder."),
    ],
    out: Annotated[
        Optional[Path], typer.Option(help="Run folder for a model file's report (default: runs/NAME-evaluated-TIME).")
    ] = None,
    pixels: Annotated[
        Optional[str], typer.Option(help="A model file's pixel scale: 1, 255 or standardized (default: detected).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Evaluate a model on the test split: calibration, figures, robustness and report."""
    from .runs import Run

    if Run.is_run(model):
        if out is not None or pixels is not None:
            raise DigitlabError("--out and --pixels are for model files; a run folder is evaluated in place")
        from .evaluation import evaluate as run_evaluation

        run_evaluation(model, data_dir=data_dir)
        _summary(model)
        return
    if not model.exists():
        raise DigitlabError(f"no run folder or model file at {model}")
    from .evaluation import evaluate_file

    _summary(evaluate_file(model, out, pixels, data_dir))


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
    from .runs import Run

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
    loaded = load(model, data_dir=data_dir)
    # A run's validation split is its own (--val-size, --split-seed): another would hold training digits.
    # A model file, or a folder with no run record, gets the default split.
    used = Run.open(model).record.data if model is not None and Run.is_run(model) else None
    data = load_mnist(data_dir, **({"val_size": used.val_size, "split_seed": used.split_seed} if used else {}))
    images, labels = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
    result = suite.measure(loaded, images, labels, split, n, reader, corruption_n)
    typer.echo(suite.write(result, out).read_text())


@app.command()
def runs(root: Annotated[Path, typer.Argument(help="Folder holding run folders.")] = Path("runs")) -> None:
    """List runs, nested ones too (compare's and tune's), with their status and key figures."""
    from rich.console import Console
    from rich.table import Table

    from .runs import list_runs

    if not root.is_dir():
        raise DigitlabError(f"no folder {root}; train a model with `digitlab train` or give the folder of your runs")
    found = list_runs(root)
    if not found:
        typer.echo(f"no runs in {root}")
        return
    table = Table("model", "status", "epochs", "val acc", "test acc", "train s", "params", title=f"runs in {root}")
    table.add_column("run", no_wrap=True)  # last and unwrapped: the path must stay copyable
    for run in found:
        r = run.record
        table.add_row(
            r.model,
            run.status.value,
            str(r.epochs_run or ""),
            f"{r.best.val_accuracy:.2%}" if r.best else "",
            f"{r.test_accuracy:.2%}" if r.test_accuracy is not None else "",
            f"{r.timings['train_s']:.0f}" if "train_s" in r.timings else "",
            f"{r.params:,}" if r.params else "",
            str(run.path.relative_to(root)),
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
        study = tuning.open_study(name, url, heartbeat, create=False)
        summary = tuning.report(study, tuning.study_folder(study, out, create=False))
    else:
        summary = tuning.tune(model, trials, timeout, storage, name, epochs, subset, seed, out, heartbeat, data_dir)
    typer.echo(json.dumps(summary, indent=2))


Pixels = Annotated[
    Optional[str],
    typer.Option(
        help="A model trained elsewhere takes pixels in 1 ([0, 1]), 255 ([0, 255]) or standardized "
        "((x - 0.1307) / 0.3081) (default: detected on MNIST validation digits).",
        show_default=False,
    ),
]


@app.command()
def export(
    source: Annotated[
        Path, typer.Argument(help="A run folder, or a model trained elsewhere: .keras, .h5 or a SavedModel folder.")
    ],
    format: Annotated[str, typer.Option("--format", help="onnx or savedmodel.")] = "onnx",
    out: Annotated[Optional[Path], typer.Option(help="Output path (default: beside the model).")] = None,
    pixels: Pixels = None,
    data_dir: DataDir = None,
) -> None:
    """Export a trained model to ONNX (checked against Keras) or a TensorFlow SavedModel."""
    from .export import export as run_export

    notes: list[str] = []
    path = run_export(source, format, out, pixels=pixels, data_dir=data_dir, notes=notes)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {path}")


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files: PNG, JPEG, BMP, GIF, WebP, ...")],
    model: Annotated[
        Optional[Path],
        typer.Option(
            help="Run folder, .keras or .onnx, or a model trained elsewhere: .keras, .h5, .onnx or a SavedModel "
            "folder (default: the shipped model)."
        ),
    ] = None,
    top_k: Annotated[int, typer.Option(help="How many candidates to show.")] = 3,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per image.")] = False,
    number: Annotated[bool, typer.Option("--number", help="Read a written number: several digits.")] = False,
    show: Annotated[Optional[Path], typer.Option(help="Write the 28x28 input the model saw here, as PNG.")] = None,
    pixels: Pixels = None,
    data_dir: DataDir = None,
) -> None:
    """Read handwritten digits from image files, prepared the way MNIST was."""
    import json

    from .foreign import describe
    from .predict import load, predict_image

    if not 1 <= top_k <= 10:
        raise DigitlabError(f"--top-k must be between 1 and 10, got {top_k}")
    reader = load(model, pixels, data_dir)
    # On stderr, so --json's stdout stays one object per image.
    if "foreign" in reader.info:  # trained elsewhere: say how digitlab adapted it
        typer.echo(f"note: {describe(reader.path, reader.info['foreign'])}", err=True)
    if "note" in reader.info:
        typer.echo(f"note: {reader.info['note']}", err=True)
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
    workers: Annotated[
        int, typer.Option(help="Server processes, each with the model and 2 worker threads; metrics summed.")
    ] = 1,
    queue_wait: Annotated[
        float,
        typer.Option(help="Seconds a request may wait for a busy worker before a 503 with Retry-After."),
    ] = 5.0,  # serve_limits.QUEUE_WAIT, not imported here: --help stays instant
) -> None:
    """Serve the REST API (v1 and KServe v2), /metrics and the draw-a-digit page."""
    from .serve import serve as run_server

    if not 0 < port < 65536:
        raise DigitlabError(f"--port must be between 1 and 65535, got {port}")
    if not 1 <= workers <= 64:
        raise DigitlabError(f"--workers must be between 1 and 64, got {workers}")
    if not 0 < queue_wait <= 600:
        raise DigitlabError(f"--queue-wait must be over 0 and at most 600 seconds, got {queue_wait}")
    run_server(model, host, port, max_upload, workers, queue_wait)


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
    from .runs import Run

    run = Run.open(run_dir)
    metrics = run.read_metrics()
    typer.echo(
        f"{metrics['model']}: test accuracy {metrics['test_accuracy']:.2%} "
        f"({metrics['test_errors']} errors of {metrics['test_size']}); report: {run.report.with_suffix('.html')}"
    )


# The heavy modules behind the optional extras of pyproject.toml, by import name: a command that
# needs one that is not installed (a `digitlab[serve]` install asked to train) names the extra.
EXTRAS: dict[str, tuple[str, str]] = {
    "tensorflow": ("TensorFlow", "train"),
    "keras": ("Keras and TensorFlow", "train"),  # [train] brings both; Keras is imported first
    "tensorboard": ("TensorBoard", "train"),
    "tf2onnx": ("tf2onnx", "train"),
    "onnx": ("ONNX", "train"),
    "sklearn": ("scikit-learn", "train"),
    "matplotlib": ("matplotlib", "train"),
    "fontTools": ("fonttools", "train"),
    "skimage": ("scikit-image", "train"),
    "h5py": ("h5py", "train"),  # legacy .h5 Keras models (foreign.py)
    "optuna": ("Optuna", "tune"),
    "optuna_dashboard": ("optuna-dashboard", "tune"),
    "sqlalchemy": ("SQLAlchemy", "tune"),
    "psycopg": ("psycopg", "tune"),
    "onnxruntime": ("ONNX Runtime", "serve"),
    "fastapi": ("FastAPI", "serve"),
    "starlette": ("FastAPI", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "python_multipart": ("python-multipart", "serve"),
    "multipart": ("python-multipart", "serve"),
    "prometheus_client": ("prometheus-client", "serve"),
}


def _missing_extra(error: ModuleNotFoundError, argv: list[str]) -> str | None:
    """The one-line error for a module an extra would bring, or None for any other missing module."""
    known = EXTRAS.get((error.name or "").partition(".")[0])
    if known is None:
        return None
    what, extra = known
    command = next((a for a in argv if not a.startswith("-")), None)
    if command == "tune" and extra == "train":  # [tune] brings [train] and Optuna: one install, not two
        extra = "tune"
    return f"digitlab{' ' + command if command else ''} needs {what}: pip install 'digitlab[{extra}]'"


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit status 2, never a traceback."""
    try:
        code = typer.main.get_command(app).main(args=argv, prog_name="digitlab", standalone_mode=False)
    except DigitlabError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except Interrupted as e:  # Ctrl-C in a run, which recorded it and says how to go on
        typer.echo(str(e), err=True)
        return 130
    except ModuleNotFoundError as e:
        message = _missing_extra(e, sys.argv[1:] if argv is None else argv)
        if message is None:  # not one of the extras' modules: a real bug, keep its traceback
            raise
        typer.echo(f"error: {message}", err=True)
        return 2
    except UsageError as e:
        if not e.format_message():  # bare `digitlab`: the help was shown, nothing went wrong
            return 0
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
        typer.echo(f"error: {e.format_message()}{hint}", err=True)
        return 2
    except typer.Exit as e:
        if isinstance(e.__cause__, KeyboardInterrupt):  # Ctrl-C outside a run: nothing to resume
            typer.echo("interrupted", err=True)
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
        typer.echo("interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
