"""Non-digit images: counts, determinism, separate sources for training and evaluation, realism."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from digitlab.data import glyphs, negatives, strokes
from digitlab.image.decode import read_image
from digitlab.image.preprocess import prepare, stroke_width
from digitlab.training import outliers

DRAWN = ("drawn letters", "drawn symbols", "drawn shapes", "scribbles")
TYPED = ("typed letters", "typed symbols")


def test_training_images_are_greyscale_ink_on_paper():
    images = list(negatives.training(40, seed=0))
    assert len(images) == 40
    for image in images:
        assert image.ndim == 2 and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        assert np.median(border) > 0.5  # light paper; ink is darker
    assert list(negatives.training(0, seed=0)) == []


def test_training_is_deterministic_per_seed():
    first, again, other = (list(negatives.training(12, seed=s)) for s in (3, 3, 4))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    # Image i depends only on the seed and i: asking for more extends the list, it does not reshuffle it.
    assert all(np.array_equal(a, b) for a, b in zip(list(negatives.training(5, seed=3)), first, strict=False))


@pytest.mark.parametrize("kind", negatives.EVAL_KINDS)
def test_evaluation_kind_count_format_and_determinism(kind):
    images = negatives.evaluation(kind, 3, seed=0)
    assert len(images) == 3 and all(isinstance(b, bytes) for b in images)
    expected = "PNG" if kind in (*DRAWN, "noise") else "JPEG"
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.format == expected and min(image.size) >= 28
    assert negatives.evaluation(kind, 3, seed=0) == images
    assert negatives.evaluation(kind, 3, seed=1) != images


def test_evaluation_refuses_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind"):
        negatives.evaluation("digits", 1, seed=0)


def test_font_sources_are_disjoint():
    train, evaluation = glyphs.fonts("training"), glyphs.fonts("evaluation")
    assert train and evaluation and not {p.name for p in train} & {p.name for p in evaluation}
    assert all(p.name.startswith("DejaVu") and "Display" not in p.name for p in train)
    assert all(p.name.startswith(("STIX", "cm")) for p in evaluation)
    assert {"cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf", "STIXGeneral.ttf"} <= {
        p.name for p in evaluation
    }


def test_glyphs_are_checked_in_each_font():
    by_name = {p.name: p for p in glyphs.fonts("evaluation")}
    # Computer Modern Roman draws ¡ and ¿ at the code points of < and >; its typewriter face draws < and >.
    assert "<" not in glyphs.glyphs(by_name["cmr10.ttf"]) and "<" in glyphs.glyphs(by_name["cmtt10.ttf"])
    assert "$" not in glyphs.glyphs(by_name["cmti10.ttf"]) and "$" in glyphs.glyphs(by_name["cmr10.ttf"])  # £
    assert "♥" not in glyphs.glyphs(by_name["cmr10.ttf"]) and "♥" in glyphs.glyphs(by_name["STIXGeneral.ttf"])
    assert set("AEHKMNRTVWXYaehkmnrtwy") <= set(glyphs.glyphs(by_name["cmr10.ttf"]))


def test_no_glyph_reads_as_a_digit():
    required = set("OoQDIlij|!ZzSsbGgqB()/\\[]")
    assert required <= glyphs.CONFUSABLE
    typed = {c for role in ("training", "evaluation") for p in glyphs.fonts(role) for c in glyphs.glyphs(p)}
    drawn = {*strokes.LETTERS, *strokes.SYMBOLS}
    for chars in (typed, drawn, set(glyphs.LETTERS), set(glyphs.SYMBOLS)):
        assert not chars & glyphs.CONFUSABLE and not chars & set("0123456789")
    assert set("AEHKMNRTVWXYaehkmnrtwy") <= typed & drawn  # common letters on both sides
    assert len(strokes.LETTERS) >= 15 and len(strokes.SYMBOLS) >= 12 and len(strokes.SHAPES) >= 8


def test_hand_authored_drawings_are_pen_strokes():
    for table in (strokes.LETTERS, strokes.SYMBOLS, strokes.SHAPES):
        for name, drawing in table.items():
            assert drawing and all(len(stroke) >= 2 for stroke in drawing), name
            points = np.concatenate([np.asarray(s, float) for s in drawing])
            assert np.isfinite(points).all() and np.ptp(points, 0).max() > 0.3, name


@pytest.mark.parametrize("kind", (*DRAWN, *TYPED))
def test_evaluation_ink_passes_preprocessing(kind):
    """Drawn and typed non-digits have ink: preprocessing must pass them on, so the model has to decline them."""
    prepared = [prepare(data) for data in negatives.evaluation(kind, 10, seed=5)]
    assert sum(p.reason is None for p in prepared) >= 9
    assert all(p.image.max() > 0.5 for p in prepared if p.reason is None)


def test_training_ink_passes_preprocessing():
    images = list(negatives.training(30, seed=5))
    assert sum(prepare(image).reason is None for image in images) >= 24  # textures may be declined as noise


def test_blank_paper_is_declined_by_preprocessing():
    assert all(prepare(data).reason is not None for data in negatives.evaluation("blank", 20, seed=0))


def test_drawn_strokes_have_pen_widths_of_the_canvas():
    widths = []
    for data in negatives.evaluation("drawn letters", 16, seed=2):
        grey = read_image(data)
        assert grey.shape == (negatives.CANVAS, negatives.CANVAS)
        widths.append(stroke_width(grey < 0.5))
    assert all(5 <= w <= 26 for w in widths), widths
    assert min(widths) < 11 and max(widths) > 13  # both a fine pen and a marker


@pytest.fixture(scope="module")
def validation_negatives(mnist):
    return outliers.validation_set(40, mnist.x_val[:300])


@pytest.mark.parametrize("seed", [outliers.VALIDATION_SEED, 0, 1, outliers.VALIDATION_SEED + 1, 2**32])
def test_no_seed_trains_on_the_validation_negatives(mnist, validation_negatives, seed):
    # The same digits on both sides, so only the random streams could tell the two sets apart.
    training = outliers.training_set(40, seed, mnist.x_val[:300])
    assert len(training) >= 30 and len(validation_negatives) >= 30
    shared = {image.tobytes() for image in training} & {image.tobytes() for image in validation_negatives}
    assert len(shared) == 0, f"seed {seed}: {len(shared)} training negatives are validation negatives"
