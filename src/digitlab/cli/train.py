"""`digitlab train`, `evaluate`, `runs`, `models`, `compare`, `ensemble`, `tune`, `data`: making and judging models."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from digitlab.cli.options import DataDir, check_models, config_options, read_settings, require, summary
from digitlab.errors import DigitlabError, suggest
from digitlab.progress import status
from digitlab.training.config import RECIPES, TrainConfig


@config_options(TrainConfig, RECIPES)
def train(
    *,
    params: Annotated[
        str | None,
        typer.Option(
            help="Settings as JSON, a JSON file such as tune's best.json, or a named recipe such as "
            "allconv-clutter (`digitlab models` lists them); options given win over it."
        ),
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
        from digitlab.training.runs import Run

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
    require("train", "keras", "tensorflow")  # before MNIST is looked for: training loads it while TF imports
    from digitlab.experiments.pipeline import train as run_training

    summary(run_training(config, out=out, data_dir=data_dir, budget=chosen))
    if chosen and chosen.stopped:
        typer.echo(f"training stopped when the budget ran out ({chosen.seconds:g} s); its best epoch so far was kept")


def _budget_config(text: str, given: dict, params: str | None, resume: Path | None):
    """--budget: the recipe frontier.choose() picks for this machine, and the Budget to record."""
    from digitlab.training import frontier
    from digitlab.training.record import Budget

    seconds = frontier.parse_budget(text)
    refused = [f"--{k.replace('_', '-')}" for k in given if k != "seed"] + (["--params"] if params else [])
    refused += ["--resume"] if resume is not None else []
    if refused:
        raise DigitlabError(f"--budget chooses the recipe itself; drop {', '.join(refused)} (--seed may stay)")
    with status(f"measuring this machine's speed to scale the frontier's times ({frontier.FRONTIER.name})"):
        speed = frontier.calibrate()
    choice = frontier.choose(seconds, speed)
    row = choice.row
    typer.echo(
        f"budget {seconds:g} s: training `{row.recipe}`, measured at {row.test_mean:.2%} ± {row.test_std:.2%} test "
        f"({row.val_mean:.2%} validation) over {row.seeds} seeds in {row.train_s_median:.0f} s on "
        f"{row.cpu}; expected here: ~{choice.expected_s:.0f} s of training and "
        f"~{frontier.evaluation_s(speed):.0f} s of evaluation"
    )
    settings = dict(frontier.CANDIDATES[row.recipe]) | given
    config = TrainConfig.for_model(settings.pop("model"), **settings)
    return config, Budget(seconds, row.recipe, round(choice.expected_s, 1))


def make_config(from_params: dict, given: dict) -> TrainConfig:
    """Precedence: the model's recipe, then --params, then the options given."""
    settings = read_settings(TrainConfig, from_params | given, examples={"model_params": '{"width": 48}'})
    name = settings.pop("model", None) or "cnn"
    check_models([name])
    return TrainConfig.for_model(name, **settings)


def _read_params(text: str | None) -> dict:
    """--params: inline JSON, a JSON file or a named recipe (frontier.RECIPE_DIR), holding TrainConfig fields."""
    if text is None:
        return {}
    from digitlab.training import frontier

    source = text if text.lstrip().startswith("{") else None
    if source is None:
        path, name = Path(text), text.replace(" ", "-")
        if path.is_file():
            source = path.read_text()
        elif name in frontier.recipe_names():
            source = (frontier.RECIPE_DIR / f"{name}.json").read_text()
        else:
            known = suggest(name, frontier.recipe_names(), "digitlab models")
            raise DigitlabError(f"--params: {text} is neither JSON nor a file, nor a recipe; {known}")
    try:
        settings = json.loads(source)
    except json.JSONDecodeError as e:
        raise DigitlabError(f"--params: not valid JSON ({e})") from None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if not isinstance(settings, dict) or not set(settings) <= known:
        unknown = sorted(set(settings) - known) if isinstance(settings, dict) else settings
        raise DigitlabError(f"--params: unknown settings {unknown}; known: {', '.join(sorted(known))}")
    return settings


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
    from digitlab.training.runs import Run

    if Run.is_run(model):
        if out is not None or pixels is not None:
            raise DigitlabError("--out and --pixels are for model files; a run folder is evaluated in place")
        from digitlab.evaluation.evaluate import evaluate as run_evaluation

        with status(f"evaluating {model}: calibration, test split, robustness suite, report"):
            run_evaluation(model, data_dir=data_dir)
        summary(model)
        return
    if not model.exists():
        raise DigitlabError(f"no run folder or model file at {model}")
    from digitlab.evaluation.evaluate import evaluate_file

    with status(f"evaluating {model}: calibration, test split, robustness suite, report"):
        folder = evaluate_file(model, out, pixels, data_dir)
    summary(folder)


