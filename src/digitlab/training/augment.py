"""Training-time augmentation: a Keras layer that runs inside the model, per batch, in the graph.

Active in training only: validation and test see clean digits, and the saved model has none
of them (training wraps the model; see training.train).
"""

from __future__ import annotations

import numpy as np

from digitlab.nn.backend import keras
from digitlab.training.config import TrainConfig

ops = keras.ops

# Ciresan et al. (2010), "Deep, big, simple neural nets for handwritten digit recognition":
# a field smoothed at sigma = 5-6 pixels, scaled by alpha = 36-38, on top of affine distortions.
# Strength 1 is sigma 6, alpha 36: pixels move ~0.9 px (std, per axis). Simard et al.'s (2003)
# sigma 4, alpha 34 bends strokes 2.25x as sharply: an `allconv` trained with affine
# augmentation (99.7% on clean validation digits) read 97.1% of digits warped that way, 99.5%
# at sigma 6; trained with it, `allconv` sat at 96-98% on validation after 8 epochs (99.4% without).
ALPHA, SIGMA = 36.0, 6.0


def augmentation(strength: float, elastic: float = 0.0) -> Distortion:
    """Random small rotations, shifts and zoom (strength 1: up to 10 degrees, 10%), and an
    elastic warp of strength `elastic`, all in one resampling of each image."""
    return Distortion(10 * strength, 0.1 * strength, 0.1 * strength, ALPHA * elastic, SIGMA, name="augmentation")


