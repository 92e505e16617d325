"""An ensemble: one Keras model averaging the softmax of K trained runs.

It is a run folder like any other (run.json, model.keras, metrics, report), so `evaluate`,
`export`, `predict` and `serve` take it as they take a single model.
"""

from __future__ import annotations

import time
from pathlib import Path

from .data import MNIST, load_mnist
from .errors import DigitlabError
from .files import read_json, write_atomic, write_json


def ensemble(
    runs: list[str | Path], out: str | Path, data: MNIST | None = None, data_dir: str | Path | None = None
) -> Path:
    from .backend import keras
    from .evaluation import evaluate
    from .models import INPUT_SHAPE, load
    from .training import _now, machine, versions

    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise DigitlabError("an ensemble needs at least two runs")
    records = []
    for run in runs:
        if not (run / "model.keras").is_file() or not (run / "run.json").is_file():
            raise DigitlabError(f"{run} is not a finished digitlab run (no model.keras)")
        records.append(read_json(run / "run.json"))
    splits = {(r["config"]["val_size"], r["config"]["split_seed"]) for r in records}
    if len(splits) > 1:
        raise DigitlabError(
            "the runs were validated on different splits (--val-size/--split-seed); an ensemble must not mix them"
        )
    out = Path(out)
    if (out / "model.keras").exists():
        raise DigitlabError(f"{out} already holds a model; choose another --out")
    inputs = keras.Input(INPUT_SHAPE)
    members = []
    for i, run in enumerate(runs):
        member = load(run / "model.keras")
        member.name = f"member{i}_{member.name}"  # layer names must be unique in one model
        members.append(member(inputs))
    model = keras.Model(inputs, keras.layers.Average()(members), name="ensemble")
    val_size, split_seed = splits.pop()
    record = {
        "name": out.name,
        "created": _now(),
        "status": "trained",
        "config": {"model": "ensemble", "val_size": val_size, "split_seed": split_seed},
        "members": [str(r) for r in runs],
        "command": "digitlab ensemble " + " ".join(map(str, runs)) + f" --out {out}",
        "params": model.count_params(),
        "versions": versions(),
        "machine": machine(),
        "timings": {"train_s": sum(r.get("timings", {}).get("train_s", 0) for r in records)},
    }
    t0 = time.perf_counter()
    if data is None:
        data = load_mnist(data_dir, val_size=val_size, split_seed=split_seed)
    record["data"] = data.summary()
    record["timings"]["load_s"] = round(time.perf_counter() - t0, 2)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "model.keras", model.save)
    write_json(out / "run.json", record)
    evaluate(out, data=data)
    record = read_json(out / "run.json")
    record.update(status="completed", finished=_now())
    write_json(out / "run.json", record)
    return out
