"""The model zoo. Each model is a function returning an uncompiled Keras model that maps
(N, 28, 28, 1) float images in [0, 1] to (N, 10) softmax probabilities.

Adding a model is a few lines: write the function, decorate it with @register. Its
docstring's first line is its description in `digitlab models`; its keyword arguments are
what `digitlab tune` searches, over the `space` given to @register (an Optuna trial in,
the model's keyword arguments out).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from digitlab.errors import DigitlabError, suggest


class _Keras:
    """keras, or one of its modules, imported on first use: `digitlab models`, `--help` and
    option checks need the zoo's names and docstrings, not TensorFlow's seconds of start-up."""

    def __init__(self, *path: str):
        self._path = path

    def __getattr__(self, name: str):
        from digitlab.nn.backend import keras

        target = keras
        for part in self._path:
            target = getattr(target, part)
        return getattr(target, name)


keras, layers = _Keras(), _Keras("layers")


def __getattr__(name: str):
    if name in ("PatchPCA", "adapt"):  # they live in pca.py, which needs Keras at import
        from digitlab.nn import pca

        return getattr(pca, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10

MODELS: dict[str, Callable[..., keras.Model]] = {}
SPACES: dict[str, Callable] = {}  # model name -> trial -> model keyword arguments


def register(build: Callable[..., keras.Model] | None = None, *, space: Callable | None = None):
    def add(build: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        name = build.__name__.replace("_", "-")
        MODELS[name] = build
        if space is not None:
            SPACES[name] = space
        return build

    return add(build) if build is not None else add


def describe(name: str) -> str:
    return (MODELS[name].__doc__ or "").strip().splitlines()[0]


def check_name(name: str) -> None:
    if name not in MODELS:
        raise DigitlabError(f"unknown model '{name}'; {suggest(name, list(MODELS), 'digitlab models')}")


def build(name: str, **params) -> keras.Model:
    check_name(name)
    model = MODELS[name](**params)
    model.name = name
    return model


def load(path: str | Path) -> keras.Model:
    """A saved .keras model, in Keras' safe mode (no code from the file runs). Loading from here
    registers digitlab's own layers (PatchPCA) first; a bad or outdated file is one clear error."""
    from digitlab.nn import pca  # noqa: F401  (importing it registers PatchPCA with Keras)

    try:
        return keras.saving.load_model(path)
    except Exception as e:  # Keras raises many kinds for a bad file
        raise DigitlabError(
            f"cannot load Keras model {path}: {str(e).strip().splitlines()[0]}; "
            "retrain it with this digitlab version (`digitlab train`) or give another model"
        ) from None


def _classifier(*body: layers.Layer) -> keras.Model:
    # The softmax stays float32 under mixed precision: bf16 probabilities would round away
    # the confidence figures that calibration and declining rely on.
    head = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")
    return keras.Sequential([keras.Input(INPUT_SHAPE), *body, head])