def trainer_for(model: keras.Model, config: TrainConfig) -> keras.Model:
    """`model` (a TrainConfig's) behind the training-only augmentation layers it asks for, or
    `model` itself without any. Only `model` is saved: inference never sees these layers."""
    layers = []
    if config.augment or config.elastic:
        layers.append(augmentation(config.augment, config.elastic))
    if config.clutter:
        layers.append(Clutter(config.clutter, name="clutter"))
    if config.real_world:
        layers.append(RealWorld(config.real_world, name="real_world"))
    return keras.Sequential([keras.Input(model.input_shape[1:]), *layers, model]) if layers else model


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian, cut at 3 sigma (scipy.ndimage's gaussian_filter with truncate=3)."""
    radius = int(3 * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return (taps / taps.sum()).astype("float32")


def smooth(field, sigma: float):
    """Gaussian blur of each channel of (n, h, w, c), zeros beyond the edge. As two products
    with banded matrices, G_h @ field @ G_w.T: 9x faster here than TensorFlow's depthwise conv."""
    taps = gaussian_kernel(sigma)
    radius = len(taps) // 2

    def band(size: int) -> np.ndarray:
        offsets = np.arange(size)[None, :] - np.arange(size)[:, None]  # j - i
        return np.where(np.abs(offsets) <= radius, taps[np.clip(offsets + radius, 0, 2 * radius)], 0)

    h, w = field.shape[1], field.shape[2]
    return ops.einsum("ij,njkc,lk->nilc", band(h).astype("float32"), field, band(w).astype("float32"))


def warp(images, rows, cols):
    """Sample single-channel images (n, h, w, 1) at positions (n, h, w) with bilinear
    interpolation; outside the image reads 0 (scipy.ndimage's map_coordinates, order=1,
    mode='grid-constant')."""
    h, w = images.shape[1], images.shape[2]
    # A zero border makes every read in range: positions are clipped onto it, and a position
    # between the border and the edge pixels blends towards black, as a pen stroke would. The
    # second border row and column below and right are for the corners a position on the first reads.
    padded = ops.pad(images[..., 0], [[0, 0], [1, 2], [1, 2]])
    flat = ops.reshape(padded, [-1])
    rows = ops.clip(rows + 1, 0, h + 1)
    cols = ops.clip(cols + 1, 0, w + 1)
    r0, c0 = ops.floor(rows), ops.floor(cols)
    dr, dc = rows - r0, cols - c0
    stride = w + 3  # padded row length
    base = ops.reshape(ops.arange(ops.shape(images)[0]) * (h + 3) * stride, [-1, 1, 1])
    corner = base + ops.cast(r0, "int32") * stride + ops.cast(c0, "int32")

    def read(offset):
        return ops.take(flat, corner + offset)

    top = (1 - dc) * read(0) + dc * read(1)
    bottom = (1 - dc) * read(stride) + dc * read(stride + 1)
    return ops.expand_dims((1 - dr) * top + dr * bottom, -1)


@keras.saving.register_keras_serializable(package="digitlab")
class Distortion(keras.layers.Layer):
    """A random geometric distortion per image: rotation, zoom, shift and an elastic warp (every
    pixel moved by uniform noise in [-1, 1], blurred by a Gaussian of `sigma` pixels, scaled by
    `alpha`; the blur makes neighbours move together, so strokes bend instead of breaking).

    All of it is one sampling position per output pixel, so each image is interpolated once.
    Keras' RandomRotation, RandomTranslation and RandomZoom each resample: chained, they blur
    the strokes (ink pixels above 0.9: 48% in MNIST, 12% after the three, 27% after one pass),
    so the network trains on softer digits than it is tested on. And Keras 3.15's
    RandomElasticTransform swaps images across the batch inside fit() (tests/test_augment.py
    watches for a fix)."""

    def __init__(
        self,
        rotation: float = 10.0,  # degrees, either way
        zoom: float = 0.1,  # scale in [1 - zoom, 1 + zoom]
        shift: float = 0.1,  # share of the image size, either way, per axis
        alpha: float = 0.0,  # elastic warp: 0 for none
        sigma: float = SIGMA,
        seed: int | None = None,
        **kwargs,
    ):
        # float32 even under mixed precision: bf16 would round sample positions to 1/8 pixel.
        super().__init__(**{"dtype": "float32", **kwargs})
        self.rotation, self.zoom, self.shift = rotation, zoom, shift
        self.alpha, self.sigma, self.seed = alpha, sigma, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        n, h, w = ops.shape(images)[0], images.shape[1], images.shape[2]
        angle, zoom, dy, dx = ops.unstack(keras.random.uniform((4, n, 1, 1), -1.0, 1.0, seed=self.seed_generator))
        angle = angle * self.rotation * np.pi / 180
        scale = 1 + zoom * self.zoom
        # Each output pixel reads the input at the inverse transform of its position: rotated
        # and scaled about the centre, then shifted.
        y = ops.reshape(ops.arange(h, dtype="float32") - (h - 1) / 2, [1, h, 1])
        x = ops.reshape(ops.arange(w, dtype="float32") - (w - 1) / 2, [1, 1, w])
        cos, sin = ops.cos(angle), ops.sin(angle)
        rows = (cos * y - sin * x) / scale + (h - 1) / 2 - dy * self.shift * h
        cols = (sin * y + cos * x) / scale + (w - 1) / 2 - dx * self.shift * w
        if self.alpha > 0:
            noise = keras.random.uniform((n, h, w, 2), -1.0, 1.0, seed=self.seed_generator)
            field = self.alpha * smooth(noise, self.sigma)
            rows, cols = rows + field[..., 0], cols + field[..., 1]
        return warp(images, rows, cols)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        names = ("rotation", "zoom", "shift", "alpha", "sigma", "seed")
        return {**super().get_config(), **{name: getattr(self, name) for name in names}}


def _blur3(images):
    """A 3x3 binomial blur (Gaussian, sigma ~0.85 px) of (n, h, w, 1), zeros beyond the edge."""
    kernel = np.outer([1, 2, 1], [1, 2, 1]).astype("float32")[:, :, None, None] / 16
    return ops.conv(images, kernel, padding="same")


class RandomMix(keras.layers.Layer):
    """A training-only layer that alters a random share of the images, each in its own way;
    `strength` scales how many (1: the shares written in `mix`, 0: none)."""

    def __init__(self, strength: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})
        self.strength, self.seed = strength, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _draw(self, n, low=0.0, high=1.0):
        return keras.random.uniform((n, 1, 1, 1), low, high, seed=self.seed_generator)

    def _some(self, n, p, scaled: bool = True):
        """1 for a random share `p` (times the strength unless not `scaled`, at most 1) of the
        images, else 0."""
        return ops.cast(self._draw(n) < min(1.0, p * (self.strength if scaled else 1.0)), "float32")

    def call(self, images, training=True):
        if not training or self.strength == 0:
            return images
        return ops.clip(self.mix(images), 0.0, 1.0)

    def mix(self, images):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "strength": self.strength, "seed": self.seed}


