"""The piece model: which digit a piece of a written number is, or that it is not one whole digit
(a half, a fragment, a pair).

Reading a number by recognition (read/number.py) scores every candidate piece; a classifier that
has only seen whole digits reads half a 0 as a confident 1 and a 1 touching a 7 as a 7, so a
second opinion on the piece's shape at its line's height decides between the readings. It is
learnt from numbers the training family of data/lines.py writes with MNIST's training digits,
cut exactly as the reader cuts them (image/segment.py), each piece labelled by the digits' true
columns. Train and ship it with:

    python -m digitlab.training.pieces [--lines 5000] [--out src/digitlab/assets/pieces.onnx]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from digitlab.image import segment

OUT = Path(__file__).resolve().parents[1] / "assets" / "pieces.onnx"
LINES = 5_000  # numbers written: ~50 pieces each, ~1 in 8 a whole digit
NOT_ONE = 10  # the class of a piece that is not one whole digit
HOLDS = 0.85  # a whole digit: the piece holds this share of one digit's ink
STRAYS = 0.15  # ... and no more than this of any other's (touching neighbours share a little)
EPOCHS = 4  # the validation loss stops falling after 3-4 passes
BATCH = 256
SEED = 0


def label(owners: np.ndarray, totals: np.ndarray, text: str) -> int:
    """The digit a piece is (`owners`: whose ink each of its pixels is, 0 for none), where it
    holds one digit nearly whole and little of any other; else NOT_ONE. `totals`: each digit's
    pixels in the whole image; `text`: the number."""
    held = np.bincount(owners, minlength=len(totals))[1:] / np.maximum(totals[1:], 1)
    order = np.argsort(-held)
    if held[order[0]] >= HOLDS and (len(held) == 1 or held[order[1]] <= STRAYS):
        return int(text[order[0]])
    return NOT_ONE


def examples(images: np.ndarray, labels: np.ndarray, n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Pieces (N, *segment.SHAPE) from `n` written numbers, and what each is (label())."""
    import cv2

    from digitlab.data import lines

    shapes, classes = [], []
    for file, owner, text in lines.training(images, labels, n, seed):
        layout = segment.find(file, page=False)
        if layout.reason:
            continue
        owner = cv2.resize(owner, layout.work[::-1], interpolation=cv2.INTER_NEAREST)
        for group in (g for line in layout.lines for number in line for g in number):
            top, left, bottom, right = group.box
            mine = owner[top:bottom, left:right]
            totals = np.bincount(mine[group.own], minlength=len(text) + 1)
            group.cut()
            for span in group.spans():
                piece = group.piece(*span)
                if piece is not None:
                    shapes.append(piece[2])
                    classes.append(label(mine[group.mask(*span)], totals, text))
    return np.stack(shapes), np.array(classes, np.int64)


def build():
    """Small on purpose: it runs on every candidate piece of every number read."""
    import keras

    return keras.Sequential(
        [
            keras.Input((*segment.SHAPE, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(NOT_ONE + 1, activation="softmax"),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=LINES)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    import keras

    from digitlab.data.mnist import load_mnist

    keras.utils.set_random_seed(SEED)
    data = load_mnist(args.data_dir)
    x, y = examples(data.x_train.reshape(-1, 28, 28), data.y_train, args.lines)
    vx, vy = examples(data.x_val.reshape(-1, 28, 28), data.y_val, args.lines // 10, seed=SEED + 1)
    print(f"{len(x):,} pieces ({(y != NOT_ONE).mean():.1%} whole digits); validation {len(vx):,}")
    model = build()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[..., None], y, batch_size=BATCH, epochs=EPOCHS, validation_data=(vx[..., None], vy), verbose=2)
    _export(model, args.out)
    print(f"wrote {args.out}")


def _export(model, out: Path) -> None:
    from digitlab.files import write_atomic
    from digitlab.nn.backend import export_onnx, tf

    signature = [tf.TensorSpec((None, *segment.SHAPE, 1), tf.float32, name="piece")]
    write_atomic(out, lambda tmp: export_onnx(model, tmp, signature))


if __name__ == "__main__":
    main()
