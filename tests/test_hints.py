"""The first ten minutes (issue 33): every hint is a command that works from where the user stands;
a [serve] install (no TensorFlow, no scikit-learn) reads a run folder through its ONNX export and
verifies MNIST; `--show` names what it wrote; every wait of seconds says what it waits for.

A [serve] install is this venv with [train]'s modules made unimportable in a fresh process: each
name None in sys.modules, Python's own mark for a module that is not there (importing it raises
ModuleNotFoundError, importlib.util.find_spec answers None).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rich
from conftest import ROOT
from PIL import Image

from digitlab.cli import main
from digitlab.errors import from_origin, install_hint

NOT_IN_SERVE = ("tensorflow", "keras", "tensorboard", "tf2onnx", "onnx", "sklearn", "matplotlib", "fontTools")
NOT_IN_SERVE += ("skimage", "h5py", "optuna")


def serve_install(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`digitlab ARGS` in a fresh process that cannot import [train]'s (or [tune]'s) modules."""
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({NOT_IN_SERVE!r})); "
        "from digitlab.cli import main; sys.exit(main())"
    )
    cwd = cwd or Path(tempfile.mkdtemp(prefix="digitlab-cwd-"))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def quoted(path: Path, extra: str) -> str:
    return shlex.quote(f"{path}[{extra}]")


def test_a_missing_extra_names_the_install_that_works_from_here(tmp_path):
    # This checkout is a source checkout: in its root the command is the README's, elsewhere its path.
    for cwd, source in ((ROOT, "'.[train]'"), (tmp_path, quoted(ROOT, "train"))):
        result = serve_install("train", "--model", "fast", "--subset", "100", cwd=cwd)
        assert result.returncode == 2, result.stderr
        assert re.fullmatch(
            rf"error: digitlab train needs [\w -]+: pip install -e {re.escape(source)}\n", result.stderr
        )
    tune = serve_install("tune", "mlp", "--trials", "1", cwd=tmp_path)
    assert tune.stderr == f"error: digitlab tune needs Optuna: pip install -e {quoted(ROOT, 'tune')}\n", tune.stderr


def test_every_source_pip_records_gets_a_command_for_it(tmp_path, monkeypatch):
    """direct_url.json (PEP 610) as pip writes it for `pip install '.[serve]'` in a clone, an
    editable install, a wheel, a git URL; nothing recorded: an index that has digitlab."""
    folder = {"url": ROOT.as_uri(), "dir_info": {}}
    monkeypatch.chdir(tmp_path)
    assert from_origin(folder, "train") == f"pip install {quoted(ROOT, 'train')}"
    assert from_origin({**folder, "dir_info": {"editable": True}}, "tune") == f"pip install -e {quoted(ROOT, 'tune')}"
    wheel = {"url": "file:///tmp/dist/digitlab-0.3.0-py3-none-any.whl", "archive_info": {}}
    assert from_origin(wheel, "train") == f"pip install 'digitlab[train] @ {wheel['url']}'"
    git = {"url": "https://github.com/o/digitlab", "vcs_info": {"vcs": "git", "commit_id": "ab12"}}
    assert from_origin(git, "serve") == "pip install 'digitlab[serve] @ git+https://github.com/o/digitlab@ab12'"
    assert from_origin({}, "train") == "pip install 'digitlab[train]'"
    monkeypatch.chdir(ROOT)
    assert from_origin(folder, "train") == "pip install '.[train]'"
    assert install_hint("train") == "pip install -e '.[train]'"


