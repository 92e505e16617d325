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
