"""Comparison and ensembles, on small real subsets."""

from __future__ import annotations

import csv
import re
import shlex

import numpy as np
import pytest

from digitlab.errors import DigitlabError
from digitlab.experiments.compare import compare
from digitlab.experiments.ensemble import ensemble
from digitlab.files import read_json
from digitlab.io.export import export
from digitlab.io.native import KerasModel, OnnxModel
from digitlab.training.runs import Run

QUICK = {"epochs": 1, "subset": 2000}


@pytest.fixture(scope="module")
def board(mnist, tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("compare")
    rows = compare(["logreg", "mlp"], seeds=2, out=out, overrides=QUICK, with_ensemble=True, data_dir=data_dir)
    return out, rows


def runs_of(rows: list[dict], model: str) -> list:
    return next(r for r in rows if r["model"] == model)["runs"]


def test_leaderboard_files_agree_with_the_runs(board):
    out, rows = board
    assert [r["model"] for r in rows if not r["model"].startswith("ensemble")] == ["mlp", "logreg"]
    with open(out / "leaderboard.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 and {t["model"] for t in table} == {"mlp", "logreg", "ensemble of 2 mlp"}
    mlp = next(r for r in rows if r["model"] == "mlp")
    accuracies = [read_json(run / "metrics.json")["test_accuracy"] for run in runs_of(rows, "mlp")]
    assert mlp["test_mean"] == pytest.approx(np.mean(accuracies))
    assert mlp["test_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert accuracies[0] != accuracies[1]  # different seeds, different runs
    assert "| 1 |" in (out / "leaderboard.md").read_text()
    assert (out / "leaderboard.png").stat().st_size > 5000
    # Test errors are a count: the mean over seeds, rounded to whole images.
    board_md = (out / "leaderboard.md").read_text().splitlines()
    errors = [row.split(" | ")[3] for row in board_md if " | `mlp` | " in row]
    assert errors == [f"{round(mlp['errors']):,}"] and "." not in errors[0]


def test_compare_ends_with_a_table_and_the_leaderboards_path(board, data_dir, capsys):
    """The same comparison from the command line: every run reused, then a table, not Markdown."""
    from digitlab.cli import main

    out, rows = board
    capsys.readouterr()
    args = ["compare", "logreg", "mlp", "--seeds", "2", "--epochs", "1", "--subset", "2000", "--ensemble"]
    assert main([*args, "--out", str(out), "--data-dir", str(data_dir)]) == 0
    shown = capsys.readouterr().out
    assert "Leaderboard" in shown and "ensemble of 2 mlp" in shown and "seeds 0-1" in " ".join(shown.split())
    assert "![leaderboard]" not in shown and "|---" not in shown and "`mlp`" not in shown
    mlp = next(r for r in rows if r["model"] == "mlp")
    assert re.search(rf"│ +{round(mlp['errors']):,} │", shown), shown  # a count, as in the files
    assert shown.rstrip().endswith(
        f"leaderboard: {out / 'leaderboard.html'} (beside it: leaderboard.md, .csv and .png)"
    )


def test_compare_reuses_finished_runs_of_the_same_settings_only(board, data_dir):
    out, rows = board
    first = runs_of(rows, "logreg")[0]
    stamp = (first / "model.keras").stat().st_mtime
    again = compare(["logreg"], seeds=1, out=out, overrides=QUICK, data_dir=data_dir)
    assert runs_of(again, "logreg") == [first] and (first / "model.keras").stat().st_mtime == stamp
    # Other settings: a new run, never the old one reported under the new settings.
    changed = compare(["logreg"], seeds=1, out=out, overrides={**QUICK, "epochs": 2}, data_dir=data_dir)
    (run,) = runs_of(changed, "logreg")
    assert run != first and Run.open(run).record.config.epochs == 2 and Run.open(run).record.epochs_run == 2
    assert (first / "model.keras").stat().st_mtime == stamp  # the earlier run is kept, untouched
    assert "epochs=2" in (out / "leaderboard.md").read_text()
    assert "trained with seed 0 on the same" in (out / "leaderboard.md").read_text()  # one seed: not "seeds 0-0"
    assert "2,000 training / 400 validation images" in (out / "leaderboard.md").read_text()


def test_ensemble_averages_its_members_and_exports_as_one_model(board, mnist):
    _, rows = board
    members = [KerasModel(run / "model.keras") for run in runs_of(rows, "mlp")]
    (target,) = runs_of(rows, "ensemble of 2 mlp")
    x = mnist.x_test[:500]
    expected = np.mean([m.probabilities(x) for m in members], axis=0)
    np.testing.assert_allclose(KerasModel(target / "model.keras").probabilities(x), expected, atol=1e-6)
    onnx = OnnxModel(export(target, "onnx"))
    np.testing.assert_allclose(onnx.probabilities(x), expected, atol=1e-5)
    record = read_json(target / "run.json")
    assert record["status"] == "completed"
    # The members' own commands first, each into its folder, then the ensemble of those folders.
    *trains, last = record["command"].split(" && ")
    assert [shlex.split(t)[:2] for t in trains] == [["digitlab", "train"]] * 2
    folders = [shlex.split(t)[-1] for t in trains]
    assert folders == [str(r) for r in runs_of(rows, "mlp")]
    assert shlex.split(last) == ["digitlab", "ensemble", *folders, "--out", str(target)]
    report = (target / "report.md").read_text()
    assert "digitlab ensemble" in report and "trained on 2,000 images (--subset 2000)" in report
    assert " &&\n".join([*trains, last]) in report  # a command a line, joined as one for the shell


def test_ensemble_refuses_mixed_splits(board, tmp_path):
    _, rows = board
    import shutil

    first, second = runs_of(rows, "mlp")
    other = tmp_path / "other"
    shutil.copytree(second, other)
    run = Run.open(other)
    run.record.data.split_seed = 7
    run.save()
    with pytest.raises(DigitlabError, match="different data"):
        ensemble([first, other], tmp_path / "ens")
    with pytest.raises(DigitlabError, match="at least two runs"):
        ensemble([other], tmp_path / "ens")
