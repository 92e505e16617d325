"""The measured frontier and `digitlab train --budget`: the table, the choice, stopping on time."""

from __future__ import annotations

import json
import math

import pytest
from conftest import ROOT, digitlab

from digitlab.errors import DigitlabError
from digitlab.training import frontier


def row(
    recipe: str, test: float, val: float | None, seconds: float, speed_ms: float = 40.0, machine: str = "machine"
) -> frontier.Row:
    return frontier.Row(recipe, 3, test, 0.001, val, seconds, seconds * 0.9, seconds * 1.1, machine, speed_ms)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1.5h", 5400), ("2 min", 120)])
def test_budgets_read_as_seconds(text, seconds):
    assert frontier.parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["soon", "0s", "-5m", "5 days", "", "90"])
def test_a_bad_budget_says_what_it_expects(text):
    with pytest.raises(DigitlabError, match=r"give a time with its unit, e\.g\. 30s, 5m or 1h"):
        frontier.parse_budget(text)


def test_the_shipped_frontier_covers_every_recipe_budget_may_choose():
    rows = {r.recipe: r for r in frontier.read()}
    assert set(frontier.CANDIDATES) <= set(rows), "run benchmarks/bench_frontier.py"
    assert {"keras-io convnet", "mlp"} <= set(rows)  # the reference points, measured in the same run
    for r in rows.values():
        assert r.seeds >= 3 and r.train_s_min <= r.train_s_median <= r.train_s_max, r
        assert 0.9 < r.test_mean < 1 and r.speed_ms > 0 and r.machine, r
    # docs/frontier.csv is the shipped table itself, not a copy that could drift.
    assert (ROOT / "docs" / "frontier.csv").resolve() == frontier.FRONTIER.resolve()


def test_budget_recipes_are_the_recipe_files():
    # Read from src/digitlab/recipes/, not written twice; the others there are not measured here.
    files = {p.stem: json.loads(p.read_text()) for p in frontier.RECIPE_DIR.glob("*.json")}
    chosen_from = {name.replace(" ", "-"): settings for name, settings in frontier.CANDIDATES.items()}
    assert chosen_from == {name: files[name] for name in chosen_from}
    assert set(files) - set(chosen_from) == {"allconv-clutter", "allconv-real"}


def test_the_table_round_trips(tmp_path):
    rows = [row("fast", 0.991, 0.992, 6.0), row("fast 60k", 0.992, None, 7.0)]
    path = tmp_path / "frontier.csv"
    frontier.write(rows, path)
    assert frontier.read(path) == rows
    read = frontier.read(path)[1]  # None stays None; the numbers come back as numbers, not text
    assert read.val_mean is None and type(read.seeds) is int and type(read.test_mean) is float


def test_the_frontier_keeps_what_nothing_beats():
    rows = [row("fast", 0.991, 0.99, 6), row("mlp", 0.977, 0.98, 20), row("cnn", 0.992, 0.99, 200)]
    rows.append(row("allconv e4", 0.995, 0.995, 300))
    assert [r.recipe for r in frontier.pareto(rows)] == ["fast", "cnn", "allconv e4"]


def test_each_machine_has_its_own_table_and_frontier():
    rows = [row("fast", 0.991, 0.99, 10, machine="A"), row("cnn", 0.992, 0.99, 400, machine="A")]
    rows += [row("fast", 0.990, 0.99, 5, machine="B"), row("ridge", 0.989, 0.99, 20, machine="B")]
    lines = frontier.describe(rows)
    starts = [i for i, line in enumerate(lines) if "Measured recipes" in line]
    assert [lines[i].split("training time on ")[1].split(" (")[0] for i in starts] == ["A", "B"]
    b = lines[starts[1] + 2 :]
    # On B, ridge is slower and less accurate than B's own fast: off the frontier, though it is
    # faster than A's cnn, whose time was measured elsewhere.
    assert [line[:3] for line in b] == ["*B ", "   "] and "ridge" in b[1]


