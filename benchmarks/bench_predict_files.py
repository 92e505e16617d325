"""`digitlab predict` over many photo files, as a user runs it: one reading process against one per
core (read/files.py), alternated in one run, the same answers checked.

    python benchmarks/bench_predict_files.py [--n 1000] [--repeat 3]

The files are the robustness suite's photo renders (data/synth.py, 240-480 px JPEGs) of MNIST
test digits, written to a scratch folder; each run is the whole command from the shell, start-up
included, with --json. Prints images/s for each, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA_DIR, describe_machine


def timed(files: list[str], workers: str) -> tuple[float, list[tuple]]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "digitlab.cli", "predict", *files, "--json", "--workers", workers],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - t0
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    return seconds, [(a["file"], a.get("digit"), a.get("confidence")) for a in answers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from digitlab.data import synth
    from digitlab.data.mnist import load_mnist
    from digitlab.environment import cores

    data = load_mnist(DATA_DIR)
    photos, labels = synth.render("photo", data.x_test.reshape(-1, 28, 28), data.y_test, args.n, seed=2026)
    print(describe_machine())
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for k, photo in enumerate(photos):
            files.append(str(Path(folder) / f"{k:05d}.jpg"))
            Path(files[-1]).write_bytes(photo)
        every_core = str(max(2, cores()))
        runs: dict[str, list[float]] = {"1": [], every_core: []}
        answers = {}
        for _ in range(args.repeat):  # alternated, so that a slower minute of the machine hits both
            for workers in runs:
                seconds, answers[workers] = timed(files, workers)
                runs[workers].append(seconds)
    one, every = (statistics.median(runs[w]) for w in runs)
    # One ONNX Runtime thread a process sums in another order than two: confidences may differ
    # in their last digits, the digits read must not.
    one_by_one, side_by_side = answers["1"], answers[every_core]
    assert [a[:2] for a in one_by_one] == [a[:2] for a in side_by_side], "another digit read with processes"
    gap = max(abs((a[2] or 0) - (b[2] or 0)) for a, b in zip(one_by_one, side_by_side, strict=True))
    print(f"the same digit read either way for every file; confidences within {gap:.1e}")
    right = sum(a[1] == y for a, y in zip(answers["1"], labels, strict=True)) / len(labels)
    print(f"{args.n:,} photos, {right:.1%} read right (either way)")
    for workers, seconds in runs.items():
        print(
            f"--workers {workers}: {statistics.median(seconds):.2f} s median "
            f"[{min(seconds):.2f}-{max(seconds):.2f}], {args.n / statistics.median(seconds):.0f} images/s"
        )
    print(f"{every_core} processes against one: {one / every:.2f}x the images/s")


if __name__ == "__main__":
    main()
