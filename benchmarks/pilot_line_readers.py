"""Shapes of the line reader (training/line_reader.py) compared at a small scale, on validation:

    python benchmarks/pilot_line_readers.py [--lines 60000] [--epochs 2] [--shapes one-conv,two-convs,...]

Each shape is trained, from the same seed, on the same numbers and non-digits (written once with
MNIST's training digits, as the recipe writes them) for the same epochs, then reads, alone, with
no cuts, 600 numbers of data/lines.py's validation family with ordinary gaps and 600 whose
neighbours touch, as reading prepares them. Printed: each shape's weights, training time and
numbers read exactly. A pilot chooses which shape the full recipe trains; the shipped reader's
figures come from benchmarks/bench_numbers.py.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import DATA_DIR, describe_machine

ONE_CONV = {"convs": 1}  # one conv a block, as the first line readers had
SHAPES = {
    "one-conv": ONE_CONV,
    # half the columns a step: room for narrow digits that overlap (a 1 in a 9)
    "fine-steps": {**ONE_CONV, "blocks": ((16, (2, 2)), (32, (2, 1)), (64, (2, 1)), (64, (2, 1)))},
    "two-convs": {"convs": 2},  # each block twice as deep
    "three-convs": {"convs": 3},  # and deeper again: depth, not width, told overlapping strokes apart
    "wide": {**ONE_CONV, "blocks": ((32, (2, 2)), (64, (2, 2)), (96, (2, 1)), (96, (2, 1))), "context": 192},
}


def validation_strips(images: np.ndarray, labels: np.ndarray, n: int, touching: bool) -> tuple[np.ndarray, list[str]]:
    """Validation numbers' strips as reading makes them (blank where no ink is found), and their truth."""
    from digitlab.data import lines
    from digitlab.image.strip import HEIGHT, WIDTH
    from digitlab.training.line_reader import strip_of

    files, texts = lines.numbers(images, labels, n, "validation", touching)
    strips = [strip_of(f) for f in files]
    blank = np.zeros((HEIGHT, WIDTH), np.float32)
    return np.stack([blank if s is None else s for s in strips])[..., None], texts


def main() -> None:
    from digitlab.environment import cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--jobs", type=int, default=cores(), help="processes that write the numbers")
    args = parser.parse_args()

    import keras

    from digitlab.data.mnist import load_mnist
    from digitlab.training import line_reader
    from digitlab.training.loop import batches

    data = load_mnist(DATA_DIR)
    print(f"machine: {describe_machine()}; {args.lines:,} numbers, {args.epochs} epochs")
    x, y = line_reader.examples_in_parallel(
        data.x_train.reshape(-1, 28, 28), data.y_train, args.lines, args.jobs, line_reader.NOT_NUMBERS
    )
    images = data.x_val.reshape(-1, 28, 28)
    judged = {kind: validation_strips(images, data.y_val, 600, kind == "touching") for kind in ("gaps", "touching")}
    print("| shape | weights | training s | gaps exact | touching exact |\n|---|---|---|---|---|")
    for name in args.shapes.split(","):
        keras.utils.set_random_seed(line_reader.SEED)
        model = line_reader.build(**SHAPES[name])
        steps = args.epochs * int(np.ceil(len(x) / line_reader.BATCH))
        schedule = keras.optimizers.schedules.CosineDecay(line_reader.LR, steps)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=keras.losses.CTC())
        t0 = time.perf_counter()
        train = batches(x[..., None], y, line_reader.BATCH, line_reader.SEED, model.optimizer.iterations)
        model.fit(train, epochs=args.epochs, verbose=0)
        took = time.perf_counter() - t0
        exact = []
        for strips, texts in judged.values():
            read = line_reader.decode(model.predict(strips, verbose=0))
            exact.append(np.mean([r[0] == t for r, t in zip(read, texts, strict=True)]))
        print(f"| {name} | {model.count_params():,} | {took:.0f} | {exact[0]:.1%} | {exact[1]:.1%} |")


if __name__ == "__main__":
    main()
