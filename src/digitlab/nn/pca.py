"""PatchPCA: `fast`'s first stage, a fixed convolution fitted from the data, not by gradients.

Its own module because defining a Keras layer needs Keras: models.py names the zoo without it.
"""

from __future__ import annotations

import numpy as np

from digitlab.nn.backend import keras

layers = keras.layers


@keras.saving.register_keras_serializable(package="digitlab")
class PatchPCA(layers.Layer):
    """A 5x5 conv, its absolute value, a 2x2 max-pool, then each channel standardised and
    ReLU'd, all fixed from the data, not by gradients: the filters are the leading principal
    components of 5x5 image patches, the standardisation their pooled responses' mean and
    standard deviation (adapt())."""

    # Why: trained, `fast`'s first stage cost ~40% of its training step: its filter gradient,
    # and the second conv's input gradient that only serves to reach it. Fixed, nothing before
    # the second conv learns and TensorFlow computes neither: 1.55x faster over 2 epochs for
    # 0.08 points of test accuracy (BENCHMARKS.md). PCA's smooth blob, edge and curvature
    # filters are close to what a first layer learns and cost milliseconds; random ones did worse.
    # The fixed standardisation replaces a batch norm that had nothing to learn: the same
    # accuracy, and no batch statistics to compute at every step (BENCHMARKS.md).

    def __init__(self, components: int = 8, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.components = components

    def build(self, input_shape) -> None:
        # A 5x5 conv + 2x2 pool, folded (see call()): a 3x3 kernel over 2x2 pixel blocks,
        # one group of output channels per pixel of a block. Random until adapt().
        self.kernel = self.add_weight(shape=(3, 3, 4, 4 * self.components), initializer="glorot_uniform", name="kernel")
        self.offset = self.add_weight(shape=(self.components,), initializer="zeros", name="offset")

    def set_filters(self, filters: np.ndarray, offset: np.ndarray | None = None) -> None:
        """Use these (5, 5, components) filters, and subtract `offset` from their pooled responses."""
        # Block offset (di, dj), block pixel (p, q) is image pixel (2di+p, 2dj+q); for the conv
        # output at block pixel (a, b) (channel group 2a+b) that is tap (2di+p-a, 2dj+q-b).
        channels = filters.shape[-1]
        kernel = np.zeros((3, 3, 4, 4 * channels), np.float32)
        for di, dj, p, q, a, b in np.ndindex(3, 3, 2, 2, 2, 2):
            u, v = 2 * di + p - a, 2 * dj + q - b
            if 0 <= u < 5 and 0 <= v < 5:
                kernel[di, dj, 2 * p + q, (2 * a + b) * channels : (2 * a + b + 1) * channels] = filters[u, v]
        self.kernel.assign(kernel)
        self.offset.assign(np.zeros(channels, np.float32) if offset is None else offset)

    def adapt(self, images: np.ndarray, seed: int = 0, patches: int = 20_000, sample: int = 500) -> None:
        """Principal components of `patches` random 5x5 patches of `images` (N, 28, 28, 1), scaled
        and offset so that over `sample` random images each pooled response has mean 0, std 1."""
        rng = np.random.default_rng(seed)
        n, corner = rng.integers(0, len(images), patches), rng.integers(0, images.shape[1] - 4, (2, patches, 1, 1))
        rows, cols = corner[0] + np.arange(5)[:, None], corner[1] + np.arange(5)
        x = images[n[:, None, None], rows, cols, 0].reshape(patches, 25).astype(np.float64)
        # Uncentred: the conv sees raw pixels.
        _, vectors = np.linalg.eigh(x.T @ x)
        filters = vectors[:, ::-1][:, : self.components]
        # The pooled |responses| of whole images, in NumPy: 5x5 windows, |filter . window|, 2x2 max.
        some = images[rng.choice(len(images), min(sample, len(images)), replace=False), :, :, 0]
        windows = np.lib.stride_tricks.sliding_window_view(some, (5, 5), axis=(1, 2)).reshape(-1, 25)
        response = np.abs(windows @ filters.astype(windows.dtype))  # 2-D and one dtype: a BLAS call
        side = (images.shape[1] - 4) // 2
        pooled = response.reshape(len(some), side, 2, side, 2, -1).max(axis=(2, 4))
        # A positive scale passes through |.| and max, so it folds into the filters.
        mean, std = pooled.mean(axis=(0, 1, 2)), pooled.std(axis=(0, 1, 2))
        self.set_filters((filters / std).reshape(5, 5, -1), mean / std)

    def call(self, images):
        ops, n = keras.ops, images.shape[1] // 2
        # A conv over one input channel starves the CPU's vector units; over 2x2 pixel blocks
        # it has four, and its four channel groups are the pool's four offsets: max over them.
        blocks = ops.reshape(ops.transpose(ops.reshape(images, (-1, n, 2, n, 2)), (0, 1, 3, 2, 4)), (-1, n, n, 4))
        # |response|: a component's sign is arbitrary, and dark-on-light must count too. One
        # channel per component, where a filter and its negative under ReLU took two: half the
        # second conv's work, the same validation accuracy (BENCHMARKS.md).
        out = ops.abs(ops.conv(blocks, ops.cast(self.kernel, self.compute_dtype)))
        pooled = ops.max(ops.reshape(out, (-1, n - 2, n - 2, 4, self.components)), axis=3)
        return ops.relu(pooled - ops.cast(self.offset, self.compute_dtype))

    def compute_output_shape(self, input_shape):
        n = input_shape[1] // 2
        return (input_shape[0], n - 2, n - 2, self.components)

    def get_config(self) -> dict:
        return {**super().get_config(), "components": self.components}


def adapt(model: keras.Model, images: np.ndarray, seed: int = 0) -> None:
    """Fit the layers that learn from the data without gradients (PatchPCA): before training."""
    for layer in model.layers:
        if isinstance(layer, PatchPCA):
            layer.adapt(images, seed)
