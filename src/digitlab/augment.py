"""Training-time augmentation: Keras layers that run inside the model, per batch, in the graph.

Active in training only: validation and test see clean digits, and the saved model has none
of them (training wraps the model; see training.train).
"""

from __future__ import annotations

import numpy as np

from .backend import keras

ops = keras.ops

# Simard, Steinkraus & Platt (2003), "Best practices for convolutional neural networks applied
# to visual document analysis": on 28x28 MNIST, a field smoothed at sigma = 4 pixels and scaled
# by alpha = 34 gave their best results. Strength 1 is that: pixels move ~1.3 px (std, per axis).
ALPHA, SIGMA = 34.0, 4.0


def augmentation(strength: float, elastic: float = 0.0) -> keras.Sequential:
    """Random small rotations, shifts and zoom (strength 1: 10 degrees, 10%), then, if
    `elastic` > 0, an elastic warp of that strength."""
    # Keras' own RandomElasticTransform is not used: in Keras 3.15 it swaps images across the
    # batch when the batch size is dynamic, as it is inside fit(), so images reach the loss
    # with other images' labels (tests/test_augment.py watches for a fix).
    affine = [
        keras.layers.RandomRotation(strength * 10 / 360, fill_mode="constant"),
        keras.layers.RandomTranslation(0.1 * strength, 0.1 * strength, fill_mode="constant"),
        keras.layers.RandomZoom(0.1 * strength, fill_mode="constant"),
    ]
    warp = [ElasticDistortion(ALPHA * elastic, SIGMA)] if elastic > 0 else []
    return keras.Sequential((affine if strength > 0 else []) + warp, name="augmentation")


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
class ElasticDistortion(keras.layers.Layer):
    """Elastic warp (Simard et al., 2003): every pixel moves by a random displacement field,
    uniform noise in [-1, 1] blurred by a Gaussian of `sigma` pixels and scaled by `alpha`.
    The blur makes neighbouring pixels move together, so strokes bend instead of breaking."""

    def __init__(self, alpha: float = ALPHA, sigma: float = SIGMA, seed: int | None = None, **kwargs):
        # float32 even under mixed precision: bf16 would round sample positions to 1/8 pixel.
        super().__init__(**{"dtype": "float32", **kwargs})
        self.alpha, self.sigma, self.seed = alpha, sigma, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        n, h, w = ops.shape(images)[0], images.shape[1], images.shape[2]
        noise = keras.random.uniform((n, h, w, 2), -1.0, 1.0, seed=self.seed_generator)
        field = self.alpha * smooth(noise, self.sigma)
        rows = ops.reshape(ops.arange(h, dtype="float32"), [1, h, 1]) + field[..., 0]
        cols = ops.reshape(ops.arange(w, dtype="float32"), [1, 1, w]) + field[..., 1]
        return warp(images, rows, cols)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "sigma": self.sigma, "seed": self.seed}
