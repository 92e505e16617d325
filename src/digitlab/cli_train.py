"""`digitlab train`, `evaluate`, `runs`, `models`, `compare`, `ensemble`, `tune`, `data`: making and judging models."""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .cli import DataDir, _summary, app
from .config import RECIPES, TrainConfig
from .errors import DigitlabError


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
                    types[f.type] | None,
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
        str | None,
        typer.Option(help="Settings as JSON, or a JSON file such as tune's best.json; options given win over it."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: runs/MODEL-TIMESTAMP).")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the interrupted run in this folder, with its own settings.")
    ] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            help="Training time, e.g. 30s, 5m, 1h: trains the most accurate measured recipe that fits it on this "
            "machine and stops on time (`digitlab models` shows the frontier)."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the settings as JSON and stop.")] = False,
    data_dir: DataDir = None,
    **settings,
) -> None:
    """Train a model, then evaluate it on the test split and write its report."""
    given = {k: v for k, v in settings.items() if v is not None}
    chosen = None
    if budget is not None:
        config, chosen = _budget_config(budget, given, params, resume)
    elif resume is not None:
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

    _summary(run_training(config, out=out, data_dir=data_dir, budget=chosen))
    if chosen and chosen.stopped:
        typer.echo(f"training stopped when the budget ran out ({chosen.seconds:g} s); its best epoch so far was kept")


def _budget_config(text: str, given: dict, params: str | None, resume: Path | None):
    """--budget: the recipe frontier.choose() picks for this machine, and the Budget to record."""
    from . import frontier
    from .runs import Budget

    seconds = frontier.parse_budget(text)
    refused = [f"--{k.replace('_', '-')}" for k in given if k != "seed"] + (["--params"] if params else [])
    refused += ["--resume"] if resume is not None else []
    if refused:
        raise DigitlabError(f"--budget chooses the recipe itself; drop {', '.join(refused)} (--seed may stay)")
    typer.echo(f"measuring this machine's speed (~1 s) to scale the frontier's times ({frontier.FRONTIER.name})")
    choice = frontier.choose(seconds, frontier.calibrate())
    row = choice.row
    typer.echo(
        f"budget {seconds:g} s: training `{row.recipe}`, measured at {row.test_mean:.2%} ± {row.test_std:.2%} test "
        f"({row.val_mean:.2%} validation) over {row.seeds} seeds in {row.train_s_median:.0f} s on "
        f"{row.cpu}; expected here: ~{choice.expected_s:.0f} s of training, then the evaluation"
    )
    settings = dict(frontier.CANDIDATES[row.recipe]) | given
    config = TrainConfig.for_model(settings.pop("model"), **settings)
    return config, Budget(seconds, row.recipe, round(choice.expected_s, 1))


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
        Path | None, typer.Option(help="Run folder for a model file's report (default: runs/NAME-evaluated-TIME).")
    ] = None,
    pixels: Annotated[
        str | None, typer.Option(help="A model file's pixel scale: 1, 255 or standardized (default: detected).")
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
    """List the models digitlab can train, and the measured accuracy and training time of each recipe."""
    from . import frontier
    from .config import RECIPES
    from .models import MODELS, describe

    width = max(map(len, MODELS))
    for name in MODELS:
        typer.echo(f"{name:<{width}}  {describe(name)}")
        if name in RECIPES:
            typer.echo(" " * (width + 2) + "recipe: " + ", ".join(f"{k}={v}" for k, v in RECIPES[name].items()))
    for line in frontier.describe():
        typer.echo(line)


@app.command()
def compare(
    models: Annotated[list[str], typer.Argument(help="Models to compare (see `digitlab models`).")],
    seeds: Annotated[int, typer.Option(help="Seeds per model: mean and spread are over these.")] = 3,
    epochs: Annotated[int | None, typer.Option(help="Override every recipe's epochs.")] = None,
    subset: Annotated[int | None, typer.Option(help="Train on only this many images.")] = None,
    augment: Annotated[float | None, typer.Option(help="Override every recipe's augmentation.")] = None,
    elastic: Annotated[float | None, typer.Option(help="Override every recipe's elastic warp.")] = None,
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
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL, e.g. postgresql://user:pw@host/db (default: sqlite under --out)."),
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name; the same name continues it (default: MODEL).")] = None,
    epochs: Annotated[int, typer.Option(help="Epochs per trial.")] = 3,
    subset: Annotated[int | None, typer.Option(help="Training images per trial (default: all 50k).")] = None,
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
