"""Keras on TensorFlow, imported once and quietly.

TensorFlow 2.21 prints C++ start-up lines ("All log messages before absl::InitializeLog()...",
oneDNN notices) before its logging is configured, so TF_CPP_MIN_LOG_LEVEL cannot silence them
(an abseil bug). We hold stderr's file descriptor shut while TensorFlow loads, unless the user
asked for its logs with TF_CPP_MIN_LOG_LEVEL=0 or 1. Python errors still surface as usual.
"""

import os

# Keras 3 on TensorFlow, without TensorFlow's C++ chatter on stderr. Level 3, not 2: TF 2.21
# logs a harmless ERROR line on every fit (its tf.data op wrappers are newer than its kernels).
# Set TF_CPP_MIN_LOG_LEVEL=0 to see everything. Set here, just before Keras is imported, not
# when digitlab is: a notebook that imports digitlab keeps its own settings until it trains.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _import_tensorflow_quietly() -> None:
    if int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) < 2:
        import tensorflow

        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

if int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) >= 2:
    tf.get_logger().setLevel("ERROR")  # e.g. retracing notices when tuning builds a model per trial

# Saved models may hold digitlab's own layers (pca.PatchPCA): register them before any load.
from . import pca  # noqa: E402, F401  (pca imports `keras` from here: defined above)

__all__ = ["keras", "tf"]
