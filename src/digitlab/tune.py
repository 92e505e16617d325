"""Hyperparameter tuning with Optuna; its storage is the coordination point between workers.

One worker:   digitlab tune cnn --trials 30                   (SQLite file under runs/tune)
Many workers: digitlab tune cnn --storage postgresql://... --study cnn-v1   (on each machine)

Every trial is a real training run (a run folder under runs/tune/STUDY/) scored on the
validation split only. TPE proposes; a median pruner stops trials whose per-epoch validation
accuracy trails the others. A worker killed mid-trial stops sending heartbeats, and the next
worker to start a trial marks that trial failed; it never blocks the study.
"""

from __future__ import annotations

import dataclasses
import re
import time
import warnings
from pathlib import Path

from .config import TrainConfig
from .errors import DigitlabError
from .files import read_json, write_atomic, write_json

BATCH_SIZES = [64, 128, 256]


def training_space(trial) -> dict:
    """Settings every model shares; the model's own space is declared beside it in models.py."""
    return {
        "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", BATCH_SIZES),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
    }


def redact(url: str) -> str:
    # A regex, not urlsplit: a malformed URL is exactly the one that ends up in an error message.
    return re.sub(r"://([^:/@\s]*):[^@]*@", r"://\1:***@", url)


def open_study(name: str, storage_url: str, heartbeat: int = 10, create: bool = True):
    import optuna
    import sqlalchemy.exc

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        for attempt in range(5):
            try:
                storage = optuna.storages.RDBStorage(
                    storage_url,
                    heartbeat_interval=heartbeat,
                    grace_period=2 * heartbeat,
                    engine_kwargs={"pool_pre_ping": True},
                )
                break
            except sqlalchemy.exc.SQLAlchemyError as e:
                # Workers started together on a fresh database all create its tables; the losers
                # see "already exists" or a unique violation, and the schema is then there.
                racing = isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(e)
                if not racing or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        if not create:
            return optuna.load_study(study_name=name, storage=storage)
        return optuna.create_study(
            study_name=name,
            storage=storage,
            load_if_exists=True,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=None),  # workers must not propose the same points
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise DigitlabError(
            f"cannot open the study storage {redact(storage_url)}: {reason}; check the URL, that the "
            "database is running and reachable, and the user name and password"
        ) from None
    except KeyError:
        raise DigitlabError(f"no study '{name}' in {redact(storage_url)}; run `digitlab tune` first") from None


def default_storage(out: str | Path) -> str:
    """An embedded SQLite file: one machine, any number of local workers."""
    path = (Path(out) / "optuna.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def tune(
    model: str,
    trials: int | None = 20,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    epochs: int = 3,
    subset: int | None = None,
    seed: int = 0,
    out: str | Path = "runs/tune",
    heartbeat: int = 10,
    data_dir: str | Path | None = None,
) -> dict:
    """Run trials (this worker's share) and return the study's summary."""
    import optuna

    from .backend import keras
    from .data import load_mnist
    from .models import SPACES, check_name
    from .training import train

    check_name(model)
    if model not in SPACES:
        raise DigitlabError(f"model '{model}' declares no search space; give it one in models.py")
    out = Path(out)
    study_name = study_name or model
    storage = storage or default_storage(out)
    study = open_study(study_name, storage, heartbeat)
    data = load_mnist(data_dir)

    class Pruning(keras.callbacks.Callback):
        """Reports each epoch's validation accuracy; stops the fit when the pruner says so."""

        def __init__(self, trial):
            super().__init__()
            self.trial, self.pruned = trial, False

        def on_epoch_end(self, epoch, logs=None):
            self.trial.report(float(logs["val_accuracy"]), step=epoch)
            if self.trial.should_prune():
                self.pruned, self.model.stop_training = True, True

    def objective(trial) -> float:
        config = TrainConfig.for_model(
            model,
            epochs=epochs,
            subset=subset,
            seed=seed,
            **training_space(trial),
            model_params=SPACES[model](trial),
        )
        pruning = Pruning(trial)
        run = train(
            config,
            data=data,
            out=out / study_name / f"trial-{trial.number:04d}",
            evaluate_after=False,
            verbose=0,
            callbacks=[pruning],
        )
        trial.set_user_attr("run_dir", str(run))
        trial.set_user_attr("config", dataclasses.asdict(config))
        if pruning.pruned:
            raise optuna.TrialPruned()
        return float(read_json(run / "run.json")["best"]["val_accuracy"])  # validation only

    # A trial that raises is recorded as failed and the worker goes on with the next one.
    study.optimize(objective, n_trials=trials, timeout=timeout, catch=(Exception,))
    return report(study, out / study_name)


def report(study, folder: Path) -> dict:
    """best.json, plots and a summary of the study as it stands (all workers' trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    folder.mkdir(parents=True, exist_ok=True)
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    summary = {
        "study": study.study_name,
        "trials": len(trials),
        "by_state": {
            s.name.lower(): sum(t.state == s for t in trials) for s in states if any(t.state == s for t in trials)
        },
    }
    complete = [t for t in trials if t.state == states.COMPLETE]
    if not complete:
        return summary
    best = study.best_trial
    summary["best"] = {
        "trial": best.number,
        "val_accuracy": best.value,
        "params": best.params,
        "run_dir": best.user_attrs.get("run_dir"),
    }
    write_json(folder / "best.json", best.user_attrs["config"])
    summary["best_json"] = str(folder / "best.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's matplotlib backend is marked experimental
        figures = {"history.png": plots.plot_optimization_history, "parallel.png": plots.plot_parallel_coordinate}
        if len(complete) >= 2:
            figures["importances.png"] = plots.plot_param_importances
        for name, plot in figures.items():
            try:
                ax = plot(study)
            except (ValueError, RuntimeError):  # e.g. importances when every trial shares the same values
                continue
            fig = (ax if hasattr(ax, "get_figure") else ax.flat[0]).get_figure()
            fig.set_size_inches(9, 5)
            write_atomic(folder / name, lambda tmp, fig=fig: fig.savefig(tmp, dpi=100, bbox_inches="tight"))
            plt.close(fig)
            summary.setdefault("plots", []).append(str(folder / name))
    return summary
