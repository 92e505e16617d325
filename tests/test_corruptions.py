"""MNIST-C's corruptions on hand-drawn digits: what each does to ink, background and geometry."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from scipy import ndimage

from digitlab.data.corruptions import NAMES, _plasma, corrupt
from digitlab.errors import DigitlabError

DETERMINISTIC = {"scale", "brightness", "stripe", "canny_edges"}
ROWS, COLS = np.mgrid[:28, :28].astype(float)


def strokes(*points: tuple[float, float], width: float = 1.5) -> np.ndarray:
    """Anti-aliased pen strokes through (row, col) points, full ink within `width` px of the path."""
    dist = np.full((28, 28), np.inf)
    for (r0, c0), (r1, c1) in pairwise(points):
        dr, dc = r1 - r0, c1 - c0
        t = np.clip(((ROWS - r0) * dr + (COLS - c0) * dc) / (dr * dr + dc * dc), 0, 1)
        dist = np.minimum(dist, np.hypot(ROWS - r0 - t * dr, COLS - c0 - t * dc))
    return np.clip(width + 0.5 - dist, 0, 1).astype(np.float32)


SEVEN = strokes((6, 8), (6, 20), (22, 12))  # strokes 3-4 px wide, like MNIST's
RING = np.clip(2 - np.abs(np.hypot(ROWS - 13.5, COLS - 13.5) - 7), 0, 1).astype(np.float32)  # a "0"
DIGITS = np.stack([SEVEN, RING, np.roll(SEVEN, 2, axis=1), np.roll(RING, -2, axis=0)] * 2)


def moments(image: np.ndarray) -> np.ndarray:
    """Ink's centre (row, col) and spread (std along rows, cols)."""
    mass = image.sum()
    r, c = (image * ROWS).sum() / mass, (image * COLS).sum() / mass
    spread = [np.sqrt((image * (grid - mean) ** 2).sum() / mass) for grid, mean in ((ROWS, r), (COLS, c))]
    return np.array([r, c, *spread])


def test_names_are_mnist_c_in_order():
    expected = "shot_noise impulse_noise glass_blur motion_blur shear scale rotate brightness translate stripe fog"
    assert " ".join(NAMES) == expected + " spatter dotted_line zigzag canny_edges"


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_range_and_seeds(name):
    before = DIGITS.copy()
    out = corrupt(name, DIGITS, seed=3)
    assert out.shape == DIGITS.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert not np.allclose(out, DIGITS), "the corruption changed nothing"
    assert np.array_equal(DIGITS, before), "the input was modified"
    assert np.array_equal(out, corrupt(name, DIGITS, seed=3))
    channels = corrupt(name, DIGITS[..., None], seed=3)
    assert channels.shape == (*DIGITS.shape, 1) and np.array_equal(channels[..., 0], out)
    assert np.array_equal(out, corrupt(name, DIGITS, seed=4)) == (name in DETERMINISTIC)


def test_bad_names_and_shapes_are_one_line_errors():
    with pytest.raises(DigitlabError) as caught:
        corrupt("frost", DIGITS)
    message = str(caught.value)
    assert "\n" not in message and "'frost'" in message and all(name in message for name in NAMES)
    with pytest.raises(DigitlabError, match=r"\(N, 28, 28\)"):
        corrupt("rotate", np.zeros((2, 32, 32), np.float32))
    assert corrupt("fog", np.zeros((0, 28, 28), np.float32)).shape == (0, 28, 28)


def test_translate_moves_ink_three_pixels_each_way():
    out = corrupt("translate", DIGITS, seed=0)
    shifts = {tuple(np.round(moments(b)[:2] - moments(a)[:2], 3)) for a, b in zip(DIGITS, out, strict=True)}
    assert shifts <= {(dr, dc) for dr in (-3, 3) for dc in (-3, 3)} and len(shifts) > 1


def test_rotate_turns_a_bar_by_0_4_radians_either_way_about_the_centre():
    bars = np.stack([strokes((13.5, 5), (13.5, 22))] * 8)
    angles = []
    for image in corrupt("rotate", bars, seed=1):
        r, c = moments(image)[:2]
        assert abs(r - 13.5) < 0.1 and abs(c - 13.5) < 0.1
        mu_rr, mu_cc = (image * (ROWS - r) ** 2).sum(), (image * (COLS - c) ** 2).sum()
        angles.append(0.5 * np.arctan2(2 * (image * (ROWS - r) * (COLS - c)).sum(), mu_cc - mu_rr))
    assert np.allclose(np.abs(angles), 0.4, atol=0.03) and min(angles) < 0 < max(angles)


