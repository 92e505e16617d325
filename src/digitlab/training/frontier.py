"""Accuracy per CPU-minute: the measured frontier (assets/frontier.csv) and `train --budget`.

benchmarks/bench_frontier.py trains every recipe below over several seeds and writes the table;
this module reads it and picks, for a time budget, the recipe with the best validation
accuracy whose slowest measured run, scaled to this machine's speed, fits the budget.
"""

from __future__ import annotations

import csv
import json
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import get_args, get_type_hints

from digitlab.errors import DigitlabError

FRONTIER = Path(__file__).parents[1] / "assets" / "frontier.csv"  # docs/frontier.csv links here

# Named recipes, one JSON file of TrainConfig settings each (over the model's own recipe,
# config.RECIPES), which `digitlab train --params NAME` trains; recipes/README.md says why each.
RECIPE_DIR = Path(__file__).parents[1] / "recipes"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.json"))


def recipe(name: str) -> dict:
    """The settings of a named recipe; `name` may spell its '-' as spaces, as frontier.csv does."""
    path = RECIPE_DIR / f"{name.replace(' ', '-')}.json"
    if path.stem not in recipe_names():
        raise DigitlabError(f"no recipe {name!r}; the recipes: {', '.join(recipe_names())}")
    return json.loads(path.read_text())


# The recipes `digitlab train --budget` may choose, by their names in frontier.csv (the file's
# name with spaces for '-'). bench_frontier.py measures these and the levers it alone can train
# (all 60k images, distillation, snapshots, ensembles), which `--budget` does not offer.
BUDGET_RECIPES = (
    "mlp",  # the textbook reference point
    "fast",
    "fast w32 e5",  # wider and longer: the same one-cycle schedule stretched over 5 passes
    "cnn",  # `digitlab train`'s default
    "allconv e4",  # allconv's augmentation and warp, its cosine annealed over 4 epochs instead of 23
    "fast w32 e5 distilled",  # half of each target the shipped model's softened guess (experiments/distil.py)
    "allconv e8",  # allconv e4's recipe annealed over 8 epochs: most of what 23 reach, in a third of the time
    "allconv",  # its own recipe, 23 epochs
)
CANDIDATES: dict[str, dict] = {name: recipe(name) for name in BUDGET_RECIPES}

# A run goes over a scaled time by this much; the budget also stops training on time.
SAFETY = 1.15
# What a run costs besides training (start-up, loading MNIST, calibration, the report with its
# robustness sample): seconds, on a machine whose calibrate() speed is the second figure. Scaled
# like training times; docs/BENCHMARKS.md has the measurement.
EVALUATION = (15.0, 25.0)


@dataclass
class Row:
    recipe: str
    seeds: int
    test_mean: float
    test_std: float
    val_mean: float | None  # none where training saw the validation split (all 60k images)
    train_s_median: float
    train_s_min: float
    train_s_max: float
    machine: str
    speed_ms: float  # calibrate() on the machine that measured the row, in the same run

    @property
    def cpu(self) -> str:
        return short(self.machine)


def short(machine: str) -> str:
    """A machine's description in short, what rows are grouped by: 'AMD EPYC, 2 cores at 2.45 GHz, AVX2'."""
    return ", ".join(machine.split(", ")[:3])


def read(path: Path = FRONTIER) -> list[Row]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    kinds = {}  # each column's type: `float | None` -> float
    for name, hint in get_type_hints(Row).items():
        options = [a for a in get_args(hint) if a is not type(None)] or [hint]
        kinds[name] = options[0]
    return [Row(**{k: None if raw.get(k, "") == "" else kinds[k](raw[k]) for k in kinds}) for raw in rows]


def write(rows: list[Row], path: Path = FRONTIER) -> None:
    from digitlab.files import write_atomic

    def save(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, [f.name for f in fields(Row)])
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if v is None else v for k, v in vars(row).items()})

    write_atomic(path.resolve(), save)  # resolved: docs/frontier.csv is a link to the asset


