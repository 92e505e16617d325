"""How the decline rate trades readable digits declined against non-digits let through, on the
validation split only (the rate is a choice, so the test split plays no part):

    python benchmarks/bench_decline_rate.py [MODEL ...] [--n 1000]

For each rate, the threshold is that quantile of the model's calibrated confidence over all
10,000 validation digits (as calibration.fit sets it with DECLINE_RATE); then, at that
threshold: the robustness suite's validation photos and other real-input digits read right and
declined, its validation non-digits (held-out sources) declined, and the validation non-digits
made from the training sources declined.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from common import DATA_DIR, ROOT, describe_machine

RATES = (0.01, 0.0075, 0.005, 0.0025, 0.001)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=[None], help="run folders, .keras or .onnx files")
    parser.add_argument("--n", type=int, default=1000, help="images per real-input and non-digit kind")
    args = parser.parse_args()

    from digitlab import robustness
    from digitlab.data import negatives, synth
    from digitlab.data.mnist import load_mnist
    from digitlab.evaluation import evaluate as evaluation
    from digitlab.io.load import load
    from digitlab.nn import calibration
    from digitlab.nn.calibration import scale_temperature
    from digitlab.training.outliers import validation_set

    data = load_mnist(DATA_DIR)
    x, y = data.x_val.reshape(-1, 28, 28, 1), data.y_val
    # The same images for every model, prepared once: the suite's validation renders and both kinds of non-digit.
    seed = robustness.suite_seed("validation")
    real = {}
    for kind in synth.KINDS:
        files, labels = robustness.real_inputs(kind, data.x_val, y, args.n, seed)
        real[kind] = (*robustness.prepare_files(files, "digitlab"), labels)
    held_out_files = [f for kind in negatives.EVAL_KINDS for f in robustness.not_digits(kind, args.n, seed)]
    held_out_images = robustness.prepare_files(held_out_files, "digitlab")
    own_images = validation_set(evaluation.VAL_NEGATIVES, data.x_val).reshape(-1, 28, 28, 1)
    print(f"machine: {describe_machine()}")
    print(f"validation split; {args.n} images per real-input and non-digit kind\n")
    for path in args.models:
        model = load(path)
        probs = model.probabilities(x)
        model.info["temperature"] = temperature = calibration.fit(y, probs)["temperature"]
        confidence = scale_temperature(probs, temperature).max(1)
        own = scale_temperature(model.probabilities(own_images), temperature).max(1)
        read = {}
        for kind, (images, ok, labels) in real.items():
            conf, digit = robustness.read_prepared(model, images, ok)
            read[kind] = (conf, digit == labels)
        held_out = robustness.read_prepared(model, *held_out_images)[0]
        photo_conf, photo_right = read["photo"]
        all_conf = np.concatenate([c for c, _ in read.values()])
        all_right = np.concatenate([r for _, r in read.values()])
        name, right = model.info["name"], photo_right.mean()
        print(f"{name}: temperature {temperature:.3f}; photos with the right top digit {right:.1%}")
        print(
            "| rate | threshold | photos read right / declined | all real inputs read right / declined "
            "| non-digits declined: held-out / training sources |"
        )
        print("|---|---|---|---|---|")
        for rate in RATES:
            t = float(np.quantile(confidence, rate))
            photo = f"{(photo_right & (photo_conf >= t)).mean():.1%} / {(photo_conf < t).mean():.1%}"
            pooled = f"{(all_right & (all_conf >= t)).mean():.1%} / {(all_conf < t).mean():.1%}"
            declined = f"{(held_out < t).mean():.1%} / {(own < t).mean():.1%}"
            print(f"| {rate:.2%} | {t:.3f} | {photo} | {pooled} | {declined} |")
        print()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