def test_budget_chooses_on_validation_what_fits_here():
    rows = [
        row("fast", 0.9910, 0.9915, 6),
        row("fast w32 e5", 0.9930, 0.9935, 30),
        row("cnn", 0.9950, 0.9920, 200),  # better on test, worse on validation: never chosen over e5 on test
        row("allconv e4", 0.9950, 0.9950, 300),
        row("ensemble fast x3", 0.9960, 0.9960, 20),  # not a `digitlab train` recipe
        row("fast 60k", 0.9970, None, 7),  # trained on validation: nothing honest to choose it by
    ]
    evaluation = frontier.evaluation_s(40.0)  # what the run costs besides training counts too
    assert frontier.choose(38 + evaluation, 40.0, rows).row.recipe == "fast w32 e5"  # 33 s at most, x 1.15
    assert frontier.choose(37 + evaluation, 40.0, rows).row.recipe == "fast"
    assert frontier.choose(380 + evaluation, 40.0, rows).row.recipe == "allconv e4"
    # A machine twice as slow: the 300 s recipe takes ~660 s at its slowest, and is not chosen.
    slow = frontier.choose(380 + evaluation, 80.0, rows)
    assert slow.row.recipe == "fast w32 e5" and math.isclose(slow.expected_s, 66.0)
    need = round(6.6 * 1.15 + evaluation)
    with pytest.raises(
        DigitlabError, match=rf"no measured recipe fits 5 s here; the fastest \(fast\) needs about {need} s"
    ):
        frontier.choose(5, 40.0, rows)


def test_train_stops_when_its_budget_runs_out(mnist, tmp_path):
    from digitlab.experiments.pipeline import train
    from digitlab.training.config import TrainConfig
    from digitlab.training.record import Budget
    from digitlab.training.runs import Run

    # 50 epochs of the cnn on 5,000 images take a minute or more here; the budget is 4 s.
    config = TrainConfig(model="cnn", epochs=50, patience=50, subset=5000)
    budget = Budget(seconds=4, recipe="cnn", expected_s=4)
    folder = train(config, data=mnist, out=tmp_path / "run", evaluate_after=False, verbose=0, budget=budget)
    record = Run.open(folder).record
    assert record.budget.stopped and record.epochs_run < 50
    # The last validation pass and saving may overrun, more on a loaded machine; 50 epochs take minutes.
    assert record.timings["train_s"] < 4 + 20, record.timings
    assert (folder / "model.keras").is_file() and record.best is not None


def test_budget_refuses_settings_it_would_override(data_dir):
    result = digitlab("train", "--budget", "5m", "--epochs", "3", "--model", "cnn", "--data-dir", str(data_dir))
    assert result.returncode == 2, result.stderr
    refused = "error: --budget chooses the recipe itself; drop --model, --epochs (--seed may stay)"
    assert result.stderr.strip() == refused
    result = digitlab("train", "--budget", "soon")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "give a time with its unit, e.g. 30s" in result.stderr


def test_budget_says_what_it_chose_and_how_long_it_expects(data_dir):
    result = digitlab("train", "--budget", "30m", "--seed", "4", "--dry-run")
    assert result.returncode == 0, result.stderr
    said, settings = result.stdout.split("\n{", 1)
    config = json.loads("{" + settings)
    chosen = said.splitlines()[-1]
    assert chosen.startswith("budget 1800 s: training `") and "expected here: ~" in chosen, said
    recipe = chosen.split("`")[1]
    assert recipe in frontier.CANDIDATES and config["seed"] == 4
    assert config["model"] == frontier.CANDIDATES[recipe]["model"]
    result = digitlab("train", "--budget", "0.01s")
    assert result.returncode == 2 and "no measured recipe fits 0.01 s here" in result.stderr, result.stderr


def test_models_shows_each_recipe_on_its_machines_frontier():
    result = digitlab("models")
    assert result.returncode == 0, result.stderr
    tables = result.stdout.split("Measured recipes")[1:]
    rows = frontier.read()
    assert len(tables) == len({r.cpu for r in rows})  # one table per machine: times compare only there
    for table in tables:
        cpu = table.split("training time on ", 1)[1].split(" (", 1)[0]
        listed = [line for line in table.strip().splitlines()[2:] if line.strip()]
        mine = [r for r in rows if r.cpu == cpu]
        assert {line[3:].split("  ")[0] for line in listed} == {r.recipe for r in mine}
        front = {r.recipe for r in frontier.pareto(mine)}
        assert {line[3:].split("  ")[0] for line in listed if line.startswith("*")} == front
