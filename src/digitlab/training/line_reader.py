"""The line reader: a written number read whole, no cuts, by a small convnet trained with CTC.

Cutting touching digits apart fails where their strokes overlap deeply: no straight-ish path
separates them. A reader that slides along the number and says which digit it sees at each
step, trained with connectionist temporal classification (CTC: the loss sums over every way
the steps can spell the number, so no step needs a label of its own), learns where one digit
ends from the digits themselves. It learns from numbers the training family of data/lines.py
writes with MNIST's training digits, each prepared as reading prepares it (image/segment.py,
image/strip.py), and from non-digits (letters, shapes, scribbles, textures from the training
sources of data/negatives.py) whose reading is empty: it learns to read nothing where there is no
digit, so that it may answer where the cuts decline.

Two readers, trained alike from seeds of their own, are shipped as one file and read together
(decode()): where they disagree, the reading both find most probable is taken. Train and ship:

    python -m digitlab.training.line_reader --out line-0.onnx
    python -m digitlab.training.line_reader --seed 500 --out line-500.onnx
    python -m digitlab.training.line_reader --join line-0.onnx line-500.onnx --out src/digitlab/assets/line.onnx
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from digitlab.environment import cores
from digitlab.image import segment
from digitlab.image.strip import HEIGHT, WIDTH, strip

OUT = Path("line.onnx")  # one reader; the shipped file is two joined
LINES = 400_000  # numbers written, 1-5 digits each, half of them touching (more than 80,000 read better)
NOT_NUMBERS = 0.2  # and this many non-digits per number, read as nothing
# A share of the numbers with each digit in MNIST's 20-px box (a wide digit shorter, not wider),
# as the suite's numbers stand (lines.training). None in the shipped reader: a quarter traded
# touching numbers for the suite's on validation (docs/robustness/bench-numbers.md).
BOXED = 0.0
# The non-digits' random stream: past every classifier run's (training/outliers.py), so the line
# reader never learns the very non-digits a classifier trained or was judged on.
NOT_NUMBER_STREAM = 2**33
MAX_DIGITS = 5  # the longest number the generator writes; CTC's labels are padded to it
# The convnet: (filters, pool) of each block; its pools take the strip's 32 rows to 2 and its
# columns to STEPS time steps, one per 4 columns: 8 per digit height, room for blanks between.
BLOCKS = ((16, (2, 2)), (32, (2, 2)), (64, (2, 1)), (64, (2, 1)))
STEPS = WIDTH // math.prod(pool[1] for _, pool in BLOCKS)
CONVS = 2  # convs a block: two, not one, tell whose stroke is whose where digits overlap (bench-numbers.md)
CONTEXT = 128  # channels of the 1-D convs along the steps
EPOCHS = 2  # few: new numbers teach more than the same ones again (it learnt its numbers by heart)
BATCH = 64
LR = 2e-3  # Adam, cosine-annealed to 0 over the epochs
SEED = 0  # a second reader of the ensemble (--seed SECOND) learns from numbers and non-digits of its own
SECOND = 500
CHUNK = 10_000  # numbers a worker writes at once; chunk k draws from seed seed + k * CHUNK_SEEDS
# Far from VALIDATION and from SECOND's chunks. Seeds that differ by a multiple of it share
# chunks (seed 1000 writes seed 0's chunks 1 onward): a reader of its own takes a seed of
# another remainder (250, 750, ...).
CHUNK_SEEDS = 1_000
VALIDATION = 1  # the seed of the numbers written from MNIST's validation digits to follow training


def examples(
    images: np.ndarray, labels: np.ndarray, n: int, seed: int = SEED, not_numbers: float = 0.0, boxed: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Strips (N, HEIGHT, WIDTH) of `n` written numbers (a share `boxed` in MNIST's box) and
    `not_numbers` * n non-digits, and their digits + 1 (0: CTC's blank), padded with 0 to
    MAX_DIGITS (a non-digit's: all 0, nothing)."""
    from digitlab.data import lines, negatives

    sources = [(file, text) for file, _, text in lines.training(images, labels, n, seed, boxed)]
    sources += [(image, "") for image in negatives.training(round(not_numbers * n), NOT_NUMBER_STREAM + seed)]
    strips, targets = [], []
    for source, text in sources:
        read = strip_of(source)
        if read is None:  # nothing found: reading never gets as far as the line reader
            continue
        strips.append(read)
        targets.append([int(c) + 1 for c in text] + [0] * (MAX_DIGITS - len(text)))
    return np.stack(strips), np.array(targets, np.int32)


def strip_of(source: bytes | np.ndarray) -> np.ndarray | None:
    """An image of one number as the line reader sees it in reading (every mark found, one
    strip), or None where no ink is found."""
    layout = segment.find(source, page=False)
    if layout.reason:
        return None
    return strip([g for line in layout.lines for number in line for g in number])


