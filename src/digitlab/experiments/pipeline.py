"""Train, then judge: what `digitlab train`, `digitlab.train()` and compare run.

The training loop (training/) never reads the test split; evaluation/ does, once the model is kept.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from digitlab.data.mnist import MNIST, load_mnist
from digitlab.errors import DigitlabError
from digitlab.progress import status
from digitlab.training.config import TrainConfig
from digitlab.training.record import Budget
from digitlab.training.runs import Run


def train(
    config: TrainConfig | None = None,
    data: MNIST | None = None,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    evaluate_after: bool = True,
    verbose: int | str = "auto",
    callbacks: list | None = None,
    budget: Budget | None = None,
) -> Path:
    """Train `config.model` into the run folder `out` (resuming an interrupted run of the same
    config there), then evaluate it on test unless `evaluate_after` is False, and mark the run
    completed. Returns the run folder."""
    config = config or TrainConfig()
    config.check()
    ours = data is None
    load_s = 0.0
    if ours:  # loaded once for both steps
        data, load_s = _load_while_importing(config, data_dir)
    from digitlab.evaluation.evaluate import evaluate
    from digitlab.experiments import distil
    from digitlab.nn.backend import tf_errors_only
    from digitlab.training import loop
    from digitlab.training.numerics import random_state_kept

    y_train = None
    if config.distil:  # the teacher reads the very images the student trains on
        t0 = time.perf_counter()
        with status("reading the training digits with the teacher (the shipped model)"):
            train_split = data.subset(config.subset)
            y_train = distil.targets(train_split.x_train, train_split.y_train, config.distil)
        load_s += time.perf_counter() - t0
    load_s = round(load_s, 2)
    with tf_errors_only(), random_state_kept():
        folder = loop.train(config, data, out, verbose, callbacks, budget, load_s, y_train)
        if ours:  # evaluation reads validation and test: the training images (157 MB) can go
            data = replace(data, x_train=np.empty((0, *data.x_train.shape[1:]), data.x_train.dtype))
        run = Run.open(folder)
        try:
            if evaluate_after:
                with status(f"evaluating {folder.name}: calibration, test split, robustness suite, report"):
                    evaluate(run, data=data.subset(config.subset))
        except BaseException as e:
            run.fail(e)
            raise
    run.complete()
    return folder


def _load_while_importing(config: TrainConfig, data_dir: str | Path | None) -> tuple[MNIST, float]:
    """MNIST, and the seconds loading it took, loaded on a thread while TensorFlow imports on this
    one: the import is seconds of Python on one core, and loading (unzipping, hashing, scaling)
    lets go of the GIL, so the two overlap. The thread reads only what is on disk: a download
    waits until TensorFlow has imported, so an install without it says so before fetching anything."""

    def load(download_missing: bool) -> tuple[MNIST, float]:
        t0 = time.perf_counter()
        data = load_mnist(data_dir, config.val_size, config.split_seed, download_missing)
        return data, time.perf_counter() - t0

    with ThreadPoolExecutor(1) as pool:
        on_disk = pool.submit(load, download_missing=False)
        import digitlab.evaluation.evaluate
        import digitlab.training.loop  # noqa: F401 (TensorFlow)

        with contextlib.suppress(DigitlabError):  # not there (or unreadable): the load below says why
            return on_disk.result()
    return load(download_missing=True)
