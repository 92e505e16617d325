"""digitlab: train, compare, evaluate and use handwritten-digit classifiers on MNIST.

The Python API, for notebooks and scripts:

    import digitlab
    data = digitlab.load_mnist()                       # 50k/10k/10k split
    folder = digitlab.train(digitlab.TrainConfig(model="cnn"), data=data)
    run = digitlab.Run.open(folder)                    # its record: config, data used, timings
    metrics = digitlab.evaluate(run, data=data)        # also done by train()
"""

__version__ = "0.3.0"

from .config import TrainConfig
from .data import load_mnist
from .errors import DigitlabError
from .runs import Run

__all__ = ["DigitlabError", "Run", "TrainConfig", "evaluate", "load_mnist", "train"]


def __getattr__(name: str):
    # train/evaluate import Keras (seconds); load them only when asked for.
    if name == "train":
        from .training import train

        return train
    if name == "evaluate":
        from .evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'digitlab' has no attribute {name!r}")