@keras.saving.register_keras_serializable(package="digitlab")
class RealWorld(RandomMix):
    """What real inputs do to a digit that MNIST's scans never did, one random mix per image:
    strokes thinner or fatter than MNIST's (a fine pen, a marker), blur (focus, motion), a low
    resolution (a small digit in a photo or a scan), faded or uneven contrast (pencil, grey paper)
    and sensor noise. Each effect is a random blend between the image and its altered copy, so
    stroke width, blur and contrast vary continuously; about 40% of the images stay clean.

    The preprocessing of real images evens much of this out (stroke width, contrast, size), but
    not all of it, and a model fed 28x28 arrays directly gets none of that help."""

    def mix(self, images):
        x, n = images, ops.shape(images)[0]
        # Stroke width: a 3x3 dilation fattens strokes by ~2 px, an erosion thins them (partly,
        # never below a hairline: blended at most halfway).
        fat = ops.max_pool(x, 3, strides=1, padding="same")
        thin = -ops.max_pool(-x, 2, strides=1, padding="same")
        x = x + self._some(n, 0.2) * self._draw(n) * (fat - x) + self._some(n, 0.1) * self._draw(n, 0, 0.5) * (thin - x)
        # Blur: up to two passes of a 3x3 Gaussian.
        once = _blur3(x)
        twice = _blur3(once)
        x = x + self._some(n, 0.15) * self._draw(n) * (ops.where(self._draw(n) < 0.5, once, twice) - x)
        # Low resolution: down to 10 or 14 px and back up, as a scan of a small digit.
        h, w = images.shape[1], images.shape[2]
        low = [keras.ops.image.resize(keras.ops.image.resize(x, (s, s)), (h, w)) for s in (10, 14)]
        x = ops.where(self._some(n, 0.1) > 0, ops.where(self._draw(n) < 0.5, low[0], low[1]), x)
        # Contrast and light: faint ink (x0.4-1), gamma 0.5-2, and a background lifted by up to
        # 0.5, evenly (grey paper) or in a smooth random field (uneven light, haze).
        gain, gamma, lift = self._draw(n, 0.4, 1.0), ops.exp(self._draw(n, -0.7, 0.7)), self._draw(n, 0.0, 0.5)
        coarse = keras.random.uniform((n, 4, 4, 1), seed=self.seed_generator)
        light = ops.where(self._draw(n) < 0.5, 1.0, keras.ops.image.resize(coarse, (h, w)))
        background = lift * light
        adjusted = background + (1 - background) * gain * ops.power(ops.clip(x, 0.0, 1.0) + 1e-6, gamma)
        x = ops.where(self._some(n, 0.2) > 0, adjusted, x)
        # Noise: Gaussian (sigma up to 0.2) or salt and pepper (up to 20% of the pixels).
        gauss = x + self._draw(n, 0.0, 0.2) * keras.random.normal(ops.shape(x), seed=self.seed_generator)
        flips = keras.random.uniform(ops.shape(x), seed=self.seed_generator)
        rate = self._draw(n, 0.0, 0.2)
        salted = ops.where(flips < rate / 2, 0.0, ops.where(flips > 1 - rate / 2, 1.0, x))
        kind = self._draw(n)
        return ops.where(self._some(n, 0.15) > 0, ops.where(kind < 0.5, gauss, salted), x)


