"""Run folders: the one module that names their files and reads and writes run.json.

A run folder holds everything needed to reproduce, resume and judge one model:
  run.json                 the Record (record.py): what was asked, what data was used, what happened
  model.keras              the kept model (best validation loss), Keras' native format
  best.keras, backup/      the best checkpoint so far and the last epoch's state, for --resume
  history.csv/.json, logs/ per-epoch figures (logs/: TensorBoard)
  serving.json             temperature and decline threshold, chosen on validation
  metrics.json, report.md  the test figures, read once at the end, and the report with its plots

Three kinds of run share the layout: "train" (digitlab trained it from a TrainConfig),
"ensemble" (members averaged) and "foreign" (a model file trained elsewhere, evaluated here).
No Keras import here: listing runs and predicting stay fast.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
from pathlib import Path

from digitlab.errors import DigitlabError
from digitlab.files import UnreadableJSON, pid_alive, read_json, write_json
from digitlab.training.config import TrainConfig
from digitlab.training.record import Record, Status, machine, now, versions
from digitlab.version import __version__


class Run:
    """A run folder and its record. Create one with Run.create(), find one with Run.open()."""

    RECORD = "run.json"

    def __init__(self, path: str | Path, record: Record):
        self.path, self.record = Path(path), record
        self.json = self.path / self.RECORD
        self.model = self.model_in(self.path)
        self.best = self.path / "best.keras"
        self.backup = self.path / "backup"
        self.history_csv = self.path / "history.csv"
        self.history_json = self.path / "history.json"
        self.logs = self.path / "logs"
        self.serving = self.path / "serving.json"
        self.metrics = self.path / "metrics.json"
        self.report = self.path / "report.md"

    @staticmethod
    def model_in(folder: str | Path) -> Path:
        """Where a run folder keeps its model (for readers that need no record: predict)."""
        return Path(folder) / "model.keras"

    def figure(self, name: str) -> Path:
        return self.path / f"{name}.png"

    def table(self, name: str) -> Path:
        return self.path / f"{name}.csv"

    @classmethod
    def create(cls, path: str | Path, kind: str = "train", config: TrainConfig | None = None, **fields) -> Run:
        """A new run folder, its record written before any other file."""
        path = Path(path)
        record = Record(
            name=path.name,
            kind=kind,
            config=config,
            created=now(),
            versions=versions(),
            machine=machine(),
            pid=os.getpid(),
            host=platform.node(),
            **fields,
        )
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, record)
        run.save()
        return run

    @classmethod
    def open(cls, path: str | Path) -> Run:
        path = Path(path)
        if not (path / cls.RECORD).is_file():
            raise DigitlabError(f"{path} is not a digitlab run folder (no {cls.RECORD}); `digitlab runs` lists them")
        try:
            raw = read_json(path / cls.RECORD)
        except (OSError, UnreadableJSON) as e:
            raise DigitlabError(f"cannot read {path / cls.RECORD} ({e}); the run record is damaged") from None
        if not isinstance(raw, dict):
            raise DigitlabError(f"{path / cls.RECORD} is not a run record (a JSON object)")
        return cls(path, Record.from_dict(raw, path / cls.RECORD))

    @classmethod
    def is_run(cls, path: str | Path) -> bool:
        return (Path(path) / cls.RECORD).is_file()

    def save(self) -> None:
        write_json(self.json, self.record.to_dict())

    # --- the life of a run -------------------------------------------------------------

    def resume(self, config: TrainConfig) -> None:
        """Mark this unfinished run of `config` running again (train --resume, or an
        interrupted comparison picking up)."""
        if self.record.status == Status.COMPLETED:
            raise DigitlabError(f"{self.path} already holds a completed run; choose another --out")
        if self.record.config != config:
            raise DigitlabError(
                f"{self.path} holds a run with other settings; resume it with `digitlab train --resume {self.path}` "
                "or choose another --out"
            )
        self.record.resumed += 1
        self.record.status, self.record.error, self.record.finished = Status.RUNNING, None, None
        self.record.pid, self.record.host = os.getpid(), platform.node()
        self.save()

    def complete(self) -> None:
        self.record.status, self.record.finished = Status.COMPLETED, now()
        self.save()

    def fail(self, error: BaseException) -> None:
        interrupted = isinstance(error, KeyboardInterrupt)
        self.record.status = Status.INTERRUPTED if interrupted else Status.FAILED
        self.record.error = None if interrupted else f"{type(error).__name__}: {error}".strip()
        self.record.finished = now()
        self.save()

    @property
    def status(self) -> Status:
        """The recorded status, except that a running run whose process is gone (SIGKILL, a
        power cut) could not write its own end: it is reported as crashed."""
        r = self.record
        if r.status == Status.RUNNING and r.host == platform.node() and not pid_alive(r.pid):
            return Status.CRASHED
        return r.status

    def matches(self, config: TrainConfig, digest: str | None = None) -> bool:
        """Is this a finished run of exactly what was asked: the same settings, the same
        digitlab version (a model's architecture may change between versions) and, when
        known on both sides, the same data?"""
        r = self.record
        same_data = digest is None or r.data is None or r.data.digest in (None, digest)
        return (
            r.status == Status.COMPLETED
            and r.config == config
            and r.versions.get("digitlab") == __version__
            and same_data
        )

    def reproduce(self, here: bool = False) -> str:
        """A command that makes this run again: into a new folder (this one is taken), or with
        `here` into this run's own path, as an ensemble's command names its members."""
        if self.record.command:
            return self.record.command
        if self.record.config is None:
            return ""
        out = f" --out {shlex.quote(str(self.path))}" if here else ""
        return f"digitlab train {self.record.config.cli_args()}{out}"

    # --- the files other modules read ------------------------------------------------------

    def read_metrics(self) -> dict | None:
        return read_object(self.metrics, f"evaluate the run again (`digitlab evaluate {self.path}`)")

    def read_serving(self) -> dict | None:
        return read_object(self.serving, f"evaluate the run again (`digitlab evaluate {self.path}`)")

    def read_history(self) -> dict | None:
        return read_object(self.history_json, "train the run again")


def read_object(path: Path, fix: str) -> dict | None:
    """A JSON object digitlab wrote (a run's files, a calibration beside a model), None before it
    is written; damaged or hostile, one line saying `fix`."""
    if not path.is_file():
        return None
    try:
        found = read_json(path)
    except UnreadableJSON as e:
        raise DigitlabError(f"{e}; {fix}") from None
    if not isinstance(found, dict):
        raise DigitlabError(f"{path} is not a JSON object; {fix}")
    return found


def list_runs(root: str | Path) -> list[Run]:
    """Every run under `root`, nested folders too (compare's and tune's), oldest first.
    A record this version cannot read is skipped: `digitlab runs` lists what it can."""
    found = []
    for path in sorted(Path(root).rglob(Run.RECORD)):
        try:
            found.append(Run.open(path.parent))
        except DigitlabError:
            continue
    return sorted(found, key=lambda r: r.record.created)


def new_run_dir(model: str, root: str | Path = "runs") -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{model}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{model}-{stamp}-{n}"
    return path
