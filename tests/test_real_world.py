"""Training for real inputs: the RealWorld augmentation and outlier exposure (negatives), on
real MNIST and real training runs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from digitlab.errors import DigitlabError
from digitlab.training.augment import Clutter, RealWorld
from digitlab.training.config import TrainConfig


def test_real_world_changes_some_images_in_each_way_and_leaves_inference_alone(mnist):
    x = mnist.x_train[:1024]
    out = np.asarray(RealWorld(1.0, seed=3)(x, training=True))
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    changed = np.abs(out - x).max(axis=(1, 2, 3)) > 1e-6
    assert 0.3 < 1 - changed.mean() < 0.6  # about 40% stay clean
    ink, ink_out = (x > 0.5).sum(axis=(1, 2, 3)), (out > 0.5).sum(axis=(1, 2, 3))
    assert (ink_out > 1.3 * ink).mean() > 0.05  # fatter strokes
    assert (ink_out < 0.7 * ink).mean() > 0.02  # thinner, fainter or blurred ones
    background = np.median(out, axis=(1, 2, 3))
    assert (background > 0.1).mean() > 0.05  # lifted backgrounds (grey paper, fog)
    # Noise: isolated bright pixels far from any stroke.
    far = ~ndimage.binary_dilation(x[..., 0] > 0.1, iterations=3, axes=(1, 2))
    assert ((out[..., 0] > 0.5) & far).sum(axis=(1, 2)).astype(bool).mean() > 0.03
    np.testing.assert_array_equal(np.asarray(RealWorld(1.0)(x, training=False)), x)
    np.testing.assert_array_equal(np.asarray(RealWorld(0.0)(x, training=True)), x)


def test_clutter_adds_lines_outlines_and_inverted_bands_to_some_images(mnist):
    x = mnist.x_train[:2048]
    out = np.asarray(Clutter(1.0, seed=5)(x, training=True))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    changed = np.abs(out - x).max(axis=(1, 2, 3)) > 1e-6
    assert 0.65 < 1 - changed.mean() < 0.85  # about 75% stay clean
    # Inverted bands: a whole edge row or column turns bright (MNIST's edges are black).
    edges = np.stack([out[:, 0, :, 0], out[:, -1, :, 0], out[:, :, 0, 0], out[:, :, -1, 0]], 1)
    banded = (edges.min(axis=2) > 0.9).any(axis=1)
    assert 0.03 < banded.mean() < 0.09
    # Outlines: binary images, ink where the stroke's edge was and none in its core.
    core = ndimage.binary_erosion(x[..., 0] > 0.5, np.ones((1, 3, 3)))
    binary = np.isin(out, (0.0, 1.0)).all(axis=(1, 2, 3)) & ~banded
    hollow = binary & ~((out[..., 0] > 0.5) & core).any(axis=(1, 2))
    assert 0.02 < hollow.mean() < 0.08
    # Lines: ink added far from the digit, the digit's own ink kept.
    far = ~ndimage.binary_dilation(x[..., 0] > 0.1, iterations=2, axes=(1, 2))
    lined = ((out[..., 0] > 0.3) & far).sum(axis=(1, 2)) >= 5
    kept = (out >= x - 1e-6).all(axis=(1, 2, 3))
    assert 0.08 < (lined & kept & ~banded).mean() < 0.2
    np.testing.assert_array_equal(np.asarray(Clutter(1.0)(x, training=False)), x)
    np.testing.assert_array_equal(np.asarray(Clutter(0.0)(x, training=True)), x)


@pytest.mark.parametrize("name", ["clutter", "real_world"])
def test_augmentation_strengths_are_checked(name):
    with pytest.raises(DigitlabError, match=name.replace("_", "-")):
        TrainConfig(**{name: 3.5}).check()


def test_targets_are_uniform_for_non_digits():
    from digitlab.training.loop import targets
    from digitlab.training.outliers import NOT_A_DIGIT

    labels = np.array([3, NOT_A_DIGIT, 0])
    rows = targets(labels, TrainConfig(negatives=0.1))
    np.testing.assert_allclose(rows, [np.eye(10)[3], np.full(10, 0.1), np.eye(10)[0]])
    np.testing.assert_array_equal(targets(labels[[0, 2]], TrainConfig()), [3, 0])  # plain labels without


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_negatives_share_is_checked(value):
    with pytest.raises(DigitlabError, match="--negatives"):
        TrainConfig(negatives=value).check()


def test_outlier_exposure_teaches_the_model_to_doubt_non_digits(mnist, tmp_path):
    """Two real runs, with and without negatives: the one shown non-digits is much less sure of
    unseen ones (validation negatives: the training sources, another seed)."""
    from digitlab.experiments.pipeline import train
    from digitlab.files import read_json
    from digitlab.io.load import load
    from digitlab.training.outliers import validation_set

    negatives = validation_set(300, mnist.x_val[:2000])
    assert len(negatives) > 200  # what preprocessing declined (noise, textures) is dropped
    confidence = {}
    for share in (0.0, 0.3):
        config = TrainConfig(model="mlp", epochs=3, subset=5000, negatives=share, real_world=1.0)
        run = train(config, data=mnist, out=tmp_path / f"negatives-{share}", verbose=0)
        confidence[share] = load(run).probabilities(negatives).max(1).mean()
        assert read_json(run / "run.json")["data"]["negatives"] == pytest.approx(share * 5000, rel=0.1)
    # Measured: mean confidence down by more than 0.15. The share declined at the threshold
    # (92 validation non-digits after 3 epochs on 5,000 images) varies more between seeds than
    # between the two settings (seed 1: 7.6% -> 4.3%, seed 2: 6.5% -> 16.3%): not asserted here;
    # the full-size figure is the robustness suite's.
    assert confidence[0.3] < confidence[0.0] - 0.1
