"""Hyperparameter tuning with Optuna; its storage is the coordination point between workers.

One worker:   digitlab tune cnn --trials 30                   (SQLite file under runs/tune)
Many workers: digitlab tune cnn --storage postgresql://... --study cnn-v1   (on each machine)

Every trial is a real training run (a run folder under runs/tune/STUDY/) scored on the
validation split only. TPE proposes; a median pruner stops trials whose per-epoch validation
accuracy trails the others. A worker killed mid-trial stops sending heartbeats; once it has been
silent for the grace period, the next worker to end an epoch or start a trial marks its trial
failed and queues it again, once (retry_once); it never blocks the study.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import platform
import re
import sys
import time
import traceback
import uuid
import warnings
from pathlib import Path

from digitlab.errors import DigitlabError
from digitlab.files import write_json
from digitlab.progress import overall
from digitlab.training.config import TrainConfig
from digitlab.training.runs import Run

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


def retry_once(study, trial) -> None:
    """The storage's call for a trial whose worker stopped sending heartbeats (killed, a power
    cut), once fail_stale_trials() has marked it failed: the same settings are queued again, once
    (a trial that kills its worker every time must not take the study with it)."""
    import optuna

    retries = len(trial.system_attrs.get("retry_history", []))
    # Optuna 4.9 renamed the callback (the old name warns since); either queues the trial again.
    retry = (
        getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    )
    retry(max_retry=1)(study, trial)
    again = "queued again once" if retries == 0 else "not queued again: it was a retry already"
    print(f"trial {trial.number} failed: its worker stopped (no heartbeat); {again}", file=sys.stderr)


def _stale_callback(optuna) -> str:
    """The storage's argument for retry_once: Optuna 4.9 renamed it (the old name warns since)."""
    known = inspect.signature(optuna.storages.RDBStorage).parameters
    return "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in known else "failed_trial_callback"


