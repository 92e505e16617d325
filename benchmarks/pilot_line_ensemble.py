"""Line readers read together, against each alone, on validation:

    python benchmarks/pilot_line_ensemble.py A.onnx B.onnx [C.onnx ...] [--n 600]

Each reader (training/line_reader.py, trained from seeds of their own) reads, alone and with no
cuts, n numbers of data/lines.py's validation family with ordinary gaps and n whose neighbours
touch, as reading prepares them (pilot_line_readers.validation_strips). Then all of them together:
  steps     the mean of their probabilities at each step, decoded greedily
  together  each reader's greedy reading a candidate, the one they give the most probability
            (multiplied) read: training/line_reader.decode of all, one graph (join())
and, of three or more, each two together (timed as all of them run).
Printed: numbers read exactly of each kind, and each way's time per strip.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
from common import DATA_DIR, describe_machine
from pilot_line_readers import validation_strips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("readers", type=Path, nargs="+")
    parser.add_argument("--n", type=int, default=600)
    args = parser.parse_args()

    from digitlab.data.mnist import load_mnist
    from digitlab.read.line import _logits
    from digitlab.training.line_reader import decode, join, step_probabilities

    data = load_mnist(DATA_DIR)
    images = data.x_val.reshape(-1, 28, 28)
    judged = {kind: validation_strips(images, data.y_val, args.n, kind == "touching") for kind in ("gaps", "touching")}
    print(f"machine: {describe_machine()}\nreaders: {', '.join(map(str, args.readers))}; validation family\n")
    with tempfile.TemporaryDirectory() as folder:
        joined = Path(folder) / "joined.onnx"
        join(args.readers, joined)

        def steps(logits: np.ndarray) -> np.ndarray:  # the log of the readers' mean step probabilities
            return np.log(np.maximum(step_probabilities(logits).mean(0), 1e-30))

        def alone(path: Path):
            return lambda strips: decode(_logits(strips, path))

        def together(readers: list[int]):  # some of the joined, the others' logits set aside
            return lambda strips: decode(_logits(strips, joined)[readers])

        ways = {path.stem: alone(path) for path in args.readers}
        ways["steps"] = lambda strips: decode(steps(_logits(strips, joined)))
        if len(args.readers) > 2:
            for pair in itertools.combinations(range(len(args.readers)), 2):
                ways[" + ".join(args.readers[k].stem for k in pair)] = together(list(pair))
        ways["together"] = lambda strips: decode(_logits(strips, joined))
        print("| way | gaps exact | touching exact | ms a strip |\n|---|---|---|---|")
        for way, read in ways.items():
            print(f"| {way} | " + " | ".join(exact_and_time(read, judged)) + " |")


def exact_and_time(read, judged: dict) -> list[str]:
    """Numbers read exactly of each kind by `read` (strips -> readings), and its ms per strip."""
    exact, took = [], 0.0
    for strips, texts in judged.values():
        t0 = time.perf_counter()
        got = [r[0] for r in read(strips[..., 0])]
        took += time.perf_counter() - t0
        exact.append(np.mean([g == t for g, t in zip(got, texts, strict=True)]))
    ms = 1000 * took / sum(len(t) for _, t in judged.values())
    return [*(f"{e:.1%}" for e in exact), f"{ms:.2f}"]


if __name__ == "__main__":
    main()
