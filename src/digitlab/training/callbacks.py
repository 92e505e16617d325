"""The callbacks train() adds to Keras' fit: the run's state on disk (history, best checkpoint,
backup), early stopping that survives --resume (all three kept in the run folder), `--budget`'s
deadline and Ctrl-C."""

from __future__ import annotations

import csv
import io
import math
import re
import signal
import threading
import time

import numpy as np

from digitlab.files import write_atomic, write_text
from digitlab.nn.backend import keras
from digitlab.training.runs import Run

BACKUP = re.compile(r"epoch-(\d{4,})\.keras")  # backup/epoch-0003.keras: the state after epoch 3


class Checkpoints(keras.callbacks.Callback):
    """The run's state on disk after each epoch, in the order that leaves it consistent whenever a
    kill or a full disk stops it: the epoch's row in history.csv, then best.keras if the epoch is
    the best so far, then the backup (backup/epoch-NNNN.keras: the trainer's weights and optimizer).
    --resume goes on after the backup's epoch, whose row and checkpoint are on disk by then; an
    epoch trained again after its backup failed writes its row again, and the last one counts.

    Each file is written whole to a temporary one, flushed, then renamed (files.write_atomic); the
    backup is serialised in memory first (h5py writing onto a full disk crashes the process). The
    backup is kept after fit(), until the caller has written the model (remove_backup())."""

    def __init__(self, run: Run, model: keras.Model):
        super().__init__()
        self.run, self.target = run, model  # the bare model, not its training wrapper
        self.best = best_loss(run)

    def on_train_begin(self, logs=None):
        epoch, path = last_backup(self.run)
        if path is not None:
            self.model.load_weights(path)  # weights and optimizer state, as saved
            self.model._initial_epoch = epoch  # where fit() starts: what Keras' BackupAndRestore sets

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        append_history(self.run, epoch, logs)
        loss = logs.get("val_loss", np.inf)
        if loss < self.best:
            self.best = loss
            write_atomic(self.run.best, self.target.save)
        from keras.src.saving import saving_lib  # Keras' own .keras writer, which also takes a file object

        state = io.BytesIO()
        saving_lib.save_model(self.model, state)
        backup = self.run.backup / f"epoch-{epoch + 1:04d}.keras"
        write_atomic(backup, lambda tmp: tmp.write_bytes(state.getvalue()))
        for older in self.run.backup.glob("epoch-*.keras"):
            if older != backup and BACKUP.fullmatch(older.name):
                older.unlink(missing_ok=True)


class EpochSeeds(keras.callbacks.Callback):
    """Every random generator of the trained model (augmentation, dropout) starts each epoch at
    (its seed, the epoch), never where the epoch before left it. Keras saves no generator state
    with the weights, so a resumed run's generators would start again at epoch 1's draws; drawn
    this way, it draws what the unbroken run drew. (The training order is drawn from the seed and
    the epoch too: loop.batches.)"""

    def on_train_begin(self, logs=None):
        # A generator's state is [seed, draws so far]; its seed never changes.
        states = [v for v in self.model.non_trainable_variables if v.name == "seed_generator_state"]
        self.generators = [(state, int(state.numpy()[0])) for state in states]

    def on_epoch_begin(self, epoch, logs=None):
        for state, seed in self.generators:  # 2**32 draws an epoch before two epochs' could meet
            state.assign(np.array([seed, epoch << 32], np.int64))


def last_backup(run: Run):
    """The latest epoch backed up, and its file (0 and None before the first)."""
    found = [(int(m.group(1)), p) for p in run.backup.glob("epoch-*.keras") if (m := BACKUP.fullmatch(p.name))]
    return max(found, key=lambda e: e[0]) if found else (0, None)


def remove_backup(run: Run) -> None:
    """The backup, once the trained model is kept: a finished run does not resume."""
    import shutil

    shutil.rmtree(run.backup, ignore_errors=True)


