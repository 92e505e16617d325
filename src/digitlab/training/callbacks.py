"""The callbacks train() adds to Keras' fit: the best checkpoint, early stopping that survives
--resume (both keep their state in the run folder), `--budget`'s deadline and Ctrl-C."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import numpy as np

from digitlab.files import write_atomic
from digitlab.nn.backend import keras
from digitlab.training.runs import Run


class AtomicCheckpoint(keras.callbacks.Callback):
    """Keeps `best.keras` at the best validation loss; renamed into place, never half-written."""

    def __init__(self, path: Path, model: keras.Model, best: float = np.inf):
        super().__init__()
        self.path, self.best, self.target = path, best, model  # the bare model, not its training wrapper

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss", np.inf)
        if loss < self.best:
            self.best = loss
            write_atomic(self.path, self.target.save)


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
    after a kill may appear twice; its last row wins."""
    csv = run.history_csv
    if not csv.is_file() or len(csv.read_text().splitlines()) < 2:  # killed before an epoch ended
        return {k: [float(v) for v in vs] for k, vs in last_fit.items()}
    rows = np.atleast_1d(np.genfromtxt(csv, delimiter=",", names=True))
    last = {int(epoch): i for i, epoch in enumerate(rows["epoch"])}
    keep = [last[e] for e in sorted(last)]
    return {name: rows[name][keep].tolist() for name in rows.dtype.names if name != "epoch"}


def best_loss(run: Run) -> float:
    """The best validation loss of the epochs already run (a resumed run), else infinity."""
    losses = full_history(run, {}).get("val_loss")
    return float(min(losses)) if losses else np.inf
