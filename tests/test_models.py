import numpy as np
import pytest

from digitlab.errors import DigitlabError
from digitlab.nn.models import MODELS, build, describe


@pytest.mark.parametrize("name", list(MODELS))
def test_each_model_maps_images_to_ten_probabilities(name):
    model = build(name)
    probs = np.asarray(model(np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)))
    assert probs.shape == (3, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.name == name and describe(name)


def test_classic_mlp_is_the_textbook_net():
    model = build("mlp")
    dense = [layer.units for layer in model.layers if hasattr(layer, "units")]
    assert dense == [128, 64, 10]
    assert model.count_params() == 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10


def test_unknown_model_suggests_the_nearest_or_lists_the_known_ones():
    with pytest.raises(DigitlabError, match=r"unknown model 'alconv'; did you mean 'allconv'\?"):
        build("alconv")
    with pytest.raises(DigitlabError, match="unknown model 'zzzz'; choose one of: ") as error:
        build("zzzz")
    assert all(name in str(error.value) for name in MODELS)


def test_flops_match_a_hand_count():
    from digitlab.nn.models import flops_per_image

    assert flops_per_image(build("mlp")) == 2 * (784 * 128 + 128 * 64 + 64 * 10)
    # cnn: 3x3 conv 1->32 on 26x26, 3x3 conv 32->64 on 11x11, dense 5*5*64 -> 10
    assert flops_per_image(build("cnn")) == 2 * (26 * 26 * 32 * 9 + 11 * 11 * 64 * 9 * 32 + 1600 * 10)
    # fast: the fixed folded stage (3x3x4 -> 32 on 12x12), 5x5 conv 8->32 on 8x8, dense 512 -> 10.
    # Training: the fixed stage runs forward only; the first trained conv needs no input gradient.
    stage, conv, dense = 2 * 12 * 12 * 32 * 36, 2 * 8 * 8 * 32 * 25 * 8, 2 * 512 * 10
    assert flops_per_image(build("fast")) == stage + conv + dense
    assert flops_per_image(build("fast"), training=True) == stage + 2 * conv + 3 * dense
    assert flops_per_image(build("cnn"), training=True) == 3 * flops_per_image(build("cnn")) - 2 * 26 * 26 * 32 * 9


def test_patch_pca_is_a_5x5_conv_abs_2x2_max_pool_and_offset_relu_folded():
    """The folded stage computes what its docstring says: given 5x5 filters and offsets, it
    equals Keras' own Conv2D(5) with an absolute value, MaxPooling2D(2), minus the offsets,
    then ReLU."""
    from digitlab.nn.backend import keras
    from digitlab.nn.models import PatchPCA

    rng = np.random.default_rng(0)
    filters = rng.normal(size=(5, 5, 6)).astype(np.float32)
    reference = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(6, 5, use_bias=False, activation=keras.ops.abs),
            keras.layers.MaxPooling2D(),
        ]
    )
    reference.layers[0].set_weights([filters[:, :, None, :]])
    images = rng.random((5, 28, 28, 1), dtype=np.float32)
    pooled = np.asarray(reference(images))
    offset = np.median(pooled, axis=(0, 1, 2))  # the ReLU then cuts half of each channel
    stage = PatchPCA(6)
    stage.build((None, 28, 28, 1))
    stage.set_filters(filters, offset)

    expected = np.maximum(pooled - offset, 0)
    np.testing.assert_allclose(stage(images), expected, rtol=1e-5, atol=1e-5)


def test_patch_pca_filters_are_the_leading_principal_components_of_patches(mnist):
    """Against scikit-learn: the uncentred principal axes of every 5x5 patch of 300 digits
    (TruncatedSVD), where adapt() samples 20,000 patches at random."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.image import extract_patches_2d

    from digitlab.nn.models import PatchPCA

    images = mnist.x_train[:300]
    stage = PatchPCA(4)
    stage.build((None, 28, 28, 1))
    stage.adapt(images, seed=1)
    kernel = np.asarray(stage.kernel)
    # Pool offset (0, 0) holds the 5x5 filters unshifted: tap (u, v) at block (u//2, v//2), pixel 2(u%2)+v%2.
    filters = np.stack([kernel[u // 2, v // 2, 2 * (u % 2) + v % 2, :4] for u in range(5) for v in range(5)])
    filters /= np.linalg.norm(filters, axis=0)  # adapt() scales each for its standardisation
    patches = np.concatenate([extract_patches_2d(image[:, :, 0], (5, 5)).reshape(-1, 25) for image in images])
    reference = TruncatedSVD(4, algorithm="arpack").fit(patches).components_
    np.testing.assert_allclose(filters.T @ filters, np.eye(4), atol=1e-5)
    # The same axes up to sign (|cos| 0.9994-0.9999 measured; sampling leaves a little play).
    agreement = np.abs(np.sum(filters.T * reference, axis=1))
    assert agreement.min() > 0.995, agreement


def test_patch_pca_standardises_its_responses_on_images_it_did_not_see(mnist):
    """adapt() scales and offsets each channel from 500 training images; on 2,000 others, each
    pooled response before the ReLU has mean ~0 and standard deviation ~1."""
    from digitlab.nn.models import PatchPCA

    stage = PatchPCA(8)
    stage.build((None, 28, 28, 1))
    stage.adapt(mnist.x_train[:10_000], seed=0)
    offset = np.asarray(stage.offset)
    stage.offset.assign(np.zeros(8, np.float32))  # the pooled |response| itself, before offset and ReLU
    pooled = np.asarray(stage(mnist.x_val[:2000]))
    np.testing.assert_allclose(pooled.mean(axis=(0, 1, 2)) - offset, 0, atol=0.05)
    np.testing.assert_allclose(pooled.std(axis=(0, 1, 2)), 1, atol=0.05)


def test_fast_trains_around_its_fixed_pca_stage_and_exports_to_onnx(mnist, tmp_path):
    """Through the real pipeline: train() fits the PCA stage on the training images, training
    leaves it as it was, the saved model reloads it, and ONNX Runtime computes the same."""
    from digitlab.experiments.pipeline import train
    from digitlab.io.export import export
    from digitlab.io.native import OnnxModel
    from digitlab.nn.backend import keras
    from digitlab.nn.models import PatchPCA, adapt
    from digitlab.training.config import TrainConfig

    config = TrainConfig.for_model("fast", epochs=2, subset=10_000, seed=3)
    run = train(config, data=mnist, out=tmp_path / "fast", verbose=0, evaluate_after=False)
    model = keras.saving.load_model(run / "model.keras")
    expected = build("fast")
    adapt(expected, mnist.x_train[:10_000], seed=3)
    stage = next(layer for layer in model.layers if isinstance(layer, PatchPCA))
    for weights, reference in zip(stage.weights, expected.layers[0].weights, strict=True):  # kernel, offset
        np.testing.assert_array_equal(np.asarray(weights), np.asarray(reference))

    x, y = mnist.x_test[:2000], mnist.y_test[:2000]
    probs = model.predict(x, verbose=0)
    assert (probs.argmax(1) == y).mean() > 0.96  # 10k images, 2 epochs: 97.4% measured
    onnx = OnnxModel(export(run, "onnx"))
    assert np.abs(onnx.probabilities(x) - probs).max() <= 1e-5
