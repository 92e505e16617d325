"""optuna-dashboard (installed by `digitlab[tune]`) on a real digitlab study, as docs/TUNING.md
tells users to start it: `optuna-dashboard sqlite:///runs/tune/optuna.db`. Its JSON API, the one
its web page reads, must list the study and every trial `digitlab tune` ran, with their values."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import optuna
import pytest
from conftest import digitlab

TRIALS = 3  # the median pruner starts after 3 trials: all three complete, each with a value


@pytest.fixture(scope="module")
def study(data_dir, tmp_path_factory) -> tuple[str, str]:
    """(storage URL, study name) of a real `digitlab tune` study: three tiny trials, ~20 s."""
    out = tmp_path_factory.mktemp("tune")
    args = ["tune", "mlp", "--trials", str(TRIALS), "--epochs", "1", "--subset", "1000", "--out", str(out)]
    result = digitlab(*args, env={"DIGITLAB_DATA_DIR": str(data_dir)}, cwd=out)
    assert result.returncode == 0, result.stderr[-3000:]
    return f"sqlite:///{out / 'optuna.db'}", "mlp"


@pytest.fixture
def dashboard(study, tmp_path):
    """`optuna-dashboard STORAGE` as a real server on a free port; yields its base URL."""
    storage, _ = study
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = Path(sys.executable).parent / "optuna-dashboard"  # the console script [tune] installs
    log = (tmp_path / "dashboard.log").open("w")
    server = subprocess.Popen(
        [str(command), storage, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/api/meta", timeout=2)
                break
            except httpx.TransportError:
                log.flush()
                output = (tmp_path / "dashboard.log").read_text()[-3000:]
                assert server.poll() is None, f"optuna-dashboard exited: {output}"
                assert time.monotonic() < deadline, f"optuna-dashboard did not answer within 60 s: {output}"
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def test_dashboard_lists_the_study_and_every_trial(study, dashboard):
    storage, name = study
    expected = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    assert len(expected) == TRIALS

    studies = httpx.get(dashboard + "/api/studies", timeout=30)
    assert studies.status_code == 200, studies.text
    (summary,) = [s for s in studies.json()["study_summaries"] if s["study_name"] == name]
    assert summary["directions"] == ["maximize"]  # digitlab maximises validation accuracy

    detail = httpx.get(f"{dashboard}/api/studies/{summary['study_id']}", timeout=30)
    assert detail.status_code == 200, detail.text
    trials = sorted(detail.json()["trials"], key=lambda t: t["number"])
    assert [t["number"] for t in trials] == [t.number for t in expected] == list(range(TRIALS))
    for shown, trial in zip(trials, expected, strict=True):
        assert shown["state"] == "Complete"
        assert shown["values"] == pytest.approx(trial.values)
        assert {p["name"] for p in shown["params"]} == set(trial.params) >= {"lr", "batch_size", "width"}
        run_dir = {a["key"]: a["value"] for a in shown["user_attrs"]}["run_dir"]
        assert Path(run_dir).name == f"trial-{trial.number:04d}"  # the trial's own run folder
        assert (Path(run_dir) / "run.json").is_file()

    page = httpx.get(dashboard + "/dashboard", timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()
