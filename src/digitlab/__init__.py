"""digitlab: train, compare, evaluate and use handwritten-digit classifiers on MNIST.

The Python API, for notebooks and scripts:

    import digitlab
    data = digitlab.load_mnist()                       # 50k/10k/10k split
    folder = digitlab.train(digitlab.TrainConfig(model="cnn"), data=data)
    run = digitlab.Run.open(folder)                    # its record: config, data used, timings
    metrics = digitlab.evaluate(run, data=data)        # also done by train()

The package follows the data's path, each subpackage importing only those above it here:
data/ (MNIST and generated images) -> image/ (a photo to MNIST's form) -> nn/ (Keras layers and
the model zoo) -> training/ (config, loop, run folders) -> io/ (model files, calibration, export)
-> read/ (answers from images) -> robustness/ -> evaluation/ (metrics, report) -> experiments/
(train-then-evaluate, compare, ensemble, tune) -> serve/ (the web server) -> cli/.
"""

from digitlab.data.mnist import load_mnist
from digitlab.errors import DigitlabError
from digitlab.training.config import TrainConfig
from digitlab.training.runs import Run
from digitlab.version import __version__

__all__ = ["DigitlabError", "Run", "TrainConfig", "__version__", "evaluate", "load_mnist", "train"]


def __getattr__(name: str):
    # train/evaluate import Keras (seconds); load them only when asked for.
    if name == "train":
        from digitlab.experiments.pipeline import train

        return train
    if name == "evaluate":
        from digitlab.evaluation.evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'digitlab' has no attribute {name!r}")