def examples_in_parallel(
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    jobs: int,
    not_numbers: float = 0.0,
    boxed: float = 0.0,
    seed: int = SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """examples() of `n` numbers made in chunks on `jobs` processes (writing a number and cutting
    its strip is Python, one core each): chunk k of CHUNK numbers from its own seed. The strips
    as float16, half the memory: its step near 1 (2**-11) is under one grey level of 8 bits."""
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial
    from multiprocessing import get_context

    sizes = [min(CHUNK, n - start) for start in range(0, n, CHUNK)]
    seeds = [seed + k * CHUNK_SEEDS for k in range(len(sizes))]
    write = partial(_half_examples, not_numbers=not_numbers, boxed=boxed)
    # Each chunk copied into one array as it comes, not the chunks joined at the end: that held
    # every strip twice. Room for every number and non-digit; those with no ink found are left out.
    most = sum(size + round(not_numbers * size) for size in sizes)
    x = np.empty((most, HEIGHT, WIDTH), np.float16)
    y = np.empty((most, MAX_DIGITS), np.int32)
    filled = 0
    # spawn, not fork: the parent may already hold TensorFlow's threads. The digits go to each
    # worker once, as it starts, not pickled again with every chunk (157 MB a chunk).
    context = get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_hold, initargs=(images, labels)) as pool:
        for strips, targets in pool.map(write, sizes, seeds):
            x[filled : filled + len(strips)] = strips
            y[filled : filled + len(targets)] = targets
            filled += len(strips)
    return x[:filled], y[:filled]


_DIGITS: list[np.ndarray] = []  # in a worker of examples_in_parallel: the images and labels it writes with


def _hold(images: np.ndarray, labels: np.ndarray) -> None:
    _DIGITS[:] = [images, labels]


def _half_examples(n: int, seed: int, not_numbers: float, boxed: float) -> tuple[np.ndarray, np.ndarray]:
    strips, targets = examples(*_DIGITS, n, seed, not_numbers, boxed)
    return strips.astype(np.float16), targets