def pareto(rows: list[Row]) -> list[Row]:
    """The rows no other row beats on both test accuracy and median time, fastest first."""
    best, out = -1.0, []
    for row in sorted(rows, key=lambda r: (r.train_s_median, -r.test_mean)):
        if row.test_mean > best:
            out.append(row)
            best = row.test_mean
    return out


def describe(rows: list[Row] | None = None) -> list[str]:
    """`digitlab models`' tables of the measured recipes, one per machine that measured them (times
    compare only within one): each recipe's place there, fastest first."""
    rows = read() if rows is None else rows
    if not rows:
        return []
    width = max(len(r.recipe) for r in rows)
    lines = []
    for cpu in dict.fromkeys(r.cpu for r in rows):
        group = sorted((r for r in rows if r.cpu == cpu), key=lambda r: r.train_s_median)
        front = {r.recipe for r in pareto(group)}
        lines += [
            f"\nMeasured recipes, fastest first, training time on {cpu} ({FRONTIER.name}):",
            "  * on this machine's frontier (nothing else is both faster and more accurate); --budget chooses among B",
        ]
        for r in group:
            marks = ("*" if r.recipe in front else " ") + ("B" if r.recipe in CANDIDATES else " ")
            val = "-     " if r.val_mean is None else f"{r.val_mean:.2%}"
            lines.append(
                f"{marks} {r.recipe:<{width}}  test {r.test_mean:.2%} ± {r.test_std:.2%} ({r.seeds} seeds)  "
                f"val {val}  training {r.train_s_median:7.1f} s"
            )
    return lines


UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600}


def parse_budget(text: str) -> float:
    """'30s', '5m', '2 min' or '1.5h' -> seconds. A bare number is refused: 30 seconds or minutes?"""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise DigitlabError(f"--budget {text}: give a time with its unit, e.g. 30s, 5m or 1h (s, m or min, h)")
    return float(match.group(1)) * UNITS[match.group(2)]


def calibrate(repeats: int = 15) -> float:
    """This machine's speed at what training does most: milliseconds for one training step of a
    3x3 conv layer (forward and both gradients) on 64 MNIST-sized maps of 32 channels. The
    fastest of `repeats` after a warm-up: the least disturbed by whatever else runs. ~1 s."""
    from digitlab.nn.backend import tf

    x = tf.random.stateless_uniform((64, 28, 28, 32), seed=(0, 1))
    kernel = tf.Variable(tf.random.stateless_normal((3, 3, 32, 32), seed=(0, 2)) * 0.1)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "VALID"))
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, kernel])

    step()  # traced and warmed up, not timed
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for grad in step():
            grad.numpy()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


@dataclass
class Choice:
    row: Row
    expected_s: float  # the row's slowest run, scaled to this machine


def evaluation_s(speed_ms: float) -> float:
    """What a run costs here besides its training, by this machine's speed."""
    return EVALUATION[0] * speed_ms / EVALUATION[1]


def choose(budget_s: float, speed_ms: float, rows: list[Row] | None = None) -> Choice:
    """The candidate with the best validation accuracy whose training and evaluation fit `budget_s` here."""
    rows = read() if rows is None else rows

    def training_s(row: Row) -> float:  # its slowest measured run, at this machine's speed
        return row.train_s_max * speed_ms / row.speed_ms

    def needs_s(row: Row) -> float:  # with room to spare, and the rest of the run
        return training_s(row) * SAFETY + evaluation_s(speed_ms)

    candidates = [r for r in rows if r.recipe in CANDIDATES and r.val_mean is not None]
    fits = [Choice(r, training_s(r)) for r in candidates if needs_s(r) <= budget_s]
    if not fits:
        fastest = min((r for r in rows if r.recipe in CANDIDATES), key=lambda r: r.train_s_max, default=None)
        if fastest is None:
            raise DigitlabError(f"--budget: no measured frontier at {FRONTIER}; run benchmarks/bench_frontier.py")
        raise DigitlabError(
            f"--budget: no measured recipe fits {budget_s:g} s here; the fastest ({fastest.recipe}) needs about "
            f"{needs_s(fastest):.0f} s with its evaluation: give at least that"
        )
    return max(fits, key=lambda c: (c.row.val_mean, -c.expected_s))
