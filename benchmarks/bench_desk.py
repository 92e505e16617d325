"""Phone photos of a sheet on a desk (data/scenes.py), read by the shipped model through
predict_image, with and without the scene finder (image/scene.py), against the same digits as
plain photos (data/synth.py's "photo": the sheet fills the frame) and as clean 28x28 arrays:

    python benchmarks/bench_desk.py [--family test|validation] [--n 400] [--repeat 3] [--model PATH]

The test family is drawn from MNIST's test split, the validation family (on which the finder's
settings were chosen) from its validation split. For each: read right (accepted, right digit),
declined, wrong (accepted, wrong digit), each with a 95% Wilson interval; and the time per image,
p50 over every image and repetition, of decode + find + prepare + model (predict_image on the
file's bytes), on the photos as rendered and resized to 400x400 JPEGs. Writes nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import numpy as np
from common import DATA_DIR, ROOT, describe_machine


def share(mask: np.ndarray) -> str:
    from digitlab.robustness import wilson

    low, high = wilson(float(mask.mean()), len(mask))
    return f"{mask.mean():.2%} [{low:.2%}, {high:.2%}]"


def outcomes(answers: list[dict], truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    digit = np.array([-1 if a["digit"] is None else a["digit"] for a in answers])
    return (digit == truth), (digit == -1), (digit != -1) & (digit != truth)


def timed(model, files: list[bytes], repeat: int) -> tuple[list[dict], np.ndarray]:
    """Each file read `repeat` times: the answers of the first pass, and the times (ms), one row a pass."""
    from digitlab.read.predict import predict_image

    answers, times = [], np.zeros((repeat, len(files)))
    for r in range(repeat):
        for i, f in enumerate(files):
            t0 = time.perf_counter()
            answer = predict_image(model, f)
            times[r, i] = (time.perf_counter() - t0) * 1000
            if r == 0:
                answers.append(answer)
    return answers, times


def to_400(data: bytes) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").resize((400, 400), Image.Resampling.BILINEAR).save(
        buffer, "JPEG", quality=85
    )
    return buffer.getvalue()


def row(name: str, answers: list[dict], truth: np.ndarray, times: np.ndarray | None = None) -> str:
    right, declined, wrong = outcomes(answers, truth)
    # p50 over every read; and over images of each one's fastest pass, less what other processes took
    p50 = f"{np.median(times):.2f} | {np.median(times.min(0)):.2f}" if times is not None else "- | -"
    return f"| {name} | {share(right)} | {share(declined)} | {share(wrong)} | {p50} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("test", "validation"), default="test")
    parser.add_argument("--n", type=int, default=400, help="desk photos (and as many plain photos)")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the files for the times")
    parser.add_argument("--model", default=None, help="an .onnx file or run folder; the shipped model by default")
    args = parser.parse_args()

    from digitlab.data import scenes, synth
    from digitlab.data.mnist import load_mnist
    from digitlab.image import scene
    from digitlab.io.load import load
    from digitlab.read.predict import read

    data = load_mnist(DATA_DIR)
    images, labels = (data.x_test, data.y_test) if args.family == "test" else (data.x_val, data.y_val)
    images = images.reshape(-1, 28, 28)
    seed = scenes.SEEDS[args.family]
    t0 = time.perf_counter()
    desks, truth = scenes.render(images, labels, args.n, family=args.family)
    photos, photo_truth = synth.render("photo", images, labels, args.n, seed=seed)  # the same digits
    assert np.array_equal(truth, photo_truth)
    small = [to_400(f) for f in desks]
    _, pick = synth.choose(len(labels), args.n, seed)
    model = load(args.model)
    print(f"machine: {describe_machine()}; load average {os.getloadavg()[0]:.1f} at the start")
    print(f"model: {model.info.get('name')}, threshold {model.info['threshold']:.2f}")
    print(f"{args.family} family, {args.n} desk photos and {args.n} plain photos of the same digits (seed {seed}), ")
    print(f"rendered in {time.perf_counter() - t0:.0f} s; times: p50 over {args.repeat} passes, ms per image\n")
    print("| images | finder | read right | declined | wrong | p50 ms | p50 of fastest pass ms |")
    print("|---|---|---|---|---|---|---|")
    runs = [("desk photos", desks), ("desk photos, 400x400", small), ("plain photos", photos)]
    for name, files in runs:
        for on in (False, True):
            scene.ENABLED = on
            answers, times = timed(model, files, args.repeat)
            print(row(f"{name} | {'on' if on else 'off'}", answers, truth, times))
    scene.ENABLED = True
    clean = read(model, images[pick])
    print(row("clean 28x28 arrays | -", clean, truth))
    found = [scene.find(_grey(f)) is not None for f in desks]
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"\nthe finder found a sheet in {sum(found)}/{len(desks)} desk photos and in "
          f"{sum(scene.find(_grey(f)) is not None for f in photos)}/{len(photos)} plain photos")  # fmt: skip


def _grey(data: bytes) -> np.ndarray:
    from digitlab.image.decode import read_image

    return read_image(data)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
