"""Reading images with a model: `load` any model by its path, then `predict_image` (a digit or a
number from an image file or bytes), `read_numbers` (every number on a page) or `read` (answers
for 28x28 arrays)."""

from digitlab.io.load import load
from digitlab.read.number import read_numbers
from digitlab.read.predict import predict_image, read

__all__ = ["load", "predict_image", "read", "read_numbers"]
