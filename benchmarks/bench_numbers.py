"""Numbers as people write them (data/lines.py), read by the shipped model:

    python benchmarks/bench_numbers.py [--family test|validation] [--n 400] [--pages 100] [--model PATH]

Numbers of 2-5 digits at one height with ordinary gaps, the same with touching neighbours (both
through predict_image(number=True), as `digitlab predict --number`), and pages of 3-8 numbers on
1-4 lines (read_numbers, as `digitlab read`). For numbers: exact (every digit right), declined,
wrong, each with a 95% Wilson interval; for pages: the share of numbers found and read exactly,
and of pages read whole in reading order. Times: p50 ms per image, decode + find + prepare + model.
The reader's settings were chosen on the validation family; report the test family.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from common import DATA_DIR, describe_machine


def share(mask) -> str:
    from digitlab.robustness import wilson

    mask = np.asarray(mask, bool)
    low, high = wilson(float(mask.mean()), len(mask))
    return f"{mask.mean():.1%} [{low:.1%}, {high:.1%}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("test", "validation"), default="test")
    parser.add_argument("--n", type=int, default=400, help="numbers of each kind")
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--model", default=None, help="an .onnx file or run folder; the shipped model by default")
    args = parser.parse_args()

    from digitlab.data import lines
    from digitlab.data.mnist import load_mnist
    from digitlab.io.load import load
    from digitlab.read.number import read_numbers
    from digitlab.read.predict import predict_image
    from digitlab.robustness.wild import matched

    data = load_mnist(DATA_DIR)
    images, labels = (data.x_test, data.y_test) if args.family == "test" else (data.x_val, data.y_val)
    images = images.reshape(-1, 28, 28)
    model = load(args.model)
    print(f"machine: {describe_machine()}; load average {os.getloadavg()[0]:.1f} at the start")
    print(f"model: {model.info.get('name')}; {args.family} family (seeds {lines.SEEDS[args.family]} + 0, 1, 2)\n")
    print("| images | n | exact | declined | wrong | p50 ms | p50 ms, 5 digits |")
    print("|---|---|---|---|---|---|---|")
    for touching in (False, True):
        files, texts = lines.numbers(images, labels, args.n, args.family, touching)
        answers, times = [], []
        for f in files:
            t0 = time.perf_counter()
            answers.append(predict_image(model, f, number=True))
            times.append((time.perf_counter() - t0) * 1000)
        got = [a["number"] for a in answers]
        exact = [g == t for g, t in zip(got, texts, strict=True)]
        declined = [g is None for g in got]
        wrong = [g is not None and g != t for g, t in zip(got, texts, strict=True)]
        five = [t for t, text in zip(times, texts, strict=True) if len(text) == 5]
        name = "numbers, touching neighbours" if touching else "numbers at one height, ordinary gaps"
        print(
            f"| {name} | {len(files)} | {share(exact)} | {share(declined)} | {share(wrong)} "
            f"| {np.median(times):.1f} | {np.median(five):.1f} |"
        )
    files, truths = lines.pages(images, labels, args.pages, args.family)
    found, whole, times = [], [], []
    for f, truth in zip(files, truths, strict=True):
        t0 = time.perf_counter()
        got = [n["number"] for n in read_numbers(model, f)["numbers"]]
        times.append((time.perf_counter() - t0) * 1000)
        found += matched(got, truth)
        whole.append(got == truth)
    print(f"| pages: numbers found and read | {len(found)} | {share(found)} | - | - | {np.median(times):.0f} | - |")
    print(f"| pages: read whole, in order | {len(whole)} | {share(whole)} | - | - | - | - |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