def build(blocks: tuple = BLOCKS, convs: int = CONVS, context: int = CONTEXT):
    """Conv blocks (`convs` convs each, then a pool) take the strip's height to one row of steps
    (STEPS with BLOCKS); two 1-D convs of `context` channels along it give each step a view of a
    digit and a half either side; then logits for blank and 0-9."""
    import keras
    from keras import layers

    inputs = keras.Input((HEIGHT, WIDTH, 1))
    x = inputs
    for filters, pool in blocks:
        for _ in range(convs):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(pool)(x)
    rows, steps = HEIGHT // math.prod(p[0] for _, p in blocks), WIDTH // math.prod(p[1] for _, p in blocks)
    x = layers.Reshape((steps, rows * blocks[-1][0]))(x)  # (steps, features)
    for _ in range(2):
        x = layers.Conv1D(context, 5, padding="same", activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    return keras.Model(inputs, layers.Dense(11)(x))


def decode(logits: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """Greedy CTC decoding of (N, STEPS, 11) logits: for each, the digits read, each digit's
    probability (at the step where it was read), the ten digits' probabilities there (blank
    left out, renormalised) and the reading's probability (probability()).

    Several readers' (READERS, N, STEPS, 11) logits are read together: each reader's greedy
    reading is a candidate, and the one they give the most probability together (multiplied) is
    read, its probability their geometric mean, its digits' as the readers that read it alone
    say (their mean). Their steps' probabilities are not averaged: each reader says a digit at
    one step, not always the same one, and the average there is mostly blank."""
    p = step_probabilities(logits[None] if logits.ndim == 3 else logits)
    alone = [_greedy(reader) for reader in p]
    out = []
    for k in range(p.shape[1]):
        candidates = sorted({read[k][0] for read in alone})
        logs = [np.log(np.maximum(probability(p[:, k], text), 1e-300)) for text in candidates]
        best = int(np.argmax([row.sum() for row in logs]))
        text, took = candidates[best], [read[k] for read in alone if read[k][0] == candidates[best]]
        confidence = np.mean([t[1] for t in took], 0).astype(np.float32)
        out.append((text, confidence, np.mean([t[2] for t in took], 0), float(np.exp(np.mean(logs[best])))))
    return out


def step_probabilities(logits: np.ndarray) -> np.ndarray:
    """Each step's probabilities of blank and the ten digits, from the reader's logits (a softmax
    over the last axis)."""
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def _greedy(p: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """One reader's greedy readings of (N, STEPS, 11) step probabilities: the digits, each
    digit's probability at its step and the ten digits' probabilities there (decode())."""
    out = []
    for k, path in enumerate(p.argmax(-1)):
        keep = np.array([t for t in range(len(path)) if path[t] != 0 and (t == 0 or path[t] != path[t - 1])], int)
        digits = p[k, keep, 1:]
        text = "".join(str(path[t] - 1) for t in keep)
        rows = digits / np.maximum(digits.sum(-1, keepdims=True), 1e-12)
        out.append((text, p[k, keep, path[keep]].astype(np.float32), rows))
    return out


def probability(p: np.ndarray, text: str) -> float | np.ndarray:
    """The probability a reader gives `text` from one strip's (STEPS, 11) step probabilities:
    CTC's sum over every path of steps that spells it (the forward algorithm, in logs). Unlike
    the least of its digits' step probabilities, it falls where two readings share the steps,
    so it says how sure the reader is of the whole number. Several readers' (READERS, STEPS, 11)
    give each one's, in one pass."""
    logp = np.log(np.maximum(p, 1e-30))
    if not text:
        return np.exp(logp[..., 0].sum(-1))
    labels = np.array([int(c) + 1 for c in text])
    states = np.zeros(2 * len(labels) + 1, int)  # blank, digit, blank, digit, ..., blank
    states[1::2] = labels
    skip = np.zeros(len(states), bool)  # a digit reached from the one before, past no blank: not a repeat
    skip[3::2] = labels[1:] != labels[:-1]
    emit = logp[..., states]  # (..., STEPS, states)
    none = np.full((*emit.shape[:-2], 2), -np.inf)
    alpha = np.concatenate([emit[..., 0, :2], np.full((*emit.shape[:-2], len(states) - 2), -np.inf)], -1)
    for t in range(1, emit.shape[-2]):
        step = np.concatenate([none[..., :1], alpha[..., :-1]], -1)
        jump = np.where(skip, np.concatenate([none, alpha[..., :-2]], -1), -np.inf)
        alpha = np.logaddexp(np.logaddexp(alpha, step), jump) + emit[..., t, :]
    return np.exp(np.logaddexp(alpha[..., -1], alpha[..., -2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=LINES)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--not-numbers", type=float, default=NOT_NUMBERS)
    parser.add_argument("--boxed", type=float, default=BOXED)
    parser.add_argument("--seed", type=int, default=SEED, help=f"{SEED} for the first reader, {SECOND} the second")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--jobs", type=int, default=cores(), help="processes that write the numbers")
    parser.add_argument("--join", type=Path, nargs="+", help="readers trained before: write them as one to --out")
    args = parser.parse_args()
    if args.join:
        join(args.join, args.out)
        print(f"wrote {args.out}")
        return

    import keras

    from digitlab.data.mnist import load_mnist
    from digitlab.training.loop import batches

    keras.utils.set_random_seed(args.seed)
    data = load_mnist(args.data_dir)
    x, y = examples_in_parallel(
        data.x_train.reshape(-1, 28, 28), data.y_train, args.lines, args.jobs, args.not_numbers, args.boxed, args.seed
    )
    vx, vy = examples(data.x_val.reshape(-1, 28, 28), data.y_val, 1000, seed=VALIDATION)
    print(f"{len(x):,} numbers; validation {len(vx):,}")
    model = build()
    steps = args.epochs * int(np.ceil(len(x) / BATCH))
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR, steps)), loss=keras.losses.CTC()
    )
    # Batches gathered from the float16 array itself: given the array, fit() makes float32
    # tensors of it, three times its size (hundreds of thousands of strips ran out of memory).
    train = batches(x[..., None], y, BATCH, args.seed, model.optimizer.iterations)
    model.fit(train, epochs=args.epochs, validation_data=(vx[..., None], vy), shuffle=False, verbose=2)
    read = decode(model.predict(vx[..., None], verbose=0))
    truth = ["".join(str(d - 1) for d in row if d) for row in vy]
    print(f"validation numbers read exactly: {np.mean([r[0] == t for r, t in zip(read, truth, strict=True)]):.2%}")
    _export(model, args.out)
    print(f"wrote {args.out}")


def join(readers: list[Path], out: Path) -> None:
    """One ONNX file of several line readers: each reads the strip, and its logits are stacked,
    (readers, N, STEPS, 11), for decode() to read them together. One file, one session, one run."""
    import onnx
    from onnx import TensorProto, compose, helper

    from digitlab.files import write_atomic

    models = [onnx.load(path) for path in readers]
    strip_input = models[0].graph.input[0]  # every reader reads the one strip
    nodes, weights, stacked = [], [], []
    for k, model in enumerate(models):
        graph = compose.add_prefix(model, f"reader{k}/").graph
        for node in graph.node:
            node.input[:] = [strip_input.name if name == graph.input[0].name else name for name in node.input]
        nodes += [*graph.node, helper.make_node("Unsqueeze", [graph.output[0].name, "first"], [f"logits{k}"])]
        weights += graph.initializer
        stacked.append(f"logits{k}")
    first = helper.make_tensor("first", TensorProto.INT64, [1], [0])
    nodes.append(helper.make_node("Concat", stacked, ["logits"], axis=0))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [len(readers), None, None, 11])]
    graph = helper.make_graph(nodes, "line_readers", [strip_input], outputs, [*weights, first])
    joined = helper.make_model(graph, opset_imports=models[0].opset_import, ir_version=models[0].ir_version)
    onnx.checker.check_model(joined)
    write_atomic(out, lambda tmp: onnx.save(joined, tmp))


def _export(model, out: Path) -> None:
    from digitlab.files import write_atomic
    from digitlab.nn.backend import export_onnx, tf

    signature = [tf.TensorSpec((None, HEIGHT, WIDTH, 1), tf.float32, name="strip")]
    write_atomic(out, lambda tmp: export_onnx(model, tmp, signature))


if __name__ == "__main__":
    main()