def runs(root: Annotated[Path, typer.Argument(help="Folder holding run folders.")] = Path("runs")) -> None:
    """List runs, nested ones too (compare's and tune's), with their status and key figures."""
    from rich.console import Console
    from rich.table import Table

    from digitlab.training.runs import list_runs

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
            r.model_name,
            run.status.value,
            str(r.epochs_run or ""),
            f"{r.best.val_accuracy:.2%}" if r.best else "",
            f"{r.test_accuracy:.2%}" if r.test_accuracy is not None else "",
            f"{r.timings['train_s']:.0f}" if "train_s" in r.timings else "",
            f"{r.params:,}" if r.params else "",
            str(run.path.relative_to(root)),
        )
    Console(width=None if sys.stdout.isatty() else 160).print(table)  # pipes: no squeezed columns


def models() -> None:
    """List the models digitlab can train, and the measured accuracy and training time of each recipe."""
    from digitlab.nn.models import MODELS, describe
    from digitlab.training import frontier
    from digitlab.training.config import RECIPES

    width = max(map(len, MODELS))
    for name in MODELS:
        typer.echo(f"{name:<{width}}  {describe(name)}")
        if name in RECIPES:
            typer.echo(" " * (width + 2) + "recipe: " + ", ".join(f"{k}={v}" for k, v in RECIPES[name].items()))
    typer.echo(f"\nNamed recipes (`digitlab train --params NAME`): {', '.join(frontier.recipe_names())}")
    for line in frontier.describe():
        typer.echo(line)


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
    from rich.console import Console

    from digitlab.experiments.compare import compare as run_comparison
    from digitlab.experiments.compare import describe, table

    if seeds < 1:
        raise DigitlabError(f"--seeds must be at least 1, got {seeds}")
    check_models(models)
    given = {"epochs": epochs, "subset": subset, "augment": augment, "elastic": elastic}
    given = {k: v for k, v in given.items() if v is not None}
    rows = run_comparison(models, seeds, out, given, ensemble, data_dir)
    Console(width=None if sys.stdout.isatty() else 160).print(table(rows, caption=describe(rows, seeds, given)))
    typer.echo(f"leaderboard: {out / 'leaderboard.html'} (beside it: leaderboard.md, .csv and .png)")


def ensemble_command(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run folders trained on the same split.")],
    out: Annotated[Path, typer.Option(help="Run folder for the ensemble.")] = Path("runs/ensemble"),
    data_dir: DataDir = None,
) -> None:
    """Average the softmax of several runs into one model; evaluate and report it like any run."""
    from digitlab.experiments.ensemble import ensemble as build_ensemble

    with status(f"building the ensemble of {len(runs)} runs, then evaluating it"):
        folder = build_ensemble(runs, out, data_dir=data_dir)
    summary(folder)


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

    from digitlab.experiments import tune as tuning

    if trials < 1 or heartbeat < 1:
        raise DigitlabError("--trials and --heartbeat must be at least 1")
    name = study or model
    if report:
        url = storage or tuning.default_storage(out)
        study = tuning.open_study(name, url, heartbeat, create=False)
        summary = tuning.report(study, tuning.study_folder(study, out, create=False))
    else:
        check_models([model])
        summary = tuning.tune(model, trials, timeout, storage, name, epochs, subset, seed, out, heartbeat, data_dir)
    typer.echo(json.dumps(summary, indent=2))


def data(data_dir: DataDir = None) -> None:
    """Find MNIST (downloading it if absent), verify it and show the split."""
    from digitlab.data.mnist import load_mnist

    mnist = load_mnist(data_dir)
    summary = mnist.summary()
    typer.echo(
        f"MNIST verified (SHA-256) at {summary['source']}: "
        f"{summary['train']:,} train / {summary['val']:,} val / {summary['test']:,} test"
    )
