"""The model zoo. Each model is a function returning an uncompiled Keras model that maps
(N, 28, 28, 1) float images in [0, 1] to (N, 10) softmax probabilities.

Adding a model is a few lines: write the function, decorate it with @register. Its
docstring's first line is its description in `digitlab models`; its keyword arguments are
what `digitlab tune` searches, over the `space` given to @register (an Optuna trial in,
the model's keyword arguments out).
"""

from __future__ import annotations

from collections.abc import Callable

from .backend import keras
from .errors import DigitlabError

layers = keras.layers

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
        raise DigitlabError(f"unknown model '{name}'; choose one of: {', '.join(MODELS)}")


def build(name: str, **params) -> keras.Model:
    check_name(name)
    model = MODELS[name](**params)
    model.name = name
    return model


def _classifier(*body: layers.Layer) -> keras.Model:
    # The softmax stays float32 under mixed precision: bf16 probabilities would round away
    # the confidence figures that calibration and declining rely on.
    head = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32")
    return keras.Sequential([keras.Input(INPUT_SHAPE), *body, head])


def _conv_bn(filters: int, size: int = 3, padding: str = "valid") -> list[layers.Layer]:
    # No bias before batch norm: BN's own shift makes it redundant. Momentum 0.9 rather than
    # Keras' 0.99 lets the moving statistics settle in tens of steps, not hundreds: short and
    # small-subset runs would otherwise be evaluated with half-initialised statistics.
    return [
        layers.Conv2D(filters, size, padding=padding, use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
    ]


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
    """Speed recipe: two 5x5 conv+BN+pool stages, 2 MFLOPs/image; 99% in 2 epochs (see RECIPES)."""
    # 5x5 kernels without padding shrink 28 -> 24 -> 12 -> 8 -> 4: the most receptive field per FLOP.
    return _classifier(
        *_conv_bn(width, 5),
        layers.MaxPooling2D(),
        *_conv_bn(2 * width, 5),
        layers.MaxPooling2D(),
        layers.Flatten(),
    )


def flops_per_image(model: keras.Model) -> int:
    """Forward-pass FLOPs for one image (2 per multiply-add), counted over the conv and dense
    layers, which hold all but a sliver of the arithmetic; a training step costs about 3x."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            h, w, c_out = layer.output.shape[1:]
            kh, kw, c_in, _ = layer.kernel.shape
            total += 2 * h * w * c_out * kh * kw * c_in
        elif isinstance(layer, layers.Dense):
            total += 2 * int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
    return int(total)
