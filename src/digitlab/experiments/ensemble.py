"""An ensemble: one Keras model averaging the softmax of K trained runs.

It is a run folder like any other (run.json, model.keras, metrics, report), so `evaluate`,
`export`, `predict` and `serve` take it as they take a single model.
"""

from __future__ import annotations

import dataclasses
import shlex
import time
from pathlib import Path

from digitlab.data.mnist import MNIST
from digitlab.errors import DigitlabError
from digitlab.files import write_atomic
from digitlab.training.record import Status
from digitlab.training.runs import Run


def ensemble(
    runs: list[str | Path], out: str | Path, data: MNIST | None = None, data_dir: str | Path | None = None
) -> Path:
    from digitlab.evaluation.evaluate import evaluate, load_split
    from digitlab.nn.backend import keras
    from digitlab.nn.models import INPUT_SHAPE, load

    if len(runs) < 2:
        raise DigitlabError("an ensemble needs at least two runs")
    members = [Run.open(r) for r in runs]
    for run in members:
        if not run.model.is_file():
            raise DigitlabError(f"{run.path} is not a finished digitlab run (no model.keras)")
    # Members must have been selected on one validation split, or the ensemble's calibration and
    # selection would use images some member trained on.
    splits = {(u.val_size, u.split_seed, u.subset) if (u := run.record.data) else None for run in members}
    if len(splits) > 1 or None in splits:
        raise DigitlabError(
            "the runs were trained on different data (--val-size, --split-seed or --subset differ); "
            "an ensemble must not mix them"
        )
    out = Path(out)
    if (out / Run.RECORD).exists():
        raise DigitlabError(f"{out} already holds a run; choose another --out")
    inputs = keras.Input(INPUT_SHAPE)
    outputs = []
    for i, run in enumerate(members):
        member = load(run.model)
        member.name = f"member{i}_{member.name}"  # layer names must be unique in one model
        outputs.append(member(inputs))
    model = keras.Model(inputs, keras.layers.Average()(outputs), name="ensemble")
    t0 = time.perf_counter()
    used = members[0].record.data
    if data is None:
        data = load_split(used, data_dir)
    run = Run.create(
        out,
        kind="ensemble",
        status=Status.TRAINED,
        members=[str(r.path) for r in members],
        # Every member's own command first: the card of a shipped ensemble says how to make it whole.
        command=" && ".join(
            [r.reproduce(here=True) for r in members]
            + [shlex.join(["digitlab", "ensemble", *(str(r.path) for r in members), "--out", str(out)])]
        ),
        params=model.count_params(),
        data=dataclasses.replace(used, negatives=0),
        timings={
            "train_s": sum(r.record.timings.get("train_s", 0) for r in members),
            "load_s": round(time.perf_counter() - t0, 2),
        },
    )
    write_atomic(run.model, model.save)
    evaluate(run, data=data)
    run.complete()
    return run.path
