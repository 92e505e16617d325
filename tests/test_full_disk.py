"""A full disk while training, on a real (tiny) filesystem: one `error:` line and never a crash, the
last good checkpoint kept, and a resumed run ends with every epoch, never a short one completed.
Mounting a tmpfs needs root, as CI has; elsewhere these tests are skipped and say why."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tmpfs

from digitlab.files import read_json
from digitlab.training.config import TrainConfig
from digitlab.training.record import Status
from digitlab.training.runs import Run

CONFIG = TrainConfig.for_model("fast", epochs=3, subset=2000)


@pytest.fixture
def disk(tmp_path):
    with tmpfs(tmp_path / "disk", "4m") as mount:
        yield mount


def fill(disk: Path, leave: int) -> Path:
    """A file that takes all the disk's free space but `leave` bytes."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(stats.f_bavail * stats.f_frsize - leave, 4096))
    return filler


def train(out: Path, data_dir: Path) -> subprocess.Popen:
    args = ["train", *shlex.split(CONFIG.cli_args()), "--out", str(out), "--data-dir", str(data_dir)]
    return subprocess.Popen(
        [sys.executable, "-m", "digitlab.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=out.parent,
    )


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


def test_a_disk_full_after_an_epoch_keeps_that_epoch_and_the_resume_trains_the_rest(disk, data_dir, mnist):
    from digitlab.experiments.pipeline import train as resume
    from digitlab.nn.models import load as load_model
    from digitlab.training.callbacks import full_history, last_backup

    out = disk / "run"
    proc = train(out, data_dir)
    for line in proc.stdout:  # Keras prints it once epoch 1's files are all written
        if line.startswith("Epoch 2/"):
            break
    proc.send_signal(signal.SIGSTOP)  # held while the disk fills: a short epoch cannot end first
    try:
        # Room for the history's next row, none for the next checkpoint (before the fix: h5py
        # wrote the backup in place, failed half-way and the process died of a segfault).
        filler = fill(disk, leave=48 * 1024)
    except BaseException:
        proc.kill()  # not left stopped, holding the tmpfs
        raise
    finally:
        proc.send_signal(signal.SIGCONT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr[-3000:]
    error = one_error_line(stderr)
    assert "(No space left on device); free some space, then `digitlab train --resume" in error
    run = Run.open(out)
    epoch, backup = last_backup(run)
    assert epoch >= 1 and load_model(backup) is not None  # whole, readable (nn.models registers its layers)
    assert len(full_history(run, {})["val_loss"]) >= epoch  # every epoch backed up has its row

    filler.unlink()
    resume(run.record.config, data=mnist, out=out, evaluate_after=False, verbose=0)  # `train --resume`, unevaluated
    record = Run.open(out).record
    assert record.status == Status.COMPLETED and record.resumed == 1
    assert record.epochs_run == CONFIG.epochs == len(read_json(out / "history.json")["val_loss"])
    assert [row.split(",")[0] for row in (out / "history.csv").read_text().splitlines()[1:]][-1] == "2"
    assert not (out / "backup").exists()  # the model is kept: nothing left to resume
    assert not [p for p in out.rglob("*") if p.name.startswith(".digitlab-tmp-")]


def test_a_disk_that_fills_during_the_first_epoch_is_one_line_and_leaves_nothing(disk, data_dir):
    # 100 KB: room for run.json and a history row, not for a checkpoint (before the fix: exit 139,
    # h5py's "Exception ignored" tracebacks, and a backup that --resume could not read).
    subprocess.run(["mount", "-o", "remount,size=100k", str(disk)], check=True)
    out = disk / "run"
    proc = train(out, data_dir)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr[-3000:]
    error = one_error_line(stderr)
    assert error.startswith(f"error: cannot write the run folder {out} (No space left on device)")
    assert list(disk.iterdir()) == []  # no epoch was backed up: nothing to resume, nothing kept


def test_a_disk_that_fills_under_tensorboards_writer_is_the_same_one_line(disk, mnist):
    # TensorFlow's file writers (TensorBoard's logs) raise its own error, not OSError: before
    # the fix the run was recorded as failed, onto the full disk, and the CLI said "cannot write None".
    from digitlab.errors import DigitlabError
    from digitlab.nn.backend import keras
    from digitlab.training.loop import train

    class FillAfterAStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if not (disk / "filler").exists():
                fill(disk, leave=0)

    with pytest.raises(DigitlabError) as raised:
        train(CONFIG, mnist, disk / "run", verbose=0, callbacks=[FillAfterAStep()])
    assert str(raised.value) == (
        f"cannot write the run folder {disk / 'run'} (No space left on device); free some space or choose another --out"
    )
    assert [p.name for p in disk.iterdir()] == ["filler"]  # no epoch was backed up: nothing kept
