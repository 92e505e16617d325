"""Models side by side on the robustness suite, and the naive "resize to 28x28" demo on the same
images with the first model; then each model's single-image latency on ONNX Runtime.

    python benchmarks/bench_robustness.py [MODEL ...] [--n 1000] [--corruption-n 10000] [--split test] [--write DIR]

MODEL: run folders, .keras or .onnx files (default: the shipped model). Validation (--split
validation) is for choosing between models; the test split is for reporting the chosen one.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from common import DATA_DIR, ROOT, describe_machine

LATENCY_CALLS = 2000


def latency_ms(model) -> tuple[float, float]:
    """p50 and p99 of one image per call, after a warm-up."""
    image = np.random.default_rng(0).random((1, 28, 28, 1), dtype=np.float32)
    for _ in range(100):
        model.probabilities(image)
    times = []
    for _ in range(LATENCY_CALLS):
        t0 = time.perf_counter()
        model.probabilities(image)
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def cell(row) -> str:
    """A digits row: accuracy, read right, declined; "-" for what a condition has not (pages: no accuracy)."""
    if not row.n:
        return "-"
    accuracy, read, declined = (
        "-" if v is None else f"{v:.{d}%}" for v, d in ((row.accuracy, 2), (row.read, 1), (row.declined, 1))
    )
    return f"{accuracy} (read {read}, declined {declined})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=[None], help="run folders, .keras or .onnx files")
    parser.add_argument("--n", type=int, default=1000, help="images per condition")
    parser.add_argument("--corruption-n", type=int, default=10_000, help="images per MNIST-C corruption")
    parser.add_argument(
        "--split", choices=("test", "validation"), help="default: validation to compare models, test for one"
    )
    parser.add_argument("--write", help="also write the first model's tables and picture to this folder")
    args = parser.parse_args()
    args.split = args.split or ("validation" if len(args.models) > 1 else "test")  # choosing is done on validation

    from digitlab import robustness
    from digitlab.data.mnist import load_mnist
    from digitlab.io.load import load

    data = load_mnist(DATA_DIR)
    images, labels = (data.x_test, data.y_test) if args.split == "test" else (data.x_val, data.y_val)
    models = [load(m) for m in args.models]
    print(f"machine: {describe_machine()}")
    print(f"split: {args.split}; {args.n} images per condition, {args.corruption_n} per MNIST-C corruption\n")

    def timed(some: list, reader: str) -> list:
        t0 = time.perf_counter()
        suites = robustness.measure(some, images, labels, args.split, args.n, reader, args.corruption_n)
        print(f"{reader} reader, {len(some)} model(s): {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return suites

    ours, naive = timed(models, "digitlab"), timed(models[:1], "naive")  # the naive resize: the first model only
    suites = [ours[0], *naive, *ours[1:]]
    names = [m.info["name"] for m in models]
    columns = [names[0], f"{names[0]} (naive resize)", *names[1:]]

    print("Digits: accuracy (read right, declined). Non-digits: declined, AUROC against clean / all digits.\n")
    print("| group | condition | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for rows in zip(*(s.rows for s in suites), strict=True):
        r = rows[0]
        if r.group == "not digits":
            cells = [f"declined {x.declined:.1%}, AUROC {x.auroc_clean:.4f} / {x.auroc:.4f}" for x in rows]
        else:
            cells = [cell(x) for x in rows]
        print(f"| {r.group} | {r.condition} | " + " | ".join(cells) + " |")
    if args.write:
        robustness.write(suites[0], args.write)
    print()
    for column, suite in zip(columns, suites, strict=True):
        print(f"{column}: {suite.summary()}")
    print()
    for model in models:
        if model.path.suffix == ".onnx":
            p50, p99 = latency_ms(model)
            print(f"{model.info['name']}: single image on ONNX Runtime p50 {p50:.3f} ms, p99 {p99:.3f} ms")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
