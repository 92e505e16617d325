"""Comparison and ensembles, on small real subsets."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from digitlab.compare import compare
from digitlab.ensemble import ensemble
from digitlab.errors import DigitlabError
from digitlab.export import export
from digitlab.files import read_json
from digitlab.predict import KerasModel, OnnxModel

QUICK = {"epochs": 1, "subset": 2000}


@pytest.fixture(scope="module")
def board(mnist, tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("compare")
    rows = compare(["logreg", "mlp"], seeds=2, out=out, overrides=QUICK, with_ensemble=True, data_dir=data_dir)
    return out, rows


def test_leaderboard_files_agree_with_the_runs(board):
    out, rows = board
    assert [r["model"] for r in rows if not r["model"].startswith("ensemble")] == ["mlp", "logreg"]
    with open(out / "leaderboard.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 and {t["model"] for t in table} == {"mlp", "logreg", "ensemble of 2 mlp"}
    mlp = next(r for r in rows if r["model"] == "mlp")
    accuracies = [read_json(out / "runs" / f"mlp-seed{s}" / "metrics.json")["test_accuracy"] for s in (0, 1)]
    assert mlp["test_mean"] == pytest.approx(np.mean(accuracies))
    assert mlp["test_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert accuracies[0] != accuracies[1]  # different seeds, different runs
    assert "| 1 |" in (out / "leaderboard.md").read_text()
    assert (out / "leaderboard.png").stat().st_size > 5000


def test_compare_reuses_finished_runs(board, data_dir):
    out, _ = board
    stamp = (out / "runs" / "logreg-seed0" / "model.keras").stat().st_mtime
    compare(["logreg"], seeds=2, out=out, overrides=QUICK, data_dir=data_dir)
    assert (out / "runs" / "logreg-seed0" / "model.keras").stat().st_mtime == stamp


def test_ensemble_averages_its_members_and_exports_as_one_model(board, mnist):
    out, _ = board
    members = [KerasModel(out / "runs" / f"mlp-seed{s}" / "model.keras") for s in (0, 1)]
    target = out / "runs" / "ensemble-mlp-x2"
    x = mnist.x_test[:500]
    expected = np.mean([m.probabilities(x) for m in members], axis=0)
    np.testing.assert_allclose(KerasModel(target / "model.keras").probabilities(x), expected, atol=1e-6)
    onnx = OnnxModel(export(target, "onnx"))
    np.testing.assert_allclose(onnx.probabilities(x), expected, atol=1e-5)
    record = read_json(target / "run.json")
    assert record["status"] == "completed" and record["command"].startswith("digitlab ensemble")
    assert "digitlab ensemble" in (target / "report.md").read_text()


def test_ensemble_refuses_mixed_splits(board, tmp_path):
    out, _ = board
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(out / "runs" / "mlp-seed1", other)
    record = json.loads((other / "run.json").read_text())
    record["config"]["split_seed"] = 7
    (other / "run.json").write_text(json.dumps(record))
    with pytest.raises(DigitlabError, match="different splits"):
        ensemble([out / "runs" / "mlp-seed0", other], tmp_path / "ens")
    with pytest.raises(DigitlabError, match="at least two runs"):
        ensemble([other], tmp_path / "ens")
