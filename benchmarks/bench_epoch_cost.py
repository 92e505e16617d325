"""What an epoch costs, and what makes it cheaper: XLA, larger batches, channels-first, in one run.

    python benchmarks/bench_epoch_cost.py [--steps 60] [--models fast allconv]

For each model as its recipe trains it (allconv behind its augmentation and warp), times
`--steps` training steps after two untimed ones (tracing and warm-up), per image, against the
recipe's own setting measured in the same process: batch 128, float32, channels-last, no XLA.
Only time is measured here; what a larger batch does to accuracy is the frontier's question.
"""

from __future__ import annotations

import argparse
import sys
import time

from common import DATA_DIR, ROOT, describe_machine

sys.path.insert(0, str(ROOT / "src"))


def step_time(data, model_name: str, batch: int, steps: int, jit: bool = False) -> float:
    """Seconds per image over `steps` training steps of the recipe's trainer."""
    from digitlab.nn.backend import keras
    from digitlab.nn.models import build
    from digitlab.nn.pca import adapt
    from digitlab.training.augment import trainer_for
    from digitlab.training.config import TrainConfig

    config = TrainConfig.for_model(model_name, batch_size=batch)
    model = build(model_name)
    adapt(model, data.x_train, 0)
    trainer = trainer_for(model, config)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", jit_compile=jit)
    x, y = data.x_train[: batch * (steps + 2)], data.y_train[: batch * (steps + 2)]
    trainer.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, verbose=0)  # traced, warmed up
    t0 = time.perf_counter()
    trainer.fit(x[2 * batch :], y[2 * batch :], batch_size=batch, verbose=0)
    return (time.perf_counter() - t0) / (steps * batch)


def channels_first() -> str:
    """Whether TensorFlow convolves channels-first (NCHW) tensors on this CPU at all."""
    from digitlab.nn.backend import tf

    try:
        tf.nn.conv2d(tf.zeros((8, 32, 28, 28)), tf.zeros((3, 3, 32, 32)), 1, "VALID", data_format="NCHW")
    except Exception as e:  # the answer, not a crash
        return "fails: " + str(e).split("} ", 1)[-1].split(". The op")[0]
    return "runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--models", nargs="*", default=["fast", "allconv"])
    args = parser.parse_args()
    from digitlab.data.mnist import load_mnist

    data = load_mnist(DATA_DIR)  # once: every variant trains on the same first images
    print(f"machine: {describe_machine()}")
    variants = {
        "recipe (batch 128)": {"batch": 128},
        "XLA jit_compile": {"batch": 128, "jit": True},
        "batch 256": {"batch": 256},
        "batch 512": {"batch": 512},
    }
    print(f"channels-first (NCHW) convolution on this CPU: {channels_first()}")
    print("| model | variant | ms per 1,000 images | epoch of 50,000, s | vs the recipe |")
    print("|---|---|---|---|---|")
    for name in args.models:
        base = None
        for label, kwargs in variants.items():
            try:
                per_image = step_time(data, name, steps=args.steps, **kwargs)
            except Exception as e:  # a variant this backend cannot run is a finding, not a crash
                print(f"| {name} | {label} | fails: {type(e).__name__}: {str(e).splitlines()[0][:90]} | | |")
                continue
            base = base or per_image
            print(
                f"| {name} | {label} | {1000 * per_image * 1000:.0f} | {50_000 * per_image:.1f} | "
                f"{base / per_image:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
