"""Models as the tutorials leave them, trained here with Keras on real MNIST: digitlab's foreign
models (tests/test_foreign.py, tests/test_foreign_evaluate.py). Session fixtures: built once."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

TRAIN = 8000  # one epoch on these reads ~90% of digits: enough to tell every scaling apart


@pytest.fixture(scope="session")
def built(mnist, tmp_path_factory):
    """name -> (path, what must be detected, the raw Keras model, how to feed it by hand)."""
    from digitlab.nn.backend import keras, tf

    layers = keras.layers
    folder = tmp_path_factory.mktemp("foreign")
    keras.utils.set_random_seed(0)
    x, y = mnist.x_train[:TRAIN], mnist.y_train[:TRAIN]

    def fit(inputs, body, feed, logits=False):
        model = keras.Sequential([keras.Input(inputs), *body, layers.Dense(10, None if logits else "softmax")])
        # Compiled and fitted, as the tutorials leave them: loading must not warn about the optimizer.
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
        model.compile("adam", loss, metrics=["accuracy"])
        model.fit(feed(x), y, epochs=1, batch_size=64, verbose=0)
        return model

    flat = [layers.Flatten(), layers.Dense(128, "relu"), layers.Dense(64, "relu")]
    mlp = fit((28, 28), flat, lambda v: v[..., 0])
    mlp.save(folder / "mnist_model.h5")
    mlp.save(folder / "mnist_model.keras")
    cnn = fit(
        (28, 28, 1), [layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(), layers.Flatten()], lambda v: v
    )
    cnn.export(str(folder / "cnn_savedmodel"), verbose=False)
    mlp255 = fit((28, 28), [layers.Flatten(), layers.Dense(64, "relu")], lambda v: v[..., 0] * 255)
    mlp255.save(folder / "pixels255.keras")
    logits = fit((784,), [layers.Dense(64, "relu")], lambda v: v.reshape(-1, 784), logits=True)
    logits.save(folder / "flat_logits.h5")
    # As PyTorch exports: channels first, logits, a batch fixed at one image.
    channels_first = lambda v: v.reshape(-1, 1, 28, 28)  # noqa: E731
    torch = fit((1, 28, 28), [layers.Flatten(), layers.Dense(64, "relu")], channels_first, logits=True)
    signature = [tf.TensorSpec((1, 1, 28, 28), tf.float32)]
    with warnings.catch_warnings():  # Keras' tf2onnx shim trips numpy's np.object notice
        warnings.simplefilter("ignore", FutureWarning)
        torch.export(str(folder / "torch_like.onnx"), format="onnx", verbose=False, input_signature=signature)

    def expect(fmt, layout, pixels, logits):
        return {"format": fmt, "layout": list(layout), "pixels": pixels, "logits": logits}

    return {
        "h5": (folder / "mnist_model.h5", expect("h5", (28, 28), "1", False), mlp),
        "keras": (folder / "mnist_model.keras", expect("keras", (28, 28), "1", False), mlp),
        "savedmodel": (folder / "cnn_savedmodel", expect("savedmodel", (28, 28, 1), "1", False), cnn),
        "255": (folder / "pixels255.keras", expect("keras", (28, 28), "255", False), mlp255),
        "logits": (folder / "flat_logits.h5", expect("h5", (784,), "1", True), logits),
        "onnx": (folder / "torch_like.onnx", expect("onnx", (1, 28, 28), "1", True), torch),
    }


def by_hand(built, name, images, pixels=None):
    """The foreign model's probabilities, fed as its author would feed it: the oracle."""
    from scipy.special import softmax

    _, expected, model = built[name]
    scale = 255.0 if (pixels or expected["pixels"]) == "255" else 1.0
    out = model.predict((images * scale).reshape(-1, *expected["layout"]), verbose=0)
    return softmax(out, axis=1) if expected["logits"] else out


@pytest.fixture(scope="session")
def digit_png(mnist, tmp_path_factory):
    """The first 7 of the test split, enlarged and dark on light, as a user's scan would be."""
    path = tmp_path_factory.mktemp("png") / "seven.png"
    i = int(np.flatnonzero(mnist.y_test == 7)[0])
    Image.fromarray(((1 - np.kron(mnist.x_test[i].squeeze(), np.ones((6, 6)))) * 255).astype(np.uint8)).save(path)
    return path