@pytest.mark.network
def test_the_hinted_commands_resolve(tmp_path, monkeypatch):
    """pip itself reads each hinted command, where it was hinted (a dry run: it builds digitlab's
    metadata, resolves the extra, installs nothing). Building needs setuptools from the registry:
    offline, skipped."""
    from test_wheel import PIP_CACHE, registry_or_skip

    registry_or_skip(tmp_path)
    env = {**os.environ, "PIP_CACHE_DIR": PIP_CACHE, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    cloned = {"url": ROOT.as_uri(), "dir_info": {}}  # `pip install '.[serve]'` in a clone
    for cwd, hint in ((ROOT, lambda: install_hint("train")), (tmp_path, lambda: from_origin(cloned, "tune"))):
        monkeypatch.chdir(cwd)
        program, *args = shlex.split(hint())
        assert program == "pip"
        result = subprocess.run(
            [sys.executable, "-m", "pip", *args, "--dry-run"], capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, (args, result.stderr[-2000:])
        assert "Would install digitlab-" in result.stdout, (args, result.stdout[-2000:])
        assert "does not provide the extra" not in result.stderr, (args, result.stderr)


def test_the_split_is_scikit_learns_drawn_with_numpy(mnist, data_dir):
    from sklearn.model_selection import train_test_split

    from digitlab.data.mnist import load_raw, split_indices

    labels = load_raw(data_dir).train_labels
    for val_size, seed in ((10_000, 0), (10_000, 1), (777, 3), (10, 5), (59_990, 2)):
        train, val = split_indices(labels, val_size, seed)
        expected = train_test_split(np.arange(len(labels)), test_size=val_size, stratify=labels, random_state=seed)
        assert np.array_equal(train, np.sort(expected[0])) and np.array_equal(val, np.sort(expected[1]))
    assert mnist.y_val.shape == (10_000,)


def test_data_and_robustness_in_a_serve_install(data_dir, tmp_path):
    data = serve_install("data", "--data-dir", str(data_dir))
    assert data.returncode == 0, data.stderr
    assert data.stdout.startswith(f"MNIST verified (SHA-256) at {data_dir}: 50,000 train / 10,000 val")
    # No MNIST here, and downloads allowed: the missing extra is said before any is looked for.
    empty = tmp_path / "empty"
    result = serve_install("robustness", "--data-dir", str(empty), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: digitlab robustness needs scikit-image: pip install -e "), result.stderr
    assert "MNIST" not in result.stderr and not empty.exists() and not (tmp_path / "out").exists()
    # train loads MNIST while TensorFlow imports: from disk only, so here too nothing is fetched first.
    trained = serve_install("train", "--model", "fast", "--data-dir", str(empty), "--out", str(tmp_path / "run"))
    assert trained.returncode == 2
    assert trained.stderr.startswith("error: digitlab train needs "), trained.stderr
    assert "MNIST" not in trained.stderr and not empty.exists() and not (tmp_path / "run").exists()


@contextlib.contextmanager
def terminal():
    """Rich's console as on a terminal, written to a buffer: what the user would see."""
    console = rich.get_console()
    kept = dict(console.__dict__)
    buffer = io.StringIO()
    rich.reconfigure(file=buffer, force_terminal=True, width=200)
    try:
        yield buffer
    finally:
        console.__dict__ = kept  # as rich.reconfigure itself swaps a console's settings


@pytest.fixture(scope="module")
def exported(mnist, tmp_path_factory):
    """A one-epoch MLP run, trained and exported as a user does, with what each step showed."""
    from digitlab.experiments.pipeline import train
    from digitlab.training.config import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "mlp"
    with terminal() as trained:
        train(TrainConfig(model="mlp", epochs=1, subset=1000), data=mnist, out=out, verbose=0)
    with terminal() as exporting:
        assert main(["export", str(out)]) == 0
    return out, trained.getvalue(), exporting.getvalue()


def test_evaluation_and_export_say_what_they_wait_for(exported):
    run, trained, exporting = exported
    assert f"evaluating {run.name}: calibration, test split, robustness suite, report" in trained
    assert f"exporting {run} to onnx and checking it against Keras on validation digits" in exporting
    assert (run / "model.onnx").is_file()


def test_a_run_folder_is_read_through_its_onnx_export_without_tensorflow(exported, mnist, tmp_path):
    from digitlab.io.native import OnnxModel
    from digitlab.read.predict import predict_image

    run, _, _ = exported
    image = tmp_path / "seven.png"
    Image.fromarray((mnist.x_test[0].squeeze() * 255).astype(np.uint8)).resize((112, 112)).save(image)
    result = serve_install("predict", str(image), "--model", str(run), "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    expected = predict_image(OnnxModel(run / "model.onnx"), image)
    assert answer["digit"] == expected["digit"] and answer["probabilities"] == expected["probabilities"]
    # Without an export: the command that makes one, and the install that reads model.keras itself.
    bare = tmp_path / "bare"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("model.onnx"))
    result = serve_install("predict", str(image), "--model", str(bare), cwd=ROOT)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"run `digitlab export {bare}` where digitlab's [train] extra is installed" in result.stderr
    assert result.stderr.endswith("or install it here: pip install -e '.[train]'\n"), result.stderr


def test_show_names_a_numbers_strip_for_what_it_is(mnist, tmp_path):
    gap = np.zeros((28, 8), np.float32)
    row = np.pad(np.concatenate([mnist.x_test[1].squeeze(), gap, mnist.x_test[2].squeeze()], axis=1), 20)
    image = tmp_path / "number.png"
    Image.fromarray(((1 - row) * 255).astype(np.uint8)).resize((row.shape[1] * 4, row.shape[0] * 4)).save(image)
    seen = tmp_path / "seen"
    assert main(["predict", str(image), "--number", "--show", str(seen)]) == 0
    assert sorted(p.name for p in seen.iterdir()) == ["number.box.png", "number.digits.png"]
    with Image.open(seen / "number.digits.png") as strip:
        assert strip.height == 28 and strip.width % 28 == 0 and strip.width >= 56  # 28x28 digits side by side
    assert main(["predict", str(image), "--show", str(seen / "one")]) == 0
    assert (seen / "one" / "number.28x28.png").is_file()