def test_shear_slants_a_vertical_bar_by_sin_0_4():
    bars = np.stack([strokes((4, 13.5), (23, 13.5))] * 8)
    slopes = []
    for image in corrupt("shear", bars, seed=2):
        rows = np.flatnonzero(image.sum(axis=1) > 0.5)[2:-2]  # away from the rounded ends
        centres = (image[rows] * COLS[rows]).sum(axis=1) / image[rows].sum(axis=1)
        slopes.append(np.polyfit(rows, centres, 1)[0])
    assert np.allclose(np.abs(slopes), np.sin(0.4), atol=0.03) and min(slopes) < 0 < max(slopes)


def test_scale_shrinks_digits_to_70_percent_about_the_centre():
    ring = corrupt("scale", RING[None])[0]
    assert np.allclose(moments(ring), [13.5, 13.5, *(0.7 * moments(RING)[2:])], atol=0.05)
    seven = moments(corrupt("scale", SEVEN[None])[0])
    assert np.allclose(seven[2:] / moments(SEVEN)[2:], 0.7, atol=0.02)
    assert np.allclose(seven[:2] - 13.5, 0.7 * (moments(SEVEN)[:2] - 13.5), atol=0.1)


def test_brightness_lifts_the_background_to_grey_and_keeps_ink_white():
    out = corrupt("brightness", DIGITS)
    assert np.allclose(out, np.minimum(DIGITS + 0.5, 1))
    assert np.all(out[DIGITS == 0] == 0.5) and np.all(out[DIGITS == 1] == 1)


def test_stripe_inverts_the_outer_columns():
    out = corrupt("stripe", DIGITS)
    assert np.array_equal(out[:, :, 7:21], DIGITS[:, :, 7:21])
    assert np.allclose(out[:, :, :7], 1 - DIGITS[:, :, :7]) and np.allclose(out[:, :, 21:], 1 - DIGITS[:, :, 21:])


def test_canny_leaves_one_pixel_edges_around_each_stroke():
    seven, ring = corrupt("canny_edges", np.stack([SEVEN, RING]))
    for digit, edges in ((SEVEN, seven), (RING, ring)):
        assert set(np.unique(edges)) == {0.0, 1.0}
        # strokes 3-4 px wide hold 2 x 2 blocks of ink; their edges hold none
        assert ndimage.binary_erosion(digit > 0.5, np.ones((2, 2))).any()
        assert not ndimage.binary_erosion(edges > 0, np.ones((2, 2))).any()
        assert ndimage.distance_transform_edt(digit < 0.5)[edges > 0].max() <= 2  # on the strokes' borders
    assert ndimage.label(ring > 0, structure=np.ones((3, 3)))[1] == 2  # the ring's inner and outer rims


def test_impulse_noise_sets_17_percent_of_pixels_to_black_or_white():
    out = corrupt("impulse_noise", np.full((8, 28, 28), 0.5, np.float32))
    hit = out != 0.5
    assert abs(hit.mean() - 0.17) < 0.02 and set(np.unique(out[hit])) == {0.0, 1.0}
    assert 0.4 < (out[hit] == 1).mean() < 0.6


def test_shot_noise_counts_three_photons_at_full_ink():
    out = corrupt("shot_noise", DIGITS)
    assert np.allclose(out * 3, np.round(out * 3), atol=1e-6)  # whole photons out of 3
    assert np.all(out[DIGITS == 0] == 0)  # no light, no photons
    assert 0.4 < out[DIGITS == 1].mean() < 1  # Poisson(3) / 3 clipped at 1 averages 0.83


