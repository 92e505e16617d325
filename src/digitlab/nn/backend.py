"""Keras on TensorFlow, imported once and quietly, leaving os.environ as it was.

TensorFlow 2.21 prints C++ start-up lines ("All log messages before absl::InitializeLog()...",
oneDNN notices) before its logging is configured, so TF_CPP_MIN_LOG_LEVEL cannot silence them
(an abseil bug). We hold stderr's file descriptor shut while TensorFlow loads, unless the user
asked for its logs with TF_CPP_MIN_LOG_LEVEL=0 or 1. Python errors still surface as usual.
"""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from digitlab.environment import temporarily

# Keras 3 on TensorFlow, without TensorFlow's C++ chatter on stderr. Level 3, not 2: TF 2.21
# logs a harmless ERROR line on every fit (its tf.data op wrappers are newer than its kernels).
# Set TF_CPP_MIN_LOG_LEVEL=0 to see everything. Each applies only where the user set nothing.
DEFAULTS = {"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}


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


# Keras reads KERAS_BACKEND when it is imported; TensorFlow reads TF_CPP_MIN_LOG_LEVEL once, while
# it loads (its C++ logging keeps the level for the life of the process: fit stays quiet after).
with temporarily(DEFAULTS, keep_set=True):
    _import_tensorflow_quietly()
    import keras
    import tensorflow as tf


@contextlib.contextmanager
def tf_errors_only() -> Iterator[None]:
    """TensorFlow's Python logger at ERROR for the block, as it was after: training several models
    in one process (compare, tune) makes it warn of retracing, which is expected there."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def export_onnx(model, path: str | Path, signature: list) -> None:
    """`model` as ONNX at `path`, its inputs as `signature` (tf.TensorSpecs) say."""
    import warnings

    with warnings.catch_warnings():  # Keras' tf2onnx shim trips numpy's np.object notice; not ours to fix
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(path), format="onnx", verbose=False, input_signature=signature)


__all__ = ["export_onnx", "keras", "tf", "tf_errors_only"]
