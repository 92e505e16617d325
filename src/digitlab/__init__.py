"""digitlab: train, compare, evaluate and use handwritten-digit classifiers on MNIST.

The Python API, for notebooks and scripts:

    import digitlab
    data = digitlab.load_mnist()                       # 50k/10k/10k split
    run = digitlab.train(digitlab.TrainConfig(model="cnn"), data=data)
    metrics = digitlab.evaluate(run, data=data)        # also done by train()
"""

import os

__version__ = "0.2.0"

# Keras 3 on TensorFlow, without TensorFlow's C++ chatter on stderr. Level 3, not 2: TF 2.21
# logs a harmless ERROR line on every fit (its tf.data op wrappers are newer than its kernels).
# Set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .config import TrainConfig
from .data import load_mnist
from .errors import DigitlabError

__all__ = ["DigitlabError", "TrainConfig", "evaluate", "load_mnist", "train"]


def __getattr__(name: str):
    # train/evaluate import Keras (seconds); load them only when asked for.
    if name == "train":
        from .training import train

        return train
    if name == "evaluate":
        from .evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'digitlab' has no attribute {name!r}")