def test_fog_is_smooth_and_lifts_the_background():
    dot = np.zeros((8, 28, 28), np.float32)
    dot[:, 0, 0] = 1  # a white pixel keeps the reference's rescaling (by the brightest pixel) at 1 / 4
    fog = corrupt("fog", dot, seed=1)[:, 1:, 1:]
    assert 0.1 < fog.mean() < 0.75 and fog.max() <= 0.75
    fog = fog - fog.mean(axis=(1, 2), keepdims=True)
    smooth = ndimage.gaussian_filter(fog, (0, 2, 2))
    assert np.all((smooth**2).sum(axis=(1, 2)) > 0.5 * (fog**2).sum(axis=(1, 2)))  # white noise: ~0.03
    assert not np.allclose(fog[0], fog[1])


def test_plasma_matches_the_reference_in_place_diamond_square():
    """The level-by-level fractal equals the reference's in-place one drawn from the same stream."""
    size, decay = 32, 1.4
    rng = np.random.default_rng(5)
    maps, step, wibble = np.zeros((3, size, size)), size, 100.0
    while step >= 2:
        half = step // 2
        corners = maps[:, ::step, ::step]
        total = corners + np.roll(corners, -1, axis=1)
        total = total + np.roll(total, -1, axis=2)
        maps[:, half::step, half::step] = total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)
        centres = maps[:, half::step, half::step]
        total = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, ::step, half::step] = total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)
        total = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half::step, ::step] = total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)
        step, wibble = half, wibble / decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    expected = (maps / maps.max(axis=(1, 2), keepdims=True))[:, :28, :28]
    assert np.allclose(_plasma(3, np.random.default_rng(5), decay, size), expected)


def test_spatter_drops_grey_mud():
    out = corrupt("spatter", np.zeros((16, 28, 28), np.float32), seed=0)
    mud = out[out > 0]
    assert mud.size > 0 and np.all((mud >= 0.8 * 63 / 255 - 1e-6) & (mud <= 63 / 255 + 1e-6))


def test_dotted_line_adds_dashes_across_the_image():
    gaps = (np.arange(28) // 2 % 2 == 0) | (np.arange(28) == 27)  # the reference's: 0-1, 4-5, ..., 24-25, 27
    lines = corrupt("dotted_line", np.zeros((8, 28, 28), np.float32), seed=0)
    assert not lines[:, :, gaps].any() and np.all(lines[:, :, ~gaps].max(axis=1) > 0.75)  # every dash column
    assert np.all((lines > 0).sum(axis=1)[:, ~gaps] <= 3)  # a line, not a band
    out = corrupt("dotted_line", DIGITS, seed=0)
    assert np.array_equal(out[:, :, gaps], DIGITS[:, :, gaps])
    assert np.all(((out - DIGITS > 0.5) & (DIGITS == 0)).any(axis=(1, 2)))  # ink outside the digit


def test_zigzag_adds_a_zigzag_from_column_2_to_25():
    out = corrupt("zigzag", DIGITS, seed=0)
    added = out - DIGITS > 0.5
    assert not added[:, :, [0, 1, 26, 27]].any()
    assert np.all((added & (DIGITS == 0)).any(axis=(1, 2)))
    for image in added:
        cols = np.flatnonzero(image.any(axis=0))
        assert cols.min() <= 3 and cols.max() >= 23
        rows = [np.flatnonzero(image[:, c]).mean() for c in cols]
        assert np.ptp(np.diff(rows)) > 1  # ink rows go up and down: a zigzag, not a straight line


def test_motion_blur_trails_ink_mostly_sideways():
    blob = np.exp(-((ROWS - 13.5) ** 2 + (COLS - 13.5) ** 2) / 2).astype(np.float32)
    for image in corrupt("motion_blur", np.stack([blob] * 8), seed=2):
        dr, dc, sr, sc = moments(image) - moments(blob)
        assert abs(image.sum() / blob.sum() - 1) < 1e-3  # the kernel's weights sum to 1
        # ImageMagick's one-sided kernel (21 taps, sigma 3) at -45..45 degrees: the blob trails
        # ~2 px left and smears along columns at least as much as along rows
        assert -2.5 < dc < -1.5 and abs(dr) <= -dc and sc > 0.5 and sc >= sr - 0.05


def test_glass_blur_blurs_and_keeps_the_ink():
    out = corrupt("glass_blur", DIGITS, seed=0)
    for digit, image in zip(DIGITS, out, strict=True):
        assert abs(image.sum() / digit.sum() - 1) < 0.03
        assert np.abs(np.diff(image)).sum() < 0.95 * np.abs(np.diff(digit)).sum()
