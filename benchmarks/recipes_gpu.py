"""Which training tricks move `allconv`'s validation accuracy: more epochs, EMA, weight decay,
label smoothing. Validation only: the test split is never read here.

    python benchmarks/recipes_gpu.py base15,e23,ema15 0,1,2 [--data-dir DIR] > results.jsonl

It runs digitlab's own `allconv` and `Distortion` augmentation (the recipe: one-pass affine
distortion and elastic warp, Adam, cosine decay, batch 128) under Keras' JAX backend. Why JAX:
so that it runs on the GPU machine lent to some sessions, which has JAX but no TensorFlow, and
a variant takes ~25 s there instead of ~20 min on 2 CPU cores. A guide to what is worth a CPU
run, not a figure to quote as digitlab's: CPU runs use TensorFlow (docs/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

os.environ["KERAS_BACKEND"] = "jax"
import keras

# digitlab.backend imports TensorFlow; the model and the augmentation only need keras.ops.
sys.modules["digitlab.backend"] = types.SimpleNamespace(keras=keras, tf=None)
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import numpy as np  # noqa: E402
from common import DATA_DIR  # noqa: E402

from digitlab.data.mnist import load_mnist  # noqa: E402
from digitlab.nn.models import build  # noqa: E402
from digitlab.training.augment import augmentation  # noqa: E402
from digitlab.training.config import TrainConfig  # noqa: E402
from digitlab.training.loop import compile_model, targets  # noqa: E402

VARIANTS = {  # each changes one thing of allconv's recipe at 15 epochs (no decay, EMA or smoothing)
    "base15": {},
    "ema15": {"ema": 0.999},  # weights averaged over the last ~1000 steps (~2.5 epochs)
    "ls15": {"label_smoothing": 0.1},
    "wd15": {"weight_decay": 5e-4, "lr": 2e-3},  # AdamW; a higher peak, as decay restrains the weights
    "e20": {"epochs": 20},
    "e23": {"epochs": 23},  # what 30 minutes of the 2-core CPU hold (~75 s per epoch)
    "e45": {"epochs": 45},  # where more epochs stop paying
    "ema23": {"epochs": 23, "ema": 0.999},
    "wd23": {"epochs": 23, "weight_decay": 5e-4, "lr": 2e-3},
    "w24e30": {"epochs": 30, "model_params": {"width": 24}},  # narrower, more epochs: ~e20's CPU time
}


def run(data, seed: int, ema: float = 0.0, **changes) -> dict:
    config = TrainConfig.for_model("allconv", seed=seed, **{"epochs": 15, **changes})
    keras.utils.set_random_seed(seed)
    model = build("allconv", **config.model_params)
    trainer = keras.Sequential([keras.Input((28, 28, 1)), augmentation(config.augment, config.elastic), model])
    compile_model(trainer, config, -(-len(data.y_train) // config.batch_size))  # digitlab's own optimizer and loss
    # EMA is no digitlab switch (docs/RESULTS.md says why): set on the optimizer before it builds.
    trainer.optimizer.use_ema, trainer.optimizer.ema_momentum = ema > 0, ema or 0.99
    t0 = time.perf_counter()
    history = trainer.fit(
        data.x_train,
        targets(data.y_train, config),
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(data.x_val, targets(data.y_val, config)),  # with EMA: the averaged weights
        callbacks=[keras.callbacks.SwapEMAWeights()] if ema else [],
        verbose=0,
    ).history
    accuracy, losses = history["val_accuracy"], history["val_loss"]
    best = int(np.argmin(losses))  # digitlab keeps the epoch of least validation loss
    return {
        "seed": seed,
        "val_final": accuracy[-1],
        "val_at_best_loss": accuracy[best],
        "best_epoch": best + 1,
        "train_s": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("seeds", help="comma-separated, e.g. 0,1,2")
    parser.add_argument("--data-dir", default=DATA_DIR)
    args = parser.parse_args()
    data = load_mnist(args.data_dir)
    print(f"backend {keras.backend.backend()}, devices: {keras.distribution.list_devices()}", file=sys.stderr)
    for seed in map(int, args.seeds.split(",")):
        for name in args.variants.split(","):
            print(json.dumps({"variant": name, **run(data, seed, **VARIANTS[name])}), flush=True)


if __name__ == "__main__":
    main()