@keras.saving.register_keras_serializable(package="digitlab")
class Clutter(RandomMix):
    """What paper and pens add to a digit that is not the digit, one random mix per image:
    lines through it (ruled or squared paper, a strike-through, a dashed or zigzag line), strokes
    drawn as outlines (hollow or bubble digits, an edge detector's output) and regions of
    inverted polarity (a shadow or a dark band across a photo, a shaded margin). About 75% of
    the images stay clean. Runs before RealWorld, so lines are blurred and noised with the digit."""

    def _line(self, n, size):
        """Ink (n, size, size, 1) of one random line per image: within 60 degrees of
        horizontal, passing up to 13 px from the centre, 0.7-2 px wide, at 50-100% of full ink;
        solid, dashed or zigzag."""
        y = ops.reshape(ops.arange(size, dtype="float32") - (size - 1) / 2, [1, size, 1, 1])
        x = ops.reshape(ops.arange(size, dtype="float32") - (size - 1) / 2, [1, 1, size, 1])
        angle = self._draw(n, -np.pi / 3, np.pi / 3)
        across = y * ops.cos(angle) - x * ops.sin(angle) - self._draw(n, -13.0, 13.0)
        along = x * ops.cos(angle) + y * ops.sin(angle) + self._draw(n, 0.0, 8.0)
        # A zigzag: the offset follows a triangle wave of 1-3 px amplitude and 3-8 px period.
        period, amplitude = self._draw(n, 3.0, 8.0), self._draw(n, 1.0, 3.0)
        phase = along / period - ops.floor(along / period)
        across = across - self._some(n, 0.3, scaled=False) * amplitude * (4 * ops.abs(phase - 0.5) - 1)
        ink = ops.clip(self._draw(n, 0.7, 2.0) / 2 + 0.5 - ops.abs(across), 0.0, 1.0)
        # Dashes: every other stretch of 1.5-4 px along the line left out.
        dash = self._draw(n, 1.5, 4.0)
        gaps = ops.cast(ops.floor(along / dash) % 2 == 1, "float32")
        return ink * (1 - self._some(n, 0.3, scaled=False) * gaps) * self._draw(n, 0.5, 1.0)

    def mix(self, images):
        x, n, size = images, ops.shape(images)[0], images.shape[1]
        # Lines: one, sometimes two, over the digit.
        lines = self._some(n, 0.12) * self._line(n, size) + self._some(n, 0.04) * self._line(n, size)
        x = ops.maximum(x, lines)
        # Outlines: the stroke's edge just inside or just outside it, binarised, the inside empty.
        ink = ops.cast(x > 0.5, "float32")
        eroded = -ops.max_pool(-ink, 3, strides=1, padding="same")
        dilated = ops.max_pool(ink, 3, strides=1, padding="same")
        outline = ops.where(self._draw(n) < 0.5, ink - eroded, dilated - ink)
        x = ops.where(self._some(n, 0.06) > 0, outline, x)
        # Inverted bands from one edge or both, across rows or columns, each 2-12 px wide.
        rows = ops.broadcast_to(ops.reshape(ops.arange(size, dtype="float32"), [1, size, 1, 1]), [1, size, size, 1])
        pos = ops.where(self._draw(n) < 0.5, rows, ops.transpose(rows, [0, 2, 1, 3]))
        first, last, side = self._draw(n, 2.0, 12.0), self._draw(n, 2.0, 12.0), self._draw(n)
        # side: a third of the images get the first band only, a third the last, a third both
        band = ops.logical_or((pos < first) & (side > 1 / 3), (pos >= size - last) & (side < 2 / 3))
        return ops.where(self._some(n, 0.06) > 0, ops.where(band, 1 - x, x), x)
