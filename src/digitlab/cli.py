"""`digitlab ...`: parses options and calls the Python API, nothing more.

Heavy modules (Keras) are imported inside the commands so `--help` and user errors are instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import TrainConfig
from .errors import DigitlabError

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

DataDir = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Folder with the MNIST IDX files or mnist.npz (else $DIGITLAB_DATA_DIR, "
        "~/.cache/digitlab/mnist, ~/.keras/datasets; downloaded if absent).",
    ),
]
_default = TrainConfig()


@app.command()
def train(
    model: Annotated[str, typer.Option(help="Model name (see `digitlab models`).")] = _default.model,
    epochs: Annotated[int, typer.Option(help="Maximum epochs; early stopping may end sooner.")] = _default.epochs,
    batch_size: Annotated[int, typer.Option(help="Images per gradient step.")] = _default.batch_size,
    lr: Annotated[float, typer.Option(help="Peak learning rate (Adam).")] = _default.lr,
    schedule: Annotated[str, typer.Option(help="'cosine' decay to zero or 'constant'.")] = _default.schedule,
    patience: Annotated[
        int, typer.Option(help="Epochs without val-loss progress before stopping.")
    ] = _default.patience,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same result on CPU.")] = _default.seed,
    val_size: Annotated[
        int, typer.Option(help="Validation images taken from the 60k training set.")
    ] = _default.val_size,
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
        config = TrainConfig(
            model=model,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            schedule=schedule,
            patience=patience,
            seed=seed,
            val_size=val_size,
            subset=subset,
        )
    config.check()
    run_dir = run_training(config, out=out, data_dir=data_dir)
    _summary(run_dir)


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
    from .models import MODELS, describe

    width = max(map(len, MODELS))
    for name in MODELS:
        typer.echo(f"{name:<{width}}  {describe(name)}")


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
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted; resume a training run with `digitlab train --resume RUN_DIR`", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
