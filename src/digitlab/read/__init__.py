"""Reading images with a model: `load` any model by its path, then `predict_image` (a digit or a
number from an image file or bytes) or `read` (answers for 28x28 arrays)."""

from digitlab.io.load import load
from digitlab.read.predict import predict_image, read

__all__ = ["load", "predict_image", "read"]
