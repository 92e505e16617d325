"""Accuracy per CPU-minute: every recipe over seeds, in one run, into docs/frontier.csv.

    python benchmarks/bench_frontier.py [--seeds 3] [--only RECIPE ...] [--subset N]

Each training runs in a child process of its own (its memory and TensorFlow state its own).
Training time is the fit's wall time with the data in memory, validation passes and tracing
included, after an untimed warm-up of TensorFlow on a throwaway model: what run.json's
`train_s` counts. The kept model is the epoch of lowest validation loss, as `digitlab train`
keeps; where training saw the validation split (all 60k images) it is the last epoch. Test
accuracy is read once per trained model, at the end. Ensembles average softmax outputs over
members of disjoint seeds, their time the members' total. The machine's speed
(frontier.calibrate) is measured at the start and at the end and written with every row, so
`digitlab train --budget` can scale the times to another machine.

Besides the `digitlab train` recipes (frontier.CANDIDATES) it measures levers only this script
trains: all 60,000 images with the recipe fixed, distillation from the shipped model, snapshot
ensembles over restarted one-cycle schedules, and the keras-io convnet as a reference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from common import DATA_DIR, ROOT, describe_machine, keras_io_convnet, mean_std, run_child

sys.path.insert(0, str(ROOT / "src"))
from digitlab.training import frontier

PLOT = ROOT / "docs" / "figures" / "frontier.png"


@dataclass
class Spec:
    config: dict = field(default_factory=dict)  # TrainConfig settings over the model's recipe
    all_data: bool = False  # train on train + validation (60k), keep the last epoch
    cycles: int = 1  # > 1: a snapshot ensemble, one member per restarted schedule
    keras_io: bool = False  # the reference convnet, trained as its tutorial does


SPECS: dict[str, Spec] = {name: Spec(config) for name, config in frontier.CANDIDATES.items()}
SPECS |= {
    "keras-io convnet": Spec(keras_io=True),
    "fast 60k": Spec(frontier.CANDIDATES["fast"], all_data=True),
    "fast distilled": Spec({**frontier.CANDIDATES["fast"], "distil": 0.5}),
    "snapshot fast x3": Spec(frontier.CANDIDATES["fast"], cycles=3),
    "fast w32 e5 distilled": Spec({**frontier.CANDIDATES["fast w32 e5"], "distil": 0.5}),
    "fast w32 e10 distilled": Spec({**frontier.CANDIDATES["fast w32 e5"], "epochs": 10, "patience": 10, "distil": 0.5}),
    "allconv e4 distilled": Spec({**frontier.CANDIDATES["allconv e4"], "distil": 0.5}),
    "fast bf16": Spec({**frontier.CANDIDATES["fast"], "precision": "mixed_bfloat16"}),  # where auto takes float32
}
# Closed-form heads (training/ridge.py): the output layer solved by least squares over random
# ReLU units, after 0 epochs (random features: PatchPCA and an untrained conv) or a few.
RIDGE = {"head": "ridge", "model": "fast"}
SPECS |= {
    "ridge fast e0 h4000": Spec({**RIDGE, "epochs": 0, "hidden": 4000}),
    "ridge fast e0 h8000": Spec({**RIDGE, "epochs": 0, "hidden": 8000}),
    "ridge fast e1 h6000": Spec({**RIDGE, "epochs": 1, "hidden": 6000}),
    "ridge fast e2 h6000": Spec({**RIDGE, "epochs": 2, "hidden": 6000}),
    "ridge fast w32 e2 h6000": Spec({**RIDGE, "epochs": 2, "hidden": 6000, "model_params": {"width": 32}}),
}
ENSEMBLES = {"ensemble fast x3": ("fast", 3)}  # name: (recipe, members); members of disjoint seeds


def train_keras_io(data, seed: int) -> tuple[float, list]:
    """The reference convnet trained as its tutorial trains it: 15 epochs at batch 128."""
    from digitlab.training.numerics import seed_everything

    seed_everything(seed)
    t0 = time.perf_counter()
    model = keras_io_convnet()
    validation = (data.x_val, data.y_val)
    model.fit(data.x_train, data.y_train, batch_size=128, epochs=15, verbose=0, validation_data=validation)
    return time.perf_counter() - t0, [model]


def child(name: str, seed: int, out: Path, subset: int | None) -> dict:
    from digitlab.data.mnist import load_mnist
    from digitlab.experiments import distil
    from digitlab.nn.backend import keras
    from digitlab.training import ridge
    from digitlab.training.config import TrainConfig
    from digitlab.training.loop import as_float32, compile_model, prepare, prepare_fit
    from digitlab.training.numerics import precision, seed_everything

    spec = SPECS[name]
    data = load_mnist(DATA_DIR).subset(subset)
    settings = dict(spec.config)
    config = TrainConfig.for_model(settings.pop("model", "cnn"), **settings, seed=seed)
    if spec.all_data:
        data = replace(
            data,
            x_train=np.concatenate([data.x_train, data.x_val]),
            y_train=np.concatenate([data.y_train, data.y_val]),
        )
    # Not timed: the teacher's reading of the training images (kept in the inputs cache after a
    # first run), like its own training, is not the student's.
    soft = distil.targets(data.x_train, data.y_train, config.distil) if config.distil else None
    with precision(config.precision):
        # Untimed warm-up on a throwaway model: TensorFlow's one-off start-up in this process.
        warm = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 3), keras.layers.Flatten()])
        warm.add(keras.layers.Dense(10, activation="softmax"))
        compile_model(warm, config, steps_per_epoch=8)
        warm.fit(data.x_train[:1024], data.y_train[:1024], batch_size=128, verbose=0)
        if spec.keras_io:
            train_s, members = train_keras_io(data, seed)
        else:
            seed_everything(seed)
            t0 = time.perf_counter()
            prepared = prepare(config, data, y_train=soft)
            snapshots, batches = [], prepared.train_batches
            validate = not spec.all_data and spec.cycles == 1
            for cycle in range(spec.cycles):
                if cycle:  # a warm restart: the same weights, a fresh one-cycle schedule
                    batches = prepare_fit(prepared.trainer, config, data.x_train, data.y_train)
                prepared.trainer.fit(
                    batches,
                    validation_data=prepared.val_batches if validate else None,
                    epochs=config.epochs,
                    shuffle=False,
                    callbacks=[best_val_loss(keras)] if validate else [],
                    verbose=0,
                )
                snapshots.append(prepared.model.get_weights())
            train_s = time.perf_counter() - t0
            members = []
            for weights in snapshots:
                prepared.model.set_weights(weights)
                members.append(as_float32(prepared.model, config.model, config.model_params))
            if config.head == "ridge":  # the solve is training: timed
                x, y = data.x_train, data.y_train
                members = [ridge.fit(m, x, y, data.x_val, data.y_val, config.hidden, seed)[0] for m in members]
                train_s = time.perf_counter() - t0
    probs = {
        split: np.mean([m.predict(x, batch_size=1000, verbose=0) for m in members], axis=0)
        for split, x in (("val", data.x_val), ("test", data.x_test))
    }
    np.savez(out, **probs)
    return {"train_s": train_s}


def best_val_loss(keras):
    """Keeps the weights of the lowest validation loss, as `digitlab train` does; never stops."""
    return keras.callbacks.EarlyStopping(monitor="val_loss", patience=10**6, restore_best_weights=True)


@dataclass
class Result:
    train_s: float
    val: np.ndarray  # probabilities
    test: np.ndarray


def measure(name: str, seed: int, subset: int | None, folder: Path) -> Result:
    out = folder / f"{name.replace(' ', '_')}-{seed}.npz"
    args = [__file__, "--child", name, "--seed", str(seed), "--out", str(out)]
    stdout, _ = run_child(args + (["--subset", str(subset)] if subset else []))
    probs = np.load(out)
    return Result(json.loads(stdout.strip().splitlines()[-1])["train_s"], probs["val"], probs["test"])


def row(name: str, results: list[Result], labels, machine: str, speed_ms: float, val_seen: bool) -> frontier.Row:
    test = [float((r.test.argmax(1) == labels.y_test).mean()) for r in results]
    val = [float((r.val.argmax(1) == labels.y_val).mean()) for r in results]
    times = [r.train_s for r in results]
    mean, std = mean_std(test)
    return frontier.Row(
        recipe=name,
        seeds=len(results),
        test_mean=round(mean, 5),
        test_std=round(std, 5),
        val_mean=None if val_seen else round(statistics.mean(val), 5),
        train_s_median=round(statistics.median(times), 2),
        train_s_min=round(min(times), 2),
        train_s_max=round(max(times), 2),
        machine=machine,
        speed_ms=round(speed_ms, 2),
    )


def plot(rows: list[frontier.Row], path: Path) -> None:
    """Test accuracy against median training time, log scale; a row far below the rest (the
    mlp) is drawn at the bottom edge as an arrow with its figure, so the others stay readable."""
    from digitlab.evaluation.plots import BLUE, GREY, figure, save, style

    fig = figure(7.5, 4.5)
    ax = fig.subplots()
    front = {r.recipe for r in frontier.pareto(rows)}
    low = min(100 * r.test_mean for r in rows if r.test_mean > 0.985) - 0.15
    for r in rows:
        colour = BLUE if r.recipe in front else GREY
        xerr = [[r.train_s_median - r.train_s_min], [r.train_s_max - r.train_s_median]]
        label = r.recipe
        if 100 * r.test_mean < low:
            y, label = low + 0.03, f"{r.recipe}: {r.test_mean:.2%}, below"
            ax.errorbar(r.train_s_median, y, xerr=xerr, fmt="v", color=colour, capsize=3)
        else:
            y = 100 * r.test_mean
            marker = "s" if r.recipe in ("mlp", "keras-io convnet") else "D" if r.recipe.startswith("ensemble") else "o"
            ax.errorbar(r.train_s_median, y, yerr=100 * r.test_std, xerr=xerr, fmt=marker, color=colour, capsize=3)
        ax.annotate(label, (r.train_s_median, y), textcoords="offset points", xytext=(5, -10))
    ax.set_xscale("log")
    ax.set_ylim(low, max(100 * (r.test_mean + r.test_std) for r in rows) + 0.05)
    style(
        ax,
        f"Test accuracy against training time ({rows[0].cpu}); blue: the frontier",
        "training time, s (median and min-max over seeds; log scale)",
        "test accuracy, % (mean ± std over seeds)",
    )
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="Recipes to measure (default: all); other rows are kept.")
    parser.add_argument("--subset", type=int, help="Train on this many images: a quick check, writes nothing.")
    parser.add_argument("--plot", action="store_true", help="Only draw the plot again from the table.")
    parser.add_argument("--table", type=Path, default=frontier.FRONTIER, help="The table to update.")
    parser.add_argument("--figure", type=Path, default=PLOT, help="Where to draw this machine's rows.")
    parser.add_argument("--child")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.seed, args.out, args.subset)))
        return

    machine = describe_machine()
    here = frontier.short(machine)  # the rows this machine measures, draws and replaces
    if args.plot:
        mine = [r for r in frontier.read(args.table) if r.cpu == here]
        if not mine:
            raise SystemExit(f"no rows measured on {here} in {args.table}: nothing to draw")
        plot(mine, args.figure)
        return
    from digitlab.data.mnist import load_mnist

    print(f"machine: {machine}")
    speeds = [frontier.calibrate()]
    print(f"speed: {speeds[0]:.2f} ms per calibration step", flush=True)
    labels = load_mnist(DATA_DIR).subset(args.subset)
    names = args.only or [*SPECS, *ENSEMBLES]
    wanted = {n for n in names if n in SPECS} | {ENSEMBLES[n][0] for n in names if n in ENSEMBLES}
    unknown = set(names) - set(SPECS) - set(ENSEMBLES)
    if unknown:
        raise SystemExit(f"unknown recipes {sorted(unknown)}; known: {', '.join([*SPECS, *ENSEMBLES])}")
    seeds = {n: args.seeds for n in wanted}
    for name, (recipe, k) in ENSEMBLES.items():
        if name in names:  # an ensemble of k needs k x seeds runs of its recipe
            seeds[recipe] = max(seeds[recipe], k * args.seeds)
    results: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="frontier-") as folder:
        for name in [n for n in SPECS if n in wanted]:
            results[name] = []
            for seed in range(seeds[name]):
                results[name].append(r := measure(name, seed, args.subset, Path(folder)))
                test = (r.test.argmax(1) == labels.y_test).mean()
                print(f"{name} seed {seed}: train {r.train_s:.1f} s, test {test:.4f}", flush=True)
            if not args.subset:  # a long run stopped later keeps the recipes it finished
                done = {n: row(n, rs, labels, machine, speeds[0], SPECS[n].all_data) for n, rs in results.items()}
                update(args.table, done, here)
    speeds.append(frontier.calibrate())
    speed = statistics.mean(speeds)
    print(f"speed at the end: {speeds[1]:.2f} ms (start {speeds[0]:.2f}); rows carry the mean, {speed:.2f}")
    rows = {n: row(n, rs, labels, machine, speed, SPECS[n].all_data) for n, rs in results.items()}
    for name, (recipe, k) in ENSEMBLES.items():
        if name in names:
            runs = results[recipe]
            groups = [runs[i : i + k] for i in range(0, k * args.seeds, k)]
            merged = [
                Result(sum(m.train_s for m in g), np.mean([m.val for m in g], 0), np.mean([m.test for m in g], 0))
                for g in groups
            ]
            rows[name] = row(name, merged, labels, machine, speed, False)
    for r in rows.values():
        val = "-" if r.val_mean is None else f"{r.val_mean:.2%}"
        print(
            f"| {r.recipe} | {r.seeds} | {r.test_mean:.2%} ± {r.test_std:.2%} | {val} | "
            f"{r.train_s_median:.1f} [{r.train_s_min:.1f}-{r.train_s_max:.1f}] |"
        )
    if args.subset:
        print("--subset: a quick check; nothing written")
        return
    table = update(args.table, rows, here)
    plot([r for r in table if r.cpu == here], args.figure)  # times compare only on one machine
    print(f"wrote {args.table} and {args.figure}")


def update(table: Path, rows: dict[str, frontier.Row], here: str) -> list[frontier.Row]:
    """One row per recipe and machine: a run here replaces this machine's rows, never another's."""
    kept = [r for r in frontier.read(table) if not (r.recipe in rows and r.cpu == here)]
    merged = sorted(kept + list(rows.values()), key=lambda r: r.train_s_median)
    frontier.write(merged, table)
    return merged


if __name__ == "__main__":
    main()
