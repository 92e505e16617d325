"""End to end on the real data: the CLI trains, evaluates and reports; runs are reproducible."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import digitlab
from PIL import Image

from digitlab.files import read_json, write_json
from digitlab.training.config import TrainConfig
from digitlab.training.runs import Run, list_runs

PLOTS = ["curves.png", "confusion.png", "errors.png", "samples.png", "calibration.png"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, data_dir):
    """One real `digitlab train` on 5,000 real images, shared by the tests below."""
    out = tmp_path_factory.mktemp("runs") / "cnn-small"
    result = digitlab(
        "train",
        "--model",
        "cnn",
        "--subset",
        "5000",
        "--epochs",
        "3",
        "--seed",
        "1",
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
        env={"DIGITLAB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_beats_a_real_accuracy_bar(cli_run):
    out, result = cli_run
    metrics = read_json(out / "metrics.json")
    # 5,000 images and 3 epochs; the full recipe is measured in docs/RESULTS.md.
    assert metrics["test_accuracy"] > 0.90
    assert metrics["test_size"] == 10_000
    assert f"test accuracy {metrics['test_accuracy']:.2%}" in result.stdout


@pytest.mark.parametrize(
    "flags, expected",
    [
        ("fpu sse2 avx2 fma", "float32"),  # Zen 3: bf16 would be emulated, 3.5x slower
        ("avx2 avx512f avx512_bf16", "float32"),  # Zen 5, Xeon without AMX: no faster, or slower
        ("avx2 avx512f amx_bf16 amx_tile", "mixed_bfloat16"),  # Sapphire Rapids
    ],
)
def test_auto_precision_uses_bf16_only_where_the_cpu_has_amx(flags, expected, tmp_path):
    from digitlab.training.numerics import resolve_precision

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert resolve_precision("auto", cpuinfo) == expected
    assert resolve_precision("float32", cpuinfo) == "float32"  # an explicit choice is kept


def test_run_folder_holds_a_complete_valid_report(cli_run):
    out, _ = cli_run
    for name in PLOTS:
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300
    metrics = read_json(out / "metrics.json")
    confusion = np.array(metrics["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 10_000
    assert metrics["test_errors"] == confusion.sum() - np.trace(confusion)
    assert abs(metrics["test_accuracy"] - np.trace(confusion) / 10_000) < 1e-9
    rows = (out / "confusion.csv").read_text().splitlines()
    assert len(rows) == 11 and [int(v) for v in rows[1].split(",")[1:]] == confusion[0].tolist()
    assert len((out / "per_class.csv").read_text().splitlines()) == 11
    history = read_json(out / "history.json")
    assert len(history["val_loss"]) == 3 and {"loss", "accuracy", "val_accuracy"} <= set(history)
    run = read_json(out / "run.json")
    assert run["status"] == "completed" and run["config"]["subset"] == 5000
    assert run["precision"] == "float32"  # the policy the run trained in, recorded
    assert run["versions"]["keras"].startswith("3.") and run["timings"]["train_s"] > 0
    assert any((out / "logs").rglob("events.out.tfevents.*"))  # TensorBoard
    report = (out / "report.md").read_text()
    for name in PLOTS:
        assert f"]({name})" in report
    assert Run.open(out).reproduce() in report and "--seed 1" in report
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_runs_and_evaluate_commands(cli_run, data_dir):
    out, _ = cli_run
    listing = digitlab("runs", str(out.parent))
    assert listing.returncode == 0 and "cnn-small" in listing.stdout and "completed" in listing.stdout
    before = read_json(out / "metrics.json")
    (out / "metrics.json").unlink()
    again = digitlab("evaluate", str(out), "--data-dir", str(data_dir))
    assert again.returncode == 0, again.stderr
    assert read_json(out / "metrics.json")["test_accuracy"] == before["test_accuracy"]


def test_same_seed_same_weights(mnist, tmp_path):
    from digitlab.experiments.pipeline import train
    from digitlab.nn.backend import keras

    def weights(seed: int, name: str) -> list[np.ndarray]:
        config = TrainConfig(model="mlp", epochs=1, subset=2000, seed=seed)
        run = train(config, data=mnist, out=tmp_path / name, evaluate_after=False, verbose=0)
        return keras.saving.load_model(run / "model.keras").get_weights()

    first, second, other = weights(0, "a"), weights(0, "b"), weights(1, "c")
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a, c) for a, c in zip(first, other, strict=True))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "nope"], "unknown model 'nope'; choose one of"),
        (["train", "--epochs", "zero"], "Invalid value for '--epochs'"),
        (["train", "--epochs", "0"], "--epochs must be at least 1"),
        (["train", "--elastic", "5"], "--elastic must be between 0 and 3, got 5.0"),
        (["train", "--frobnicate"], "No such option: --frobnicate"),
        (["train", "--data-dir", "/nonexistent/mnist"], "MNIST not found in /nonexistent/mnist"),
        (["evaluate", "/nonexistent/run"], "no run folder or model file at /nonexistent/run"),
        (["runs", "/nonexistent"], "no folder /nonexistent"),
        (["train", "--params", '{"bogus": 1}'], "--params: unknown settings ['bogus']"),
        (["train", "--params", "/nonexistent.json"], "--params: /nonexistent.json is neither JSON nor a file"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, message, tmp_path):
    result = digitlab(*args, env={"DIGITLAB_OFFLINE": "1"}, cwd=tmp_path)
    assert result.returncode == 2
    assert not any(tmp_path.iterdir())  # a failed command leaves nothing behind
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_corrupt_data_is_one_line_error(data_dir, tmp_path):
    import shutil

    folder = tmp_path / "mnist"
    shutil.copytree(data_dir, folder)
    (folder / "train-labels-idx1-ubyte.gz").chmod(0o644)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all, not IDX either")
    result = digitlab("data", "--data-dir", str(folder))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"{folder / 'train-labels-idx1-ubyte.gz'}" in result.stderr


def test_a_killed_run_is_listed_as_crashed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "mlp-x"
    run.mkdir()
    write_json(
        run / "run.json",
        {
            "name": "mlp-x",
            "created": "2026-01-01",
            "status": "running",
            "config": {"model": "mlp"},
            "pid": dead.pid,
            "host": os.uname().nodename,
        },
    )
    assert list_runs(tmp_path)[0].status == "crashed"
    write_json(run / "run.json", json.loads((run / "run.json").read_text()) | {"pid": os.getpid()})
    assert list_runs(tmp_path)[0].status == "running"


def test_interrupted_training_resumes(tmp_path, data_dir):
    """SIGKILL mid-run, then --resume: the run completes with every epoch in its history."""
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "digitlab.cli",
        "train",
        "--model",
        "mlp",
        "--subset",
        "20000",
        "--epochs",
        "4",
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
    ]
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "DIGITLAB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
    )
    for line in proc.stdout:  # wait until one epoch is backed up, then kill without warning
        if line.startswith("Epoch 2/"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert Run.open(out).status == "crashed"
    result = digitlab("train", "--resume", str(out), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert "Epoch 1/4" not in result.stdout  # picked up after the backed-up epoch
    run = read_json(out / "run.json")
    assert run["status"] == "completed" and run["resumed"] == 1
    history = read_json(out / "history.json")
    assert len(history["val_loss"]) == 4
    # The optimizer's step counter (which drives the LR schedule) ran on through the kill:
    # 4 epochs of ceil(20000 / 128) steps, not 3 epochs' worth counted from a fresh optimizer.
    from digitlab.nn.backend import keras

    model = keras.saving.load_model(out / "model.keras")
    assert int(model.optimizer.iterations) == 4 * 157
    # Early stopping kept its memory: the kept model is the best epoch over all four.
    assert run["best"]["epoch"] == int(np.argmin(history["val_loss"])) + 1


def test_batches_cover_each_example_once_per_pass_in_an_order_drawn_from_seed_and_epoch():
    from digitlab.nn.backend import keras
    from digitlab.training.loop import batches

    x = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)  # row i holds i
    y = np.arange(10)
    step = keras.Variable(0, dtype="int64", trainable=False)  # the optimizer's step count, as in prepare_fit()
    dataset = batches(x, y, batch_size=4, seed=0, step=step)
    assert len(dataset) == 3  # 4 + 4 + 2

    def one_pass(at_step: int) -> list:
        step.assign(at_step)
        return [(bx.numpy(), by.numpy()) for bx, by in dataset]

    passes = [one_pass(0), one_pass(3)]  # epochs 1 and 2, 3 steps each
    for one in passes:
        assert [len(by) for _, by in one] == [4, 4, 2]
        assert all(np.array_equal(bx[:, 0], by) for bx, by in one)  # images stay with their labels
        assert sorted(np.concatenate([by for _, by in one])) == list(range(10))
    orders = [np.concatenate([by for _, by in one]) for one in passes]
    assert not np.array_equal(orders[0], orders[1])  # each epoch reshuffles
    # Epoch 1 again (a run resumed there), whatever passes ran before: its own order again.
    np.testing.assert_array_equal(np.concatenate([by for _, by in one_pass(0)]), orders[0])
    in_order = np.concatenate([by.numpy() for _, by in batches(x, y, 4)])
    np.testing.assert_array_equal(in_order, y)


def test_batches_read_the_arrays_in_place_and_let_them_go_with_the_dataset():
    """No tensor copy of the training images (their size twice over while it converts), and no
    copy kept after: TensorFlow holds a numpy_function's Python function for the process's life,
    and a pass that captured the arrays would keep every run's training images of a compare."""
    import gc
    import weakref

    from digitlab.nn.backend import keras
    from digitlab.training.loop import batches

    x, y = np.zeros((8, 3), np.float32), np.arange(8)
    dataset = batches(x, y, batch_size=4, seed=1, step=keras.Variable(0, dtype="int64", trainable=False))
    x[5] = 5  # written after the dataset was made: the pass reads the array itself
    assert {int(label): row[0] for bx, by in dataset for row, label in zip(bx.numpy(), by.numpy(), strict=True)}[5] == 5
    alive = weakref.ref(x)
    del x, dataset
    gc.collect()
    assert alive() is None
