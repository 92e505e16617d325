"""How the model reads realistic images: digitlab's MNIST-style preprocessing against the usual
`resize to 28x28` demo, on the same model and the same images, and how often it declines
things that are not digits.

    python benchmarks/bench_real_images.py [--model PATH] [--n 500] [--seed 0]

Fixtures come from digitlab.synth (MNIST *test* digits as phone photos and canvas drawings,
digits typeset in the machine's fonts); non-digits are typeset letters, random scribbles and noise.
"""

from __future__ import annotations

import argparse
import io
import sys

import numpy as np
from common import DATA_DIR, ROOT, describe_machine
from PIL import Image, ImageDraw, ImageFont


def non_digits(n: int, rng: np.random.Generator, fonts) -> dict[str, list[bytes]]:
    def encode(image: Image.Image) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    letters, scribbles, noise = [], [], []
    for _ in range(n):
        image = Image.new("L", (160, 160), 255)
        font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), int(rng.integers(70, 120)))
        ImageDraw.Draw(image).text((25, 10), chr(int(rng.choice([*range(65, 91), *range(97, 123)]))), fill=0, font=font)
        letters.append(encode(image))
        image = Image.new("L", (200, 200), 255)
        points = [tuple(p) for p in rng.integers(20, 180, size=(int(rng.integers(6, 14)), 2)).tolist()]
        ImageDraw.Draw(image).line(points, fill=0, width=int(rng.integers(6, 14)), joint="curve")
        scribbles.append(encode(image))
        noise.append(encode(Image.fromarray(rng.integers(0, 256, (100, 100)).astype(np.uint8))))
    return {"typeset letters": letters, "random scribbles": scribbles, "pure noise": noise}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="run folder, .keras or .onnx (default: the shipped model)")
    parser.add_argument("--n", type=int, default=500, help="images per kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from digitlab import synth
    from digitlab.data import load_raw, scale
    from digitlab.predict import load, read
    from digitlab.preprocess import naive, prepare

    raw = load_raw(DATA_DIR)
    model = load(args.model)
    print(f"machine: {describe_machine()}")
    print(f"model: {model.path} (temperature {model.info['temperature']:.3f}, threshold {model.info['threshold']:.3f})")
    print()
    print("| images | n | digitlab: accuracy | declined | accuracy of the rest | naive resize: accuracy |")
    print("|---|---|---|---|---|---|")
    for kind in synth.KINDS:
        images, labels = synth.render(kind, scale(raw.test_images), raw.test_labels, args.n, seed=args.seed)
        prepared = [prepare(image) for image in images]
        answers = read(model, np.stack([p.image for p in prepared]))
        digits = np.array(
            [
                a["digit"] if p.reason is None and a["digit"] is not None else -1
                for a, p in zip(answers, prepared, strict=True)
            ]
        )
        naive_digits = np.array([a["digit"] for a in read(model, np.stack([naive(i) for i in images]))])
        raw_naive = model.probabilities(np.stack([naive(i) for i in images])[..., None]).argmax(1)
        accepted = digits >= 0
        print(
            f"| {kind} | {len(labels)} | {(digits == labels).mean():.1%} | {1 - accepted.mean():.1%} | "
            f"{(digits[accepted] == labels[accepted]).mean():.1%} | {(raw_naive == labels).mean():.1%} "
            f"(declines {np.mean([d is None for d in naive_digits]):.0%}) |"
        )
    print()
    print("| not digits | n | declined by digitlab |")
    print("|---|---|---|")
    for name, images in non_digits(args.n, np.random.default_rng(args.seed), synth.fonts()).items():
        prepared = [prepare(image) for image in images]
        answers = read(model, np.stack([p.image for p in prepared]))
        declined = [p.reason is not None or a["digit"] is None for p, a in zip(prepared, answers, strict=True)]
        print(f"| {name} | {len(images)} | {np.mean(declined):.1%} |")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
