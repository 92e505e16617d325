import numpy as np
import pytest

from digitlab.errors import DigitlabError
from digitlab.models import MODELS, build, describe


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


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(DigitlabError, match="unknown model 'resnet9000'; choose one of: ") as error:
        build("resnet9000")
    assert all(name in str(error.value) for name in MODELS)


def test_flops_match_a_hand_count():
    from digitlab.models import flops_per_image

    assert flops_per_image(build("mlp")) == 2 * (784 * 128 + 128 * 64 + 64 * 10)
    # cnn: 3x3 conv 1->32 on 26x26, 3x3 conv 32->64 on 11x11, dense 5*5*64 -> 10
    assert flops_per_image(build("cnn")) == 2 * (26 * 26 * 32 * 9 + 11 * 11 * 64 * 9 * 32 + 1600 * 10)


def test_fast_first_stage_is_a_5x5_conv_and_2x2_max_pool_folded():
    """The folded stage computes what its docstring says: given a 5x5 kernel spread over the
    fold's 3x3 block kernel, it equals Keras' own Conv2D(5) then MaxPooling2D(2), exactly."""
    from digitlab.backend import keras

    width, rng = 4, np.random.default_rng(0)
    kernel = rng.normal(size=(5, 5, 1, width)).astype(np.float32)
    reference = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Conv2D(width, 5, use_bias=False), keras.layers.MaxPooling2D()]
    )
    reference.layers[0].set_weights([kernel])

    model = build("fast", width=width)
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    # Block pixel (p, q) of block offset (di, dj) is image pixel (2di+p, 2dj+q); for the output at
    # block pixel (a, b) (channel group 2a+b) that is kernel tap (2di+p-a, 2dj+q-b) when inside 5x5.
    folded = np.zeros((3, 3, 4, 4 * width), np.float32)
    for di, dj, p, q, a, b in np.ndindex(3, 3, 2, 2, 2, 2):
        u, v = 2 * di + p - a, 2 * dj + q - b
        if 0 <= u < 5 and 0 <= v < 5:
            folded[di, dj, 2 * p + q, (2 * a + b) * width : (2 * a + b + 1) * width] = kernel[u, v, 0]
    conv.set_weights([folded])
    pooled = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    stage = keras.Model(model.inputs[0], pooled.input)

    images = rng.random((5, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(stage(images), reference(images), rtol=1e-5, atol=1e-5)
