"""What reading a digit from a photo costs over reading the clean MNIST digit itself, on many
images: the robustness suite's photo condition (same renders, same seed) on up to every digit of
a split, and the same digits as clean 28x28 arrays, each read with the model's calibrated threshold.

    python benchmarks/bench_photo.py [MODEL ...] [--split validation|test] [--n 10000]

For each model: photos and clean digits read right (top digit right, not declined), declined,
and top digit right; the photos that fail split by whether the clean digit fails too (the
digit is hard: the classifier's doing) or reads right (the photo path's doing). With a
95% Wilson interval, since 1,000 images (the suite's default) leave about +-0.6 points.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from common import DATA_DIR, ROOT, describe_machine


def share(mask: np.ndarray) -> str:
    from digitlab.robustness import wilson

    low, high = wilson(float(mask.mean()), len(mask))
    return f"{mask.mean():.2%} [{low:.2%}, {high:.2%}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=[None], help="run folders, .keras or .onnx files")
    parser.add_argument("--split", choices=("validation", "test"), default="validation")
    parser.add_argument("--n", type=int, default=10_000, help="digits of the split (all 10,000 by default)")
    args = parser.parse_args()

    from digitlab import robustness
    from digitlab.data import synth
    from digitlab.data.mnist import load_mnist
    from digitlab.io.load import load

    data = load_mnist(DATA_DIR)
    images, labels = (data.x_test, data.y_test) if args.split == "test" else (data.x_val, data.y_val)
    images = images.reshape(-1, 28, 28)
    seed = robustness.suite_seed(args.split)
    t0 = time.perf_counter()
    files, truth = robustness.real_inputs("photo", images, labels, args.n, seed)
    _, digits = synth.choose(len(labels), args.n, robustness.real_input_seed("photo", seed))  # the photos' own
    clean = images[digits]
    photos, ok = robustness.prepare_files(files, "digitlab")
    print(f"machine: {describe_machine()}")
    print(f"{args.split} split: {len(files):,} photos rendered and prepared in {time.perf_counter() - t0:.0f} s\n")
    print(
        "| model | photos read right | photos declined | clean read right | clean declined | photo top digit right "
        "| photo failures: clean fails too / clean reads right |"
    )
    print("|---|---|---|---|---|---|---|")
    for path in args.models:
        model = load(path)
        threshold = model.info["threshold"]
        p_conf, p_digit = robustness.read_prepared(model, photos, ok)
        c_conf, c_digit = robustness.read_prepared(model, clean, np.ones(len(clean), bool))
        p_read, c_read = (p_digit == truth) & (p_conf >= threshold), (c_digit == truth) & (c_conf >= threshold)
        failed = ~p_read
        print(
            f"| {model.info['name']} | {share(p_read)} | {share(p_conf < threshold)} | {share(c_read)} "
            f"| {share(c_conf < threshold)} | {(p_digit == truth).mean():.2%} "
            f"| {(failed & ~c_read).sum()} / {(failed & c_read).sum()} |"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
