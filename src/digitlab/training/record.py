"""run.json's typed contents: what a run was asked, what data it used, what happened, and on
which machine and versions. runs.Run reads and writes it; nothing here touches a run folder."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digitlab.errors import DigitlabError
from digitlab.training.config import TrainConfig
from digitlab.version import __version__

if TYPE_CHECKING:
    from digitlab.data.mnist import MNIST


class Status(str, enum.Enum):
    RUNNING = "running"
    TRAINED = "trained"  # weights written; the test evaluation has not finished
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CRASHED = "crashed"  # never written: a "running" run whose process is gone (see Run.status)


@dataclass
class DataUsed:
    """The data a run actually saw: its sizes after --subset, and a digest of the arrays."""

    train: int
    val: int
    test: int
    val_size: int = 10_000
    split_seed: int = 0
    subset: int | None = None
    negatives: int = 0  # non-digit images added to the training set (--negatives)
    digest: str | None = None  # data.MNIST.digest(): the same digest, the same images and labels
    source: str = ""

    @classmethod
    def of(cls, data: MNIST, val_size: int = 10_000, split_seed: int = 0, subset: int | None = None) -> DataUsed:
        """What `data`, split by (val_size, split_seed) and cut to `subset`, holds."""
        sizes = len(data.y_train), len(data.y_val), len(data.y_test)
        return cls(*sizes, val_size, split_seed, subset, digest=data.digest(), source=data.source)


@dataclass
class Best:
    epoch: int  # 1-based
    val_loss: float
    val_accuracy: float


@dataclass
class Budget:
    """What `digitlab train --budget` chose (frontier.py) and whether training ran out of time."""

    seconds: float
    recipe: str
    expected_s: float  # the recipe's slowest measured run, scaled to this machine
    stopped: bool = False  # training was stopped when the budget ran out


@dataclass
class Record:
    """run.json: one typed owner for everything a run records."""

    name: str
    kind: str = "train"  # train | ensemble | foreign | export (an .onnx file digitlab exported, evaluated)
    config: TrainConfig | None = None  # kind "train" only
    status: Status = Status.RUNNING
    created: str = ""
    finished: str | None = None
    error: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    precision: str | None = None  # what "auto" meant on the machine that trained it
    data: DataUsed | None = None
    timings: dict[str, float] = field(default_factory=dict)  # load_s, train_s (across resumes), evaluate_s
    params: int | None = None
    epochs_run: int | None = None
    best: Best | None = None
    head: dict | None = None  # a solved head's ridge strength, temperature, validation figures (ridge.py)
    budget: Budget | None = None
    test_accuracy: float | None = None
    members: list[str] = field(default_factory=list)  # an ensemble's runs
    source: str | None = None  # a foreign model's file
    adapted: dict | None = None  # what digitlab found a foreign model to take and give (foreign.py)
    command: str | None = None  # how an ensemble or a foreign evaluation was made
    resumed: int = 0
    pid: int | None = None
    host: str | None = None

    @property
    def model_name(self) -> str:
        """The model's name: the zoo's, "ensemble", or a foreign file's (Run.model is its path)."""
        if self.config is not None:
            return self.config.model
        return self.kind if self.kind == "ensemble" else Path(self.source or self.name).name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"status": self.status.value}

    @classmethod
    def from_dict(cls, raw: dict, where: Path) -> Record:
        """Today's run.json, or one written by an earlier digitlab (fields added since take
        their defaults; an ensemble's old pseudo-config becomes its data split)."""
        raw = dict(raw)
        known = {f.name for f in dataclasses.fields(cls)}
        config = raw.pop("config", None)
        if isinstance(config, dict) and isinstance(raw.get("data"), dict):  # older records: the split is in config
            split = {k: config[k] for k in ("val_size", "split_seed", "subset") if k in config}
            raw["data"] = {**split, **raw["data"]}
        if isinstance(config, dict) and config.get("model") == "ensemble":
            raw.setdefault("kind", "ensemble")
            config = None
        try:
            record = cls(**{k: v for k, v in raw.items() if k in known})
            record.config = _config(config) if config is not None else None
            record.status = Status(record.status)
            if isinstance(record.data, dict):
                data = record.data
                record.data = DataUsed(**{k: v for k, v in data.items() if k in DataUsed.__dataclass_fields__})
            if isinstance(record.best, dict):
                record.best = Best(**record.best)
            if isinstance(record.budget, dict):
                record.budget = Budget(**record.budget)
        except (TypeError, ValueError) as e:
            raise DigitlabError(f"{where} is a run record this digitlab cannot read ({e}); retrain the run") from None
        return record


def _config(raw: dict) -> TrainConfig:
    unknown = set(raw) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"settings unknown to this version: {', '.join(sorted(unknown))}")
    return TrainConfig(**raw)


def versions() -> dict[str, str]:
    """The package versions that made a run, and the source's git commit when there is one."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"digitlab": __version__, "python": platform.python_version()}
    for name in ("keras", "tensorflow", "tensorflow-cpu", "numpy", "scikit-learn", "onnxruntime"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    commit = git_commit()
    if commit:
        found["git"] = commit
    return found


def git_commit() -> str | None:
    """HEAD of the checkout digitlab runs from, "+dirty" with uncommitted changes; None for an
    installed wheel or without git."""
    source = Path(__file__).resolve().parents[1]  # the package's folder
    try:
        # Installed (a wheel in a venv that happens to sit inside some checkout): not ours.
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "version.py"], cwd=source, capture_output=True, timeout=5
        )
        if tracked.returncode != 0:
            return None
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")