def append_history(run: Run, epoch: int, logs: dict) -> None:
    """history.csv with this epoch's row added, rewritten whole: a full disk never leaves half a row."""
    text = run.history_csv.read_text() if run.history_csv.is_file() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].split(",") if lines else ["epoch", *sorted(logs)]
    fields = len(header)
    kept = [line for line in lines[1:] if len(line.split(",")) == fields and _numbers(line)]
    row = ",".join(str(epoch) if name == "epoch" else repr(float(logs.get(name, math.nan))) for name in header)
    write_text(run.history_csv, "\n".join([",".join(header), *kept, row]) + "\n")


def _numbers(line: str) -> bool:
    try:
        [float(v) for v in line.split(",")]
    except ValueError:
        return False
    return True


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping on validation loss that, on --resume, picks up where the killed run was:
    the best loss and epoch from history.csv, the epochs waited since, and the best weights
    from best.keras (Keras' own callback forgets all of it at the start of every fit)."""

    def __init__(self, run: Run, model: keras.Model, patience: int):
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=True)
        self.run, self.target = run, model

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        history = full_history(self.run, {})
        if history.get("val_loss") and self.run.best.is_file():
            losses = history["val_loss"]
            self.best_epoch = int(np.argmin(losses))
            self.best, self.wait = float(losses[self.best_epoch]), len(losses) - 1 - self.best_epoch
            best = keras.saving.load_model(self.run.best, compile=False)
            if self.target is self.model:
                self.best_weights = best.get_weights()
            else:  # training wraps the model (augmentation): the wrapper's weight list, best inside
                latest = self.target.get_weights()  # training goes on from here, not from the best
                self.target.set_weights(best.get_weights())
                self.best_weights = self.model.get_weights()
                self.target.set_weights(latest)


class Deadline(keras.callbacks.Callback):
    """Stops training in time for one more validation pass to end by `deadline`
    (time.perf_counter()): `train --budget`'s guard when a recipe runs slower than expected."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline, self.val_s, self.stopped = deadline, 0.0, False

    def on_test_begin(self, logs=None):
        self.val_t0 = time.perf_counter()

    def on_test_end(self, logs=None):
        self.val_s = time.perf_counter() - self.val_t0

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() + self.val_s >= self.deadline:
            self.model.stop_training = self.stopped = True


class CtrlC(keras.callbacks.Callback):
    """Ctrl-C during fit() stops it after the batch at hand, from Python code between steps: a
    KeyboardInterrupt raised at whatever point TensorFlow's Python side has reached can abort the
    process ("free(): invalid next size", SIGABRT) before the run is recorded. A second Ctrl-C
    interrupts at once. `with CtrlC() as ctrl_c:` around fit(), ctrl_c among its callbacks; the
    handler is installed only there, and only in the main thread (signals go nowhere else)."""

    def __init__(self):
        super().__init__()
        self.pressed, self.previous = False, None

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._press)
        return self

    def __exit__(self, kind, error, trace) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if self.pressed and kind is None:  # pressed during the last batch: stop all the same
            raise KeyboardInterrupt

    def _press(self, signum, frame) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True

    def _stop_if_pressed(self, batch, logs=None) -> None:
        if self.pressed:
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = _stop_if_pressed


def full_history(run: Run, last_fit: dict) -> dict[str, list[float]]:
    """The history of every fit of this run: history.csv spans resumed fits. An epoch redone
    after a kill may appear twice; its last row wins. A row cut short (by an older digitlab on a
    full disk) is skipped."""
    path = run.history_csv
    rows = list(csv.reader(path.read_text().splitlines())) if path.is_file() else []
    header, body = (rows[0], rows[1:]) if rows and "epoch" in rows[0] else ([], [])
    last = {}
    for row in body:
        try:
            values = [float(v) for v in row]
        except ValueError:
            continue
        if len(values) == len(header):
            last[int(values[header.index("epoch")])] = dict(zip(header, values, strict=True))
    if not last:  # killed before an epoch ended
        return {k: [float(v) for v in vs] for k, vs in last_fit.items()}
    epochs = [last[e] for e in sorted(last)]
    return {name: [row[name] for row in epochs] for name in header if name != "epoch"}


def best_loss(run: Run) -> float:
    """The best validation loss of the epochs already run (a resumed run), else infinity."""
    losses = full_history(run, {}).get("val_loss")
    return float(min(losses)) if losses else np.inf