def open_study(name: str, storage_url: str, heartbeat: int = 10, create: bool = True):
    import optuna
    import sqlalchemy.exc

    try:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():  # heartbeats are "experimental"; they work, and we rely on them
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    storage = optuna.storages.RDBStorage(
                        storage_url,
                        heartbeat_interval=heartbeat,
                        grace_period=2 * heartbeat,
                        engine_kwargs={"pool_pre_ping": True},
                        **{_stale_callback(optuna): retry_once},
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


def study_folder(study, out: Path, create: bool = True) -> Path:
    """The folder of this study's trial runs and plots. Its name is drawn once and kept in the
    study, so a study of the same name in another storage (or one deleted and made again) never
    meets the trial runs of this one."""
    name = study.user_attrs.get("folder")
    if name is None and create:
        study.set_user_attr("folder", f"{study.study_name}-{uuid.uuid4().hex[:8]}")
        name = study.user_attrs["folder"]  # read back: of two workers starting together, one name wins
    return out / (name or study.study_name)  # a study from before folders were named: its plain name


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

    from digitlab.data.mnist import load_mnist
    from digitlab.experiments.pipeline import train
    from digitlab.nn.backend import keras
    from digitlab.nn.models import SPACES, check_name

    check_name(model)
    if model not in SPACES:
        raise DigitlabError(f"model '{model}' declares no search space; give it one in models.py")
    TrainConfig.for_model(model, epochs=epochs, subset=subset, seed=seed).check()  # bad options: before any trial
    data = load_mnist(data_dir)  # first: missing data must not leave an empty study behind
    study = open_study(study_name or model, storage or default_storage(out), heartbeat)
    folder = study_folder(study, Path(out))
    errors: dict[int, str] = {}  # what went wrong in this worker's failed trials
    ended: list = []  # the end state of each of this worker's trials

    class Pruning(keras.callbacks.Callback):
        """Reports each epoch's validation accuracy; stops the fit when the pruner says so. Also
        fails (and queues again) the trials of workers that stopped sending heartbeats: Optuna
        looks only when a trial starts, which a long trial of every worker would put off."""

        def __init__(self, trial):
            super().__init__()
            self.trial, self.pruned = trial, False

        def on_epoch_end(self, epoch, logs=None):
            self.trial.report(float(logs["val_accuracy"]), step=epoch)
            with warnings.catch_warnings():  # "experimental" since Optuna 2.9; optimize() calls it too
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
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
        trial.set_user_attr("config", dataclasses.asdict(config))
        trial.set_user_attr("worker", f"{platform.node()}:{os.getpid()}")  # which process ran it
        pruning = Pruning(trial)
        try:
            run = train(
                config,
                data=data,
                out=folder / f"trial-{trial.number:04d}",
                evaluate_after=False,
                verbose=0,
                callbacks=[pruning],
            )
        except DigitlabError as e:  # the user's to fix: the trial fails in one line, the study goes on
            errors[trial.number] = str(e)
            return float("nan")  # Optuna records a NaN objective as a failed trial, without a traceback
        except Exception:  # a bug: its traceback here, then Optuna records the trial failed
            errors[trial.number] = "an unexpected error; its traceback is above"
            traceback.print_exc()
            raise
        trial.set_user_attr("run_dir", str(run))
        if pruning.pruned:
            raise optuna.TrialPruned()
        return Run.open(run).record.best.val_accuracy  # validation only

    bar = overall("tune")
    task = bar.add_task(f"study {study.study_name}", total=trials)

    def finished(study, trial) -> None:
        ended.append(trial.state)
        if trial.state == optuna.trial.TrialState.FAIL:
            print(f"trial {trial.number} failed: {errors.get(trial.number, 'see above')}", file=sys.stderr)
        else:
            value = f" {trial.value:.2%}" if trial.value is not None else ""
            shown = (f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
            settings = ", ".join(shown)
            bar.console.print(f"trial {trial.number} {trial.state.name.lower()}{value}: {settings}", soft_wrap=True)
        bar.advance(task)

    # One line per trial, ours: Optuna's own would say a failure twice more ("the value nan is not
    # acceptable"), and a bug's traceback is printed by the objective.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with bar:
            # A trial that raises is recorded as failed and the worker goes on with the next one.
            study.optimize(objective, n_trials=trials, timeout=timeout, catch=(Exception,), callbacks=[finished])
    finally:
        optuna.logging.set_verbosity(verbosity)
    if ended and all(state == optuna.trial.TrialState.FAIL for state in ended):
        first = next(iter(errors.values()), "see the errors above")
        raise DigitlabError(f"every trial of this worker failed ({len(ended)}); the first: {first}")
    return report(study, folder)


def report(study, folder: Path) -> dict:
    """best.json, plots, report.md and .html, and a summary of the study as it stands (all workers' trials)."""
    import optuna

    from digitlab.evaluation.html import write_html
    from digitlab.evaluation.plots import plot_study
    from digitlab.files import write_text

    folder.mkdir(parents=True, exist_ok=True)
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    summary = {
        "study": study.study_name,
        "folder": str(folder),
        "trials": len(trials),
        "by_state": {
            s.name.lower(): sum(t.state == s for t in trials) for s in states if any(t.state == s for t in trials)
        },
    }
    complete = [t for t in trials if t.state == states.COMPLETE]
    if complete:
        best = study.best_trial
        summary["best"] = {
            "trial": best.number,
            "val_accuracy": best.value,
            "params": best.params,
            "run_dir": best.user_attrs.get("run_dir"),
        }
        write_json(folder / "best.json", best.user_attrs["config"])
        summary["best_json"] = str(folder / "best.json")
        summary["plots"] = [str(p) for p in plot_study(study.study_name, complete, folder)]
    write_text(folder / "report.md", study_markdown(summary))
    summary["report"] = str(write_html(folder / "report.md"))
    return summary


def study_markdown(summary: dict) -> str:
    """The study in report.md: its trials by state, the best trial and its settings, the plots."""
    counts = ", ".join(f"{n} {state}" for state, n in summary["by_state"].items()) or "none yet"
    lines = [
        f"# digitlab tuning study: {summary['study']}",
        "",
        f"{summary['trials']} trials ({counts}), each a training run scored on the validation split only; "
        f"their run folders are in `{summary['folder']}`.",
        "",
        "| state | trials |",
        "|---|---|",
        *(f"| {state} | {n} |" for state, n in summary["by_state"].items()),
        "",
        "## Best trial",
        "",
    ]
    best = summary.get("best")
    if best is None:
        return "\n".join([*lines, "No trial has completed yet.", ""])
    run = Path(best["run_dir"]).name if best["run_dir"] else "no run folder recorded"
    lines += [
        f"Trial **{best['trial']}**: validation accuracy **{best['val_accuracy']:.2%}** (run `{run}`).",
        "",
        "| setting | value |",
        "|---|---|",
        *(
            f"| {name} | {v:.4g} |" if isinstance(v, float) else f"| {name} | {v} |"
            for name, v in best["params"].items()
        ),
        "",
        "Its complete training config is best.json: `digitlab train --params best.json` trains it again.",
        "",
    ]
    titles = {"history": "Optimisation history", "settings": "Each setting against validation accuracy"}
    for plot in map(Path, summary["plots"]):
        lines += [f"## {titles.get(plot.stem, plot.stem)}", "", f"![{plot.stem}]({plot.name})", ""]
    return "\n".join(lines)