def _conv_bn(filters: int, size: int = 3, padding: str = "valid", strides: int = 1) -> list[layers.Layer]:
    # No bias before batch norm: BN's own shift makes it redundant. Momentum 0.9 rather than
    # Keras' 0.99 lets the moving statistics settle in tens of steps, not hundreds: short and
    # small-subset runs would otherwise be evaluated with half-initialised statistics.
    return [
        layers.Conv2D(filters, size, strides=strides, padding=padding, use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
    ]


@register
def logreg() -> keras.Model:
    """Softmax regression: the linear baseline every other model must beat (~92.5%)."""
    return _classifier(layers.Flatten())


@register(space=lambda t: {"width": t.suggest_int("width", 32, 512, log=True)})
def mlp(width: int = 128) -> keras.Model:
    """The classic tutorial net: Flatten, Dense 128 relu, Dense 64 relu, softmax (~98%)."""
    return _classifier(
        layers.Flatten(), layers.Dense(width, activation="relu"), layers.Dense(width // 2, activation="relu")
    )


@register(
    space=lambda t: {"width": t.suggest_int("width", 32, 512, log=True), "rate": t.suggest_float("rate", 0.0, 0.5)}
)
def mlp_dropout(width: int = 128, rate: float = 0.2) -> keras.Model:
    """The classic net with dropout after each hidden layer, against its overfitting."""
    return _classifier(
        layers.Flatten(),
        layers.Dense(width, activation="relu"),
        layers.Dropout(rate),
        layers.Dense(width // 2, activation="relu"),
        layers.Dropout(rate),
    )


@register(space=lambda t: {"width": t.suggest_int("width", 32, 512, log=True)})
def mlp_bn(width: int = 128) -> keras.Model:
    """The classic net with batch norm before each ReLU: faster, steadier training."""
    return _classifier(
        layers.Flatten(),
        layers.Dense(width, use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
        layers.Dense(width // 2, use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
    )


@register
def lenet5() -> keras.Model:
    """LeNet-5 (LeCun et al., 1998): tanh convs 6 and 16 at 5x5, average pooling, 120-84 dense."""
    # The 32x32 input of the paper becomes 28x28 with 'same' padding in the first conv.
    return _classifier(
        layers.Conv2D(6, 5, padding="same", activation="tanh"),
        layers.AveragePooling2D(2),
        layers.Conv2D(16, 5, activation="tanh"),
        layers.AveragePooling2D(2),
        layers.Flatten(),
        layers.Dense(120, activation="tanh"),
        layers.Dense(84, activation="tanh"),
    )


@register(
    space=lambda t: {
        "width": t.suggest_int("width", 16, 64, step=8),
        "dropout": t.suggest_float("dropout", 0.0, 0.6),
    }
)
def cnn(width: int = 32, dropout: float = 0.4) -> keras.Model:
    """Compact convnet: two conv+BN+pool stages, dropout, softmax (99.2%, ~12 s/epoch on 2 cores)."""
    # Valid padding and early pooling keep it cheap on a CPU: about 5 MFLOPs per image.
    return _classifier(
        *_conv_bn(width),
        layers.MaxPooling2D(),
        *_conv_bn(2 * width),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dropout(dropout),
    )


@register(space=lambda t: {"width": t.suggest_int("width", 8, 32, step=4)})
def fast(width: int = 16) -> keras.Model:
    """Speed recipe: a fixed PCA 5x5 conv+pool, a trained 5x5 conv+pool; 99% in 2 epochs."""
    from digitlab.nn.pca import PatchPCA

    return _classifier(
        PatchPCA(width // 2),
        layers.Conv2D(2 * width, 5, use_bias=False),
        layers.MaxPooling2D(),  # before batch norm and ReLU: they then touch 4x fewer values
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
        layers.Flatten(),
    )


def flops_per_image(model: keras.Model, training: bool = False) -> int:
    """FLOPs for one image (2 per multiply-add), counted over the conv and dense layers, which
    hold all but a sliver of the arithmetic. Forward only, or with training=True a training
    step's: a trained layer 3x (forward, input gradient, weight gradient), the first trained
    layer 2x (nothing before it learns, so no input gradient), a frozen one before it 1x."""
    from digitlab.nn.pca import PatchPCA

    total, learning = 0, False
    for layer in model.layers:
        # A conv: every kernel tap at every output position. PatchPCA's folded conv runs at its
        # (pooled) output positions, its zero taps included: that is what the CPU computes.
        if isinstance(layer, (layers.Conv2D, PatchPCA)):
            h, w, _ = layer.output.shape[1:]
            flops = 2 * h * w * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, layers.Dense):
            flops = 2 * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
        else:
            flops = 0
        trained = bool(layer.trainable_weights)
        total += flops * (1 if not (training and trained) else 3 if learning else 2)
        learning = learning or trained
    return int(total)


@register(
    space=lambda t: {"width": t.suggest_int("width", 16, 64, step=8), "dropout": t.suggest_float("dropout", 0, 0.5)}
)
def cnn_deep(width: int = 32, dropout: float = 0.3) -> keras.Model:
    """Deeper batch-normalised CNN: three stages of 3x3 conv pairs (32-64-128), global pooling."""
    return _classifier(
        *_conv_bn(width, padding="same"),
        *_conv_bn(width, padding="same"),
        layers.MaxPooling2D(),
        *_conv_bn(2 * width, padding="same"),
        *_conv_bn(2 * width, padding="same"),
        layers.MaxPooling2D(),
        *_conv_bn(4 * width, padding="same"),
        *_conv_bn(4 * width, padding="same"),
        layers.GlobalAveragePooling2D(),
        layers.Dropout(dropout),
    )


@register(
    space=lambda t: {"width": t.suggest_int("width", 16, 64, step=8), "dropout": t.suggest_float("dropout", 0, 0.5)}
)
def allconv(width: int = 32, dropout: float = 0.4) -> keras.Model:
    """All-conv net (after Deotte's Kaggle MNIST model): 5x5 stride-2 convs instead of pooling."""
    # Valid 3x3 convs shrink 28 -> 24 and 12 -> 8 as they go; the learned stride-2 downsampling
    # keeps what max-pooling throws away. Half of cnn-deep's FLOPs: 1.8x the epochs per hour here.
    return _classifier(
        *_conv_bn(width),
        *_conv_bn(width),
        *_conv_bn(width, 5, strides=2, padding="same"),
        layers.Dropout(dropout),
        *_conv_bn(2 * width),
        *_conv_bn(2 * width),
        *_conv_bn(2 * width, 5, strides=2, padding="same"),
        layers.Dropout(dropout),
        *_conv_bn(4 * width, 4),
        layers.Flatten(),
        layers.Dropout(dropout),
    )


@register(space=lambda t: {"width": t.suggest_int("width", 16, 64, step=8)})
def resnet(width: int = 32) -> keras.Model:
    """Small pre-activation ResNet: 3 stages of 2 residual blocks (28, 14, 7 px), global pooling."""
    inputs = keras.Input(INPUT_SHAPE)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False)(inputs)
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
            if stride != 1 or x.shape[-1] != filters:  # project the shortcut when the shape changes
                shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(y)
            y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(y)
            y = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(y))
            y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
            x = layers.Add()([shortcut, y])
    x = layers.GlobalAveragePooling2D()(layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x)))
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)
