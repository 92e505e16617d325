"""Train one model into a run folder (runs.Run names its files): the hot loop is Keras' fit.

Model selection (early stopping, best checkpoint) looks at the validation split only; the test
split is not read here: evaluation/ judges the trained run (experiments/pipeline.py composes both).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import weakref
from pathlib import Path
from typing import NamedTuple

import numpy as np

from digitlab.data.mnist import MNIST
from digitlab.errors import DigitlabError, Interrupted
from digitlab.files import DISK_ERRORS, write_atomic, write_json
from digitlab.nn.backend import keras, tf
from digitlab.nn.models import build
from digitlab.nn.pca import adapt
from digitlab.training import ridge
from digitlab.training.augment import trainer_for
from digitlab.training.callbacks import (
    Checkpoints,
    CtrlC,
    Deadline,
    EpochSeeds,
    ResumableEarlyStopping,
    full_history,
    last_backup,
    remove_backup,
)
from digitlab.training.config import TrainConfig
from digitlab.training.numerics import precision, resolve_precision, seeded
from digitlab.training.outliers import NOT_A_DIGIT, with_negatives
from digitlab.training.record import Best, Budget, DataUsed, Status
from digitlab.training.runs import Run, new_run_dir

STEPS_PER_EXECUTION = 10  # steps per call into TensorFlow: fewer Python round-trips, same maths
WARMUP = 0.2  # share of the steps the one-cycle schedule spends warming up


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | None = None, step=None) -> tf.data.Dataset:
    """One pass over a split in batches, its last batch partial, gathered from the NumPy arrays
    themselves: in order, or with a `seed` in an order drawn from (seed, epoch), the epoch being
    `step`, a count of training steps (the optimizer's), over the steps of a pass, read as each
    pass (each new iterator: each epoch) begins. An epoch's order thus depends on nothing else: a
    run resumed at epoch 3, its optimizer restored from the backup, takes epoch 3's order, as the
    unbroken run did (a shuffle's own generator would restart)."""
    n = len(x)
    if seed is None:
        order = tf.data.Dataset.range(n).batch(batch_size)
    else:
        steps = -(-n // batch_size)

        def permutation(_):  # once per pass: the variable is read when the pass begins
            epoch = tf.convert_to_tensor(step) // steps
            seeds = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
            shuffled = tf.random.experimental.stateless_shuffle(tf.range(n), seeds)
            return tf.data.Dataset.from_tensor_slices(shuffled).batch(batch_size)

        # flat_map hides the length; fit() needs it (steps per epoch, the progress bar)
        order = tf.data.Dataset.range(1).flat_map(permutation).apply(tf.data.experimental.assert_cardinality(steps))
    # Not tensors of the arrays: converting 50,000 images costs their size twice more (~300 MB for
    # MNIST), a third of `fast`'s whole run. TensorFlow keeps a numpy_function's Python function
    # for the life of the process, so it holds the arrays only through a weak reference; the
    # dataset (and so each iterator of it) holds them strongly, and lets them go with itself.
    held_x, held_y = weakref.ref(x), weakref.ref(y)
    dtypes, shapes = (tf.as_dtype(x.dtype), tf.as_dtype(y.dtype)), (x.shape[1:], y.shape[1:])

    def take(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return held_x()[indices], held_y()[indices]

    def gather(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:  # no array in its closure either
        xb, yb = tf.numpy_function(take, [indices], dtypes, stateful=False)
        return tf.ensure_shape(xb, (None, *shapes[0])), tf.ensure_shape(yb, (None, *shapes[1]))

    # Autotuning off: with it, tearing down an iterator stalled for ~1.3 s in 4 of 10 `fast`
    # runs (Keras' own pipeline for arrays autotunes). One gather per batch needs no tuning.
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = order.map(gather).prefetch(1).with_options(options)
    dataset._digitlab_arrays = x, y
    return dataset


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    total = max(config.epochs, 1) * steps_per_epoch  # epochs 0 (a solved head alone): a schedule still builds
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.lr, decay_steps=total)
    if config.schedule == "onecycle":
        warmup = int(WARMUP * total)
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, warmup_target=config.lr, warmup_steps=warmup
        )
    return config.lr


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int, soft: bool | None = None) -> None:
    """Adam(W) on the config's schedule; the loss takes rows of ten (`soft`: label smoothing,
    negatives, a teacher's probabilities) or integer labels, as the config's targets() give."""
    lr = learning_rate(config, steps_per_epoch)
    if config.weight_decay > 0:
        optimizer = keras.optimizers.AdamW(lr, config.weight_decay, config.beta_1, config.beta_2)
    else:
        optimizer = keras.optimizers.Adam(lr, config.beta_1, config.beta_2)
    if soft_targets(config) if soft is None else soft:  # one-hot, uniform or a teacher's rows
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    else:
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        steps_per_execution=STEPS_PER_EXECUTION,
    )


def prepare_fit(model: keras.Model, config: TrainConfig, x: np.ndarray, y: np.ndarray) -> tf.data.Dataset:
    """Compile `model` to train on (x, y) under `config`; returns the training batches for fit()."""
    compile_model(model, config, -(-len(x) // config.batch_size), soft=y.ndim == 2)
    # The optimizer's and the metrics' variables, created now from two examples. Left to fit(),
    # they are created while TensorFlow traces the first training step, so it traces it twice:
    # ~0.5 s more per run, a tenth of `fast`'s training (BENCHMARKS.md).
    model.optimizer.build(model.trainable_variables)
    predicted = model(x[:2])
    model.compute_loss(x[:2], y[:2], predicted)
    model.compute_metrics(x[:2], y[:2], predicted, None)
    model.reset_metrics()
    # Each epoch's order from (seed, epoch), the epoch told by the optimizer's step count, which
    # a backup restores: no other state to save, and fit() without train()'s callbacks gets it too.
    return batches(x, y, config.batch_size, config.seed, model.optimizer.iterations)


def as_float32(model: keras.Model, name: str, params: dict | None = None) -> keras.Model:
    """The same weights in a float32 model: what gets saved, exported and served, whatever the
    training precision (mixed-precision variables are float32 already, so nothing is lost)."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    clone = build(name, **(params or {}))
    clone.set_weights(model.get_weights())
    return clone


class Setup(NamedTuple):
    model: keras.Model  # what gets saved
    trainer: keras.Model  # what fit() trains: the model behind its augmentation, if any
    train_batches: tf.data.Dataset
    val_batches: tf.data.Dataset
    negatives: int  # non-digits added to the training images


def prepare(config: TrainConfig, data: MNIST, y_train: np.ndarray | None = None) -> Setup:
    """Everything train() does before fit(): build the model, fit what adapt() fits, wrap it in
    the augmentation it trains behind, add the non-digits, compile, batch both splits. Call it
    under precision(). `y_train` replaces the training targets (a teacher's probabilities)."""
    model = build(config.model, **config.model_params)
    adapt(model, data.x_train, config.seed)  # a resumed run's backup overwrites this
    trainer = trainer_for(model, config)
    x, y = with_negatives(data.x_train, data.y_train, config.negatives, config.seed)
    if y_train is None:
        y = targets(y, config)
    else:  # the given rows are the digits'; the non-digits after them keep their uniform rows
        y = np.concatenate([y_train, targets(y[len(y_train) :], config, soft=True)])
    train_batches = prepare_fit(trainer, config, x, y)
    y_val = targets(data.y_val, config)
    if y.ndim == 2 and y_val.ndim == 1:  # the loss takes rows of ten: validation's labels as one-hot
        y_val = np.eye(10, dtype=np.float32)[y_val]
    val_batches = batches(data.x_val, y_val, config.batch_size)
    return Setup(model, trainer, train_batches, val_batches, len(x) - len(data.x_train))


def soft_targets(config: TrainConfig) -> bool:
    return config.label_smoothing > 0 or config.negatives > 0


def targets(labels: np.ndarray, config: TrainConfig, soft: bool = False) -> np.ndarray:
    """Integer labels, or rows of ten where the loss needs them (label smoothing, negatives,
    `soft`): one-hot for a digit, uniform for a non-digit (NOT_A_DIGIT)."""
    if not (soft or soft_targets(config)):
        return labels
    rows = np.full((len(labels), 10), 0.1, np.float32)
    digit = labels != NOT_A_DIGIT
    rows[digit] = keras.utils.to_categorical(labels[digit], 10)
    return rows


def disk_errno(error: BaseException) -> int | None:
    """The errno of the full or read-only disk behind `error`, else None. TensorFlow's own file
    writers (TensorBoard's logs) raise its errors, not OSError, with the system's message; taken
    for any other failure, they had train() record the failure onto the full disk, which failed
    in turn, and the CLI said "cannot write None" without a word of --resume."""
    if isinstance(error, OSError):
        return error.errno if error.errno in DISK_ERRORS else None
    if isinstance(error, tf.errors.OpError):
        return next((code for code in sorted(DISK_ERRORS) if os.strerror(code) in error.message), None)
    return None


def train(
    config: TrainConfig,
    data: MNIST,
    out: str | Path | None = None,
    verbose: int | str = "auto",
    callbacks: list | None = None,
    budget: Budget | None = None,
    load_s: float = 0.0,
    y_train: np.ndarray | None = None,
) -> Path:
    """Train `config.model` (checked) on `data` (split as the config says, loaded by the caller
    first: a missing or corrupt data set must not leave a run folder behind) into the run folder
    `out`, which it leaves with status "trained". `load_s`: what loading the data took.

    If `out` holds an interrupted run of the same config, training resumes from its last
    completed epoch. With a `budget` (frontier.choose()), training stops when its seconds run
    out. `y_train`: rows of ten replacing the training labels (a teacher's). Returns the run folder.
    """
    data = data.subset(config.subset)
    run_dir = Path(out) if out else new_run_dir(config.model)
    new_run = not Run.is_run(run_dir)
    try:
        if new_run:
            run = Run.create(run_dir, config=config)
        else:
            run = Run.open(run_dir)
            run.resume(config)
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        raise DigitlabError(
            f"cannot write the run folder {run_dir} ({os.strerror(e.errno)}); free some space or choose another --out"
        ) from None
    record = run.record
    record.data = DataUsed.of(data, config.val_size, config.split_seed, config.subset)
    record.precision = resolve_precision(config.precision)  # what "auto" meant on this machine
    record.timings["load_s"] = load_s
    record.budget = budget
    try:
        run.save()
        if verbose == "auto":
            verbose = 1 if sys.stdout.isatty() else 2  # a bar on a terminal, a line per epoch in logs
        # Seeds, op determinism and the dtype policy hold for this run only, then are as they were.
        with seeded(config.seed):
            with precision(record.precision):
                t0 = time.perf_counter()  # training time includes fitting what adapt() fits
                deadline = [Deadline(t0 + budget.seconds)] if budget else []
                # Augmentation wraps the model for training only; `model` itself is what gets saved.
                model, trainer, train_batches, val_batches, record.data.negatives = prepare(config, data, y_train)
                all_callbacks = [
                    Checkpoints(run, model),  # first: its backup is restored before the others begin
                    ResumableEarlyStopping(run, model, config.patience),
                    EpochSeeds(),  # augmentation's and dropout's draws from (seed, epoch), resumed or not
                    keras.callbacks.TensorBoard(log_dir=str(run.logs)),
                    *deadline,
                    *(callbacks or []),
                ]
                with CtrlC() as ctrl_c:
                    fit = trainer.fit(
                        train_batches,
                        validation_data=val_batches,
                        epochs=config.epochs,
                        shuffle=False,  # the batches are shuffled already
                        callbacks=[*all_callbacks, ctrl_c],
                        verbose=verbose,
                    )
            if budget:
                budget.stopped = deadline[0].stopped
            with precision("float32"):  # the saved model is float32 whatever the caller's own policy
                model = as_float32(model, config.model, config.model_params)
                if config.head == "ridge":  # the output layer solved over the trained layers (ridge.py)
                    model, record.head = ridge.fit(
                        model, data.x_train, data.y_train, data.x_val, data.y_val, config.hidden, config.seed
                    )
            record.timings["train_s"] = round(record.timings.get("train_s", 0) + time.perf_counter() - t0, 2)
        write_atomic(run.model, model.save)
        history = full_history(run, fit.history)
        write_json(run.history_json, history)
        record.params = model.count_params()
        record.epochs_run = len(history.get("val_loss", []))
        if record.head:
            record.best = Best(record.epochs_run, record.head["val_loss"], record.head["val_accuracy"])
        else:
            best = int(np.argmin(history["val_loss"]))
            record.best = Best(best + 1, history["val_loss"][best], history["val_accuracy"][best])
        record.status = Status.TRAINED
        run.save()
        remove_backup(run)  # the model is kept: nothing left to resume
        return run.path
    except BaseException as e:
        if (code := disk_errno(e)) is not None:
            # A full or read-only disk: a new run with no epoch backed up has nothing to resume,
            # so nothing of it is left behind; a longer one keeps its backup for --resume.
            if new_run and last_backup(run)[1] is None:
                shutil.rmtree(run.path, ignore_errors=True)
                raise DigitlabError(
                    f"cannot write the run folder {run.path} ({os.strerror(code)}); "
                    "free some space or choose another --out"
                ) from None
            raise DigitlabError(
                f"cannot write {getattr(e, 'filename', None) or run.path} ({os.strerror(code)}); "
                f"free some space, then `digitlab train --resume {run.path}`"
            ) from None
        run.fail(e)
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(f"interrupted; go on with `digitlab train --resume {run.path}`") from None
        raise
