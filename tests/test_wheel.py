"""The wheel as a user gets it: built, installed with `[serve]` into a fresh venv by a real pip
(dependencies from the registry), it reads MNIST digits and serves them on ONNX Runtime alone,
with no TensorFlow, Keras or Optuna installed, and the training commands name the extra they need.

Offline, where pip cannot reach the registry, the module is skipped; under CI it fails instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

pytestmark = pytest.mark.network

# Read now, at collection: the autouse fixture points XDG_CACHE_HOME at an empty folder, and pip's
# cache is what keeps reinstalling onnxruntime, numpy and OpenCV on every run quick.
PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pip"
)
PIP = [sys.executable, "-m", "pip"]  # this interpreter's pip builds the wheel
HEAVY = ("tensorflow", "tensorflow_cpu", "keras", "optuna", "psycopg", "sklearn", "matplotlib", "torch")


def run(command: list[str], env: dict | None = None, cwd: Path | None = None, timeout: float = 600):
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def clean_env(venv: Path) -> dict[str, str]:
    """The environment of a shell with `venv` activated: nothing points back at this checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PIP_CACHE_DIR"] = PIP_CACHE
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def registry_or_skip(work: Path) -> None:
    """Building needs setuptools from the registry (build isolation); fetching it is the probe."""
    probe = run(
        [*PIP, "download", "--no-deps", "--quiet", "--dest", str(work / "probe"), "setuptools>=77"],
        env={**os.environ, "PIP_CACHE_DIR": PIP_CACHE},
        timeout=180,
    )
    if probe.returncode != 0:
        reason = f"pip cannot reach the package registry: {probe.stderr.strip().splitlines()[-1:]}"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must have the registry)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    registry_or_skip(work)
    # From a copy: setuptools leaves build/ and an .egg-info beside the sources it builds.
    tree = work / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, tree / name)
    dist = work / "dist"
    built = run(
        [*PIP, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist), str(tree)],
        env={**os.environ, "PIP_CACHE_DIR": PIP_CACHE},
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = dist.glob("digitlab-*.whl")
    return path


@pytest.fixture(scope="module")
def serve_venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding `pip install 'digitlab[serve]'` and what pip resolved for it."""
    venv = tmp_path_factory.mktemp("venv") / "serve"
    created = run([sys.executable, "-m", "venv", str(venv)])
    assert created.returncode == 0, created.stderr
    installed = run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[serve]"],
        env=clean_env(venv),
        cwd=venv,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def digits(mnist, tmp_path_factory) -> list[tuple[Path, int]]:
    """The first test image of each digit 0-9, as the PNG files a user would have."""
    folder = tmp_path_factory.mktemp("digits")
    found = []
    for digit in range(10):
        index = int(np.flatnonzero(mnist.y_test == digit)[0])
        path = folder / f"test{index}-{digit}.png"
        Image.fromarray((mnist.x_test[index, :, :, 0] * 255).round().astype(np.uint8)).save(path)
        found.append((path, digit))
    return found


def test_wheel_carries_the_page_the_model_and_the_extras(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in (
        "serve/web/index.html",
        "serve/web/app.js",
        "serve/web/style.css",
        "serve/web/favicon.svg",
        "assets/default.onnx",
        "assets/frontier.csv",
    ):
        assert f"digitlab/{asset}" in names
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    lines = zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
    extras = {line.split(": ", 1)[1] for line in lines if line.startswith("Provides-Extra: ")}
    assert {"serve", "train", "tune", "all", "test"} <= extras
    base = [line for line in lines if line.startswith("Requires-Dist: ") and "extra ==" not in line]
    assert base, "the base install must bring what reading a digit needs"
    assert not [line for line in base if re.search(r"tensorflow|keras|optuna|psycopg|scikit-learn", line)]


def test_serve_install_has_no_tensorflow_keras_or_optuna(serve_venv):
    env = clean_env(serve_venv)
    python = str(serve_venv / "bin" / "python")
    tf = run([python, "-c", "import tensorflow"], env=env)
    assert tf.returncode != 0 and "No module named 'tensorflow'" in tf.stderr
    (site,) = serve_venv.glob("lib/python*/site-packages")
    present = sorted(p.name for p in site.iterdir() if p.name.lower().split("-")[0] in HEAVY)
    assert not present, f"a [serve] install brought {present}"
    where = run([python, "-c", "import digitlab, onnxruntime; print(digitlab.__file__)"], env=env, cwd=serve_venv)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(site)  # the wheel's copy, not this checkout's


def test_predict_reads_real_digits_with_the_shipped_model(serve_venv, digits):
    result = run(
        [str(serve_venv / "bin" / "digitlab"), "predict", "--json", *(str(p) for p, _ in digits)],
        env=clean_env(serve_venv),
        cwd=serve_venv,
    )
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["digit"] for a in answers] == [d for _, d in digits]
    assert min(a["confidence"] for a in answers) > 0.5


def test_serve_answers_health_predict_and_the_page(serve_venv, digits):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [str(serve_venv / "bin" / "digitlab"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=clean_env(serve_venv),
        cwd=serve_venv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:  # ready once the model is loaded and warmed; liveness alone comes sooner
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "digitlab serve was not ready within 60 s"
            time.sleep(0.2)
        health = httpx.get(url + "/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        path, digit = digits[7]
        answer = httpx.post(
            url + "/v1/predict", files={"file": (path.name, path.read_bytes(), "image/png")}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["digit"] == digit
        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200 and "<canvas" in page.text
        assert httpx.get(url + "/static/app.js", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize(
    ("command", "extra"),
    [(["train", "--model", "fast", "--subset", "100"], "train"), (["tune", "mlp", "--trials", "1"], "tune")],
)
def test_commands_needing_more_name_the_extra_in_one_line(serve_venv, tmp_path, command, extra):
    result = run([str(serve_venv / "bin" / "digitlab"), *command], env=clean_env(serve_venv), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert re.fullmatch(
        rf"error: digitlab {command[0]} needs [\w -]+: pip install 'digitlab\[{extra}\] @ file://\S+\.whl'\n",
        result.stderr,
    ), result.stderr
