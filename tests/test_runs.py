"""The run record tells the truth: reproduce commands run, subsets are reported as used, resume and
Ctrl-C say what they do, `runs` finds every run, and tuning never meets another study's runs."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import digitlab

from digitlab import __version__
from digitlab.files import read_json, write_json
from digitlab.training.config import TrainConfig
from digitlab.training.record import DataUsed, Status
from digitlab.training.runs import Run

# A value unlike the default for every TrainConfig field: the round trip must carry each one.
OTHER = {
    "model": "mlp",
    "epochs": 7,
    "batch_size": 96,
    "lr": 0.0025,
    "schedule": "onecycle",
    "beta_1": 0.85,
    "beta_2": 0.995,
    "precision": "mixed_bfloat16",
    "weight_decay": 1e-05,
    "augment": 0.5,
    "elastic": 0.25,
    "label_smoothing": 0.1,
    "real_world": 1.5,
    "clutter": 0.5,
    "negatives": 0.2,
    "distil": 0.3,
    "model_params": {"width": 48},
    "head": "ridge",
    "hidden": 100,
    "patience": 3,
    "seed": 11,
    "val_size": 5000,
    "split_seed": 3,
    "subset": 1234,
}


@pytest.fixture(scope="module")
def subset_run(tmp_path_factory, data_dir):
    """A real run on 1,000 images: its record, report and calibration must say 1,000 and 200."""
    out = tmp_path_factory.mktemp("runs") / "mlp-subset"
    result = digitlab(
        "train", "--model", "mlp", "--subset", "1000", "--epochs", "1", "--out", str(out), "--data-dir", str(data_dir)
    )
    assert result.returncode == 0, result.stderr
    return out


def test_every_setting_round_trips_through_the_reproduce_command(tmp_path):
    assert set(OTHER) == {f.name for f in dataclasses.fields(TrainConfig)}, "a new field needs a value here"
    config = TrainConfig(**OTHER)
    assert all(getattr(config, k) != getattr(TrainConfig(), k) for k in OTHER)
    run = Run.create(tmp_path / "r", config=config)
    command = shlex.split(Run.open(run.path).reproduce())
    assert command[:2] == ["digitlab", "train"]
    result = digitlab(*command[1:], "--dry-run")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == dataclasses.asdict(config)


def test_the_command_spells_out_every_setting_so_a_recipe_change_cannot_change_it(tmp_path):
    # `fast`'s recipe sets epochs, lr, schedule...: the command must not lean on any of them.
    config = TrainConfig.for_model("fast")
    command = Run.create(tmp_path / "r", config=config).reproduce()
    for f in dataclasses.fields(TrainConfig):
        if getattr(config, f.name) is not None:
            assert f"--{f.name.replace('_', '-')} " in command


def test_help_models_and_option_checks_answer_without_tensorflow():
    probe = (
        "import sys; from digitlab.cli import main; codes = [main(a) for a in {args!r}]; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'; "
        "print(codes)"
    )
    args = [["models"], ["--help"], ["train", "--help"], ["train", "--epochs", "0"], ["train", "--model", "nope"]]
    result = subprocess.run([sys.executable, "-c", probe.format(args=args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[0, 0, 0, 2, 2]"


def test_resume_refuses_the_options_it_would_ignore(subset_run):
    result = digitlab("train", "--resume", str(subset_run), "--epochs", "3", "--lr", "0.1")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --resume continues a run with its own settings; drop --epochs, --lr"


def test_a_subset_run_is_reported_and_recalibrated_on_its_subset(subset_run, data_dir):
    run = Run.open(subset_run)
    assert (run.record.data.train, run.record.data.val, run.record.data.subset) == (1000, 200, 1000)
    assert run.record.versions["digitlab"] == __version__
    assert "trained on 1,000 images (--subset 1000), selected on 200 validation images" in run.report.read_text()
    assert run.read_serving()["val_images"] == 200
    again = digitlab("evaluate", str(subset_run), "--data-dir", str(data_dir))
    assert again.returncode == 0, again.stderr
    assert run.read_serving()["val_images"] == 200  # not the whole 10,000: the run never had them


def test_matches_is_what_was_asked_finished_by_this_version(tmp_path):
    config = TrainConfig.for_model("mlp", epochs=1)
    run = Run.create(tmp_path / "r", config=config, data=DataUsed(50_000, 10_000, 10_000, digest="these"))
    assert not run.matches(config)  # still running
    run.complete()
    run = Run.open(run.path)
    assert run.matches(config) and run.matches(config, digest="these")
    assert not run.matches(dataclasses.replace(config, epochs=2))
    assert not run.matches(config, digest="other data")
    run.record.versions["digitlab"] = "0.0.1"
    assert not run.matches(config)


def test_runs_walks_nested_folders_reads_old_records_and_says_no_runs(subset_run, tmp_path, data_dir):
    import shutil

    empty = tmp_path / "empty"
    empty.mkdir()
    result = digitlab("runs", str(empty))
    assert result.returncode == 0 and result.stdout.strip() == f"no runs in {empty}"
    nested = tmp_path / "all" / "compare" / "runs" / "mlp-a"
    shutil.copytree(subset_run, nested)
    # A record as digitlab 0.2 wrote it: no kind, the split only in config, no digest.
    record = read_json(nested / "run.json")
    old = {k: record[k] for k in ("name", "created", "status", "versions", "machine", "timings", "params")}
    old["config"] = {k: v for k, v in record["config"].items() if k not in ("real_world", "clutter", "negatives")}
    old["data"] = {k: record["data"][k] for k in ("source", "train", "val", "test")}
    old["best"], old["epochs_run"] = record["best"], record["epochs_run"]
    write_json(nested / "run.json", old)
    listing = digitlab("runs", str(tmp_path / "all"))
    assert listing.returncode == 0 and "compare/runs/mlp-a" in listing.stdout and "completed" in listing.stdout
    assert Run.open(nested).record.data.subset == 1000  # taken from the old config
    again = digitlab("evaluate", str(nested), "--data-dir", str(data_dir))
    assert again.returncode == 0, again.stderr
    write_json(nested / "run.json", old | {"config": {**old["config"], "from_the_future": 1}})
    unknown = digitlab("evaluate", str(nested), "--data-dir", str(data_dir))
    assert unknown.returncode == 2 and "from_the_future" in unknown.stderr and len(unknown.stderr.splitlines()) == 1


def test_ctrl_c_records_the_run_and_prints_how_to_resume(tmp_path, data_dir):
    out = tmp_path / "run"
    args = ["train", "--model", "mlp", "--subset", "20000", "--epochs", "6", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "digitlab.cli", *args, "--data-dir", str(data_dir)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in proc.stdout:
        if line.startswith("Epoch 2/"):
            break
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == f"interrupted; go on with `digitlab train --resume {out}`"
    assert "Traceback" not in stderr
    assert Run.open(out).status == Status.INTERRUPTED


def test_ctrl_c_during_fit_waits_for_the_batch_and_a_second_one_does_not():
    from digitlab.training.callbacks import CtrlC

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), CtrlC() as ctrl_c:
        os.kill(os.getpid(), signal.SIGINT)
        assert ctrl_c.pressed  # noted, nothing raised yet: the batch at hand finishes
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.on_train_batch_end(0)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the second: at once
    assert signal.getsignal(signal.SIGINT) is before


TUNE = ["--trials", "1", "--epochs", "1", "--subset", "500"]


def test_a_study_name_reused_on_a_fresh_storage_never_meets_the_old_trials(tmp_path, data_dir):
    out = tmp_path / "tune"
    folders = []
    for db in ("a.db", "b.db"):
        storage = f"sqlite:///{tmp_path / db}"
        args = ["--study", "s", "--storage", storage, "--out", str(out), *TUNE, "--data-dir", str(data_dir)]
        result = digitlab("tune", "mlp", *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        (trial,) = optuna.load_study(study_name="s", storage=storage).trials
        assert trial.state == optuna.trial.TrialState.COMPLETE
        folders.append(Path(trial.user_attrs["run_dir"]).parent)
    assert folders[0] != folders[1] and all(f.parent == out for f in folders)


def test_a_tune_whose_every_trial_fails_exits_non_zero_in_one_line_per_trial(tmp_path, data_dir):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    unwritable = "/sys/digitlab-tune"  # /sys refuses new folders, even to root
    args = ["tune", "mlp", "--storage", storage, "--out", unwritable, "--trials", "2", "--subset", "500"]
    result = digitlab(*args, "--data-dir", str(data_dir), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert sum(line.startswith("trial ") and "cannot write the run folder" in line for line in lines) == 2
    assert lines[-1].startswith("error: every trial of this worker failed (2); the first: cannot write the run folder")
