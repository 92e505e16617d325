"""MNIST-style preprocessing, checked against MNIST itself and on realistic renders."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from digitlab.data import synth
from digitlab.errors import DigitlabError
from digitlab.image.decode import _draft, _reduce, read_image
from digitlab.image.preprocess import (
    BOX,
    SIZE,
    _centre_of_mass,
    _histogram,
    _may_be_wider,
    _opening_size,
    _square,
    ink_image,
    label_marks,
    naive,
    otsu,
    percentile,
    prepare,
    stroke_width,
)


def png(array: np.ndarray, mode: str | None = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_otsu_splits_two_populations():
    rng = np.random.default_rng(0)
    paper, ink = 0.1 + rng.normal(0, 0.02, 900), 0.8 + rng.normal(0, 0.02, 100)
    cut = otsu(np.clip(np.concatenate([paper, ink]), 0, 1))
    assert paper.max() < cut < ink.min()
    assert abs(cut - (paper.max() + ink.min()) / 2) < 0.05  # mid-gap, away from both classes


@pytest.mark.parametrize("bins", [64, 256, 1024])
def test_histogram_bins_as_floor_of_value_times_bins(bins):
    """The integer binning (as bytes up to 256 bins, 16-bit beyond) counts exactly as numpy's
    floor(value * bins) with 1.0 in the last bin; values out of [0, 1] or NaN take the general
    path, which leaves them out."""
    rng = np.random.default_rng(1)
    edges = np.arange(bins + 1, dtype=np.float32) / bins  # every bin's exact edges, 0 and 1 among them
    values = np.concatenate([rng.random(10_000, np.float32), edges, np.nextafter(edges, np.float32(0))])
    floor = np.floor(values.astype(np.float64) * bins).astype(int)
    expected = np.bincount(np.minimum(floor, bins - 1), minlength=bins)
    assert np.array_equal(_histogram(values.reshape(2, -1), bins), expected)
    wild = np.concatenate([values, np.float32([-0.5, 1.5, np.nan])])
    assert np.array_equal(_histogram(wild, bins), expected)


def test_percentile_is_numpys_to_the_bit():
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 10, 37, 400, 2501):
        for dtype in (np.float32, np.float64):
            values = (rng.random(n) ** 3).astype(dtype)
            for q in (0, 10, 50, 90, 99.5, 100):
                expected = np.percentile(values, q)
                got = percentile(values, q)
                assert got == expected and type(got) is type(expected), (n, dtype, q)


def test_marks_count_what_opencv_counts():
    rng = np.random.default_rng(2)
    mask = rng.random((120, 90)) > 0.6
    labels, sizes = label_marks(mask)
    _, expected, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=4)
    assert np.array_equal(labels, expected) and np.array_equal(sizes, stats[1:, cv2.CC_STAT_AREA])


def test_the_opening_is_wider_than_the_strokes_and_its_size_the_exact_widths():
    """A thin pen keeps the size the frame gives; a fat marker's exact stroke width sets it
    (the chamfer estimate only spares the exact measure where the strokes are far thinner)."""
    canvas = np.zeros((300, 300), bool)
    canvas[100:200, 60:64] = True  # a 4 px pen stroke
    assert _opening_size(canvas, 49) == 49
    canvas[20:280:10, 100:280] = True  # thin rules round a dark patch (a shadow), which a large square fits
    canvas[30:60, 100:130] = True
    assert _may_be_wider(canvas, 49 / 3) and 3 * stroke_width(canvas) < 49
    assert _opening_size(canvas, 49) == 49
    marker = np.zeros((300, 300), bool)
    marker[100:200, 150:190] = True  # a 40 px marker
    assert _opening_size(marker, 49) == int(3 * stroke_width(marker)) | 1 > 49


def test_a_stroke_width_is_the_whole_frame_s_wherever_the_ink_lies():
    """Measured on the ink's box and a pixel round it: scipy's exact width of the whole frame,
    with the ink inside it, at its edges, or with a speck far off."""
    mask = ragged_marker()
    for top, left in [(60, 70), (0, 0), (-20, -30), (100, 150)]:  # cut by the frame's edges, the last two
        frame = np.zeros((260, 330), bool)
        y, x = max(top, 0), max(left, 0)
        part = mask[y - top :, x - left :][: frame.shape[0] - y, : frame.shape[1] - x]
        frame[y : y + part.shape[0], x : x + part.shape[1]] = part
        for _ in range(2):  # then with a speck in the far corner: the ink's box is the whole frame
            assert stroke_width(frame) == pytest.approx(_scipy_stroke_width(frame), rel=1e-6)
            assert stroke_width(frame, precise=False) == _chamfer_stroke_width(frame)
            frame[-1, -1] = True


def _chamfer_stroke_width(mask: np.ndarray) -> float:
    """OpenCV's 5x5 chamfer stroke width, measured on the whole of `mask`."""
    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    ridge = (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REFLECT)) & mask
    return float(2 * distance[ridge].mean(dtype=np.float64))


def test_the_paper_is_scipys_grey_opening_and_mean_within_a_sixteen_bit_step(mnist):
    """Uneven light taken off as scipy.ndimage's float opening and mean would take it off."""
    images, _ = synth.render("photo", mnist.x_test, mnist.y_test, n=3, seed=4)
    for data in images:
        grey = read_image(data)
        ink, inverted = ink_image(grey)
        assert inverted
        light = 1.0 - grey
        size = _opening_size(light > otsu(light), max(3, int(max(light.shape) / 6)))
        opened = ndimage.grey_opening(light, size=size, mode="reflect")
        paper = ndimage.uniform_filter(opened, size=size, mode="reflect")
        assert np.abs(ink - np.clip(light - paper, 0, 1)).max() < 2e-5


def ragged_marker() -> np.ndarray:
    """Fat strokes with ragged edges (seeded): a mask whose chamfer stroke width is 0.85 of the exact."""
    rng = np.random.default_rng(5)
    for _ in range(4):
        strokes = np.zeros((200, 200), np.uint8)
        for _ in range(rng.integers(1, 4)):
            ends = [tuple(int(v) for v in rng.integers(20, 180, 2)) for _ in range(2)]
            cv2.line(strokes, *ends, 1, int(rng.integers(8, 30)))
        grain = cv2.GaussianBlur(rng.random((200, 200)).astype(np.float32), (0, 0), 1.5)
        core = cv2.erode(strokes, np.ones((5, 5), np.uint8)) > 0
        mask = (strokes > 0) & ((grain > 0.47) | core)
    return mask


def test_the_chamfer_margin_leaves_the_exact_width_where_it_matters():
    """The chamfer width alone would keep the frame's size here; with the margin the exact width
    is measured, and sets the opening."""
    mask = ragged_marker()
    exact, chamfer = stroke_width(mask), stroke_width(mask, precise=False)
    assert 3 * chamfer <= 33 < 3 * exact
    assert _opening_size(mask, 33) == int(3 * exact) | 1


def test_output_follows_mnist_conventions(mnist):
    """A large dark-on-light rendering of an MNIST digit comes back with MNIST's geometry."""
    digit = mnist.x_test[0].squeeze()
    big = np.kron(1.0 - digit, np.ones((10, 10), np.float32))  # 280x280, black ink on white
    prepared = prepare(png((big * 255).astype(np.uint8)))
    out = prepared.image
    assert prepared.inverted and prepared.reason is None
    assert out.shape == (SIZE, SIZE) and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    rows, cols = np.flatnonzero(out.max(1) > 0.1), np.flatnonzero(out.max(0) > 0.1)
    assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) in (BOX - 1, BOX, BOX + 1)
    cy, cx = ndimage.center_of_mass(out)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
    # Close to the original MNIST digit it came from.
    assert np.corrcoef(out.ravel(), digit.ravel())[0, 1] > 0.7


def test_polarity_either_way_gives_the_same_digit(mnist):
    digit = (np.kron(mnist.x_test[1].squeeze(), np.ones((8, 8))) * 255).astype(np.uint8)
    light_on_dark, dark_on_light = prepare(png(digit)), prepare(png(255 - digit))
    assert not light_on_dark.inverted and dark_on_light.inverted
    assert np.abs(light_on_dark.image - dark_on_light.image).mean() < 0.02


def test_transparent_canvas_takes_ink_from_alpha(mnist):
    digit = (np.kron(mnist.x_test[2].squeeze(), np.ones((10, 10))) * 255).astype(np.uint8)
    rgba = np.zeros((*digit.shape, 4), np.uint8)
    rgba[..., 3] = digit  # white... or any colour: ink is where it is opaque
    assert prepare(png(rgba, "RGBA")).reason is None
    assert prepare(png(rgba, "RGBA")).image.max() > 0.9


def test_faint_transparent_ink_and_16_bit_greyscale_read_like_the_plain_digit(mnist):
    """Ink at 40% opacity on a transparent canvas, and a dark digit on light paper stored as
    16-bit greyscale, give the same 28x28 as the plain 8-bit image."""
    digit = np.kron(mnist.x_test[3].squeeze(), np.ones((8, 8)))
    plain = prepare(png((255 - digit * 255).astype(np.uint8))).image
    rgba = np.zeros((*digit.shape, 4), np.uint8)
    rgba[..., 3] = (digit * 0.4 * 255).astype(np.uint8)
    sixteen = (65535 - digit * 50000).astype(np.uint16)
    for image in (png(rgba, "RGBA"), png(sixteen, None)):
        prepared = prepare(image)
        assert prepared.reason is None
        assert np.abs(prepared.image - plain).mean() < 0.03


def test_pure_noise_is_not_a_digit():
    noise = np.random.default_rng(0).integers(0, 256, (100, 100)).astype(np.uint8)
    assert "scattered marks" in prepare(png(noise)).reason


def test_blank_and_noise_only_images_have_no_ink():
    assert prepare(png(np.full((100, 100), 255, np.uint8))).reason.startswith("no ink")
    speckle = np.full((200, 200), 250, np.uint8) - np.random.default_rng(0).integers(0, 12, (200, 200)).astype(np.uint8)
    assert prepare(png(speckle)).reason.startswith("no ink")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"definitely not an image", "not a readable image"),
        (png(np.zeros((50, 50), np.uint8))[:60], "not a readable image"),  # truncated PNG
    ],
)
def test_bad_images_are_refused_clearly(payload, message):
    with pytest.raises(DigitlabError, match=message) as refused:
        read_image(payload)
    assert "object at 0x" not in str(refused.value)  # PIL's own text names a Python object


def test_decompression_bomb_is_refused():
    bomb = io.BytesIO()
    Image.new("L", (9000, 9000)).save(bomb, format="PNG")  # 81 Mpx of zeros: a few KB compressed
    assert len(bomb.getvalue()) < 200_000
    with pytest.raises(DigitlabError, match="too large"):
        read_image(bomb.getvalue())


def test_all_synthetic_kinds_render(mnist):
    for kind in synth.KINDS:
        images, labels = synth.render(kind, mnist.x_test, mnist.y_test, n=3, seed=1)
        assert len(images) == 3 and len(labels) == 3
        assert prepare(images[0]).reason is None and naive(images[0]).shape == (28, 28)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "WEBP"])
def test_every_common_format_gives_the_same_digit(mnist, fmt):
    digit = mnist.x_test[3].squeeze()
    image = Image.fromarray(((1 - np.kron(digit, np.ones((5, 5)))) * 255).astype(np.uint8)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    reference = prepare(png(((1 - np.kron(digit, np.ones((5, 5)))) * 255).astype(np.uint8))).image
    assert np.abs(prepare(buffer.getvalue()).image - reference).mean() < 0.03


def test_a_colour_jpeg_is_read_as_the_brightness_it_stores(mnist):
    """Decoded as its luma alone: the grey a colour decode weighs back, within JPEG's rounding."""
    digit = (1 - np.kron(mnist.x_test[5].squeeze(), np.ones((9, 9)))) * 200 + 30
    rgb = np.stack([digit, digit * 0.8, digit * 0.6 + 40], -1).astype(np.uint8)  # ink on tinted paper
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    weighed = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"), np.float32) / 255
    stored = Image.open(io.BytesIO(buffer.getvalue()))
    stored.draft("L", stored.size)  # the decoder's own luma plane
    assert np.array_equal(read_image(buffer.getvalue()), np.asarray(stored, np.float32) / 255)
    assert np.abs(read_image(buffer.getvalue()) - weighed).max() <= 2.5 / 255


def test_a_phone_s_mpo_jpeg_and_a_thin_strip_are_decoded_reduced_and_whole():
    """MPO (a JPEG with preview images after it, as phones write) is drafted as a JPEG is; a
    1x2048 strip is never drafted to nothing (once: a ZeroDivisionError, a traceback)."""
    buffer = io.BytesIO()
    preview = Image.new("RGB", (40, 30))
    Image.new("RGB", (4000, 3000), "white").save(buffer, "MPO", save_all=True, append_images=[preview])
    image = Image.open(io.BytesIO(buffer.getvalue()), formats=("JPEG",))
    assert image.format == "MPO"
    _draft(image)
    assert image.mode == "L" and max(image.size) <= 2000
    buffer = io.BytesIO()
    Image.new("RGB", (1, 2048), "white").save(buffer, "JPEG")
    assert read_image(buffer.getvalue()).shape == (1024, 1)


def test_a_large_palette_png_is_read_in_bounded_memory(tmp_path):
    """36 MP of transparent palette PNG (61 KB on disk) read as float RGBA took 1.1 GB; it is
    box-reduced while still 8-bit, a band at a time. Measured in a child process: its peak RSS
    is its own, counted from what it held before reading."""
    import subprocess
    import sys

    from PIL import ImageDraw

    image = Image.new("P", (6000, 6000), 0)
    image.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    ImageDraw.Draw(image).line([(2000, 1000), (4000, 1000), (3000, 5000)], fill=1, width=300)
    path = tmp_path / "seven.png"
    image.save(path, transparency=0)
    child = (
        "import sys; from digitlab.image.preprocess import prepare\n"
        "def kib(field):\n"
        "    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith(field))\n"
        "before = kib('VmRSS'); p = prepare(sys.argv[1]); print(p.reason, (kib('VmHWM') - before) // 1024)"
    )
    out = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True, text=True, check=True).stdout
    reason, growth_mib = out.split()
    assert reason == "None"  # the 7 is still found
    assert int(growth_mib) < 100  # measured: 55 MiB; 315 converted whole to LA; 1,133 read whole as float RGBA


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "I;16", "CMYK", "1", "F"])
def test_a_large_image_reduced_a_band_at_a_time_is_the_whole_image_reduced(mode):
    """Bands a whole number of boxes tall: the very pixels of converting and reducing it whole."""
    rng = np.random.default_rng(len(mode))
    size = (2100, 3300)  # reduced by 3; neither side a multiple of it, nor of a band
    if mode == "P":
        image = Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8), "P")
        image.putpalette(rng.integers(0, 256, 768).tolist())
        image.info["transparency"] = bytes(rng.integers(0, 256, 256, dtype=np.uint8))
    elif mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, size[::-1], dtype=np.uint16))
    elif mode == "F":
        image = Image.fromarray(rng.random(size[::-1], dtype=np.float32))
    else:
        image = Image.fromarray(rng.integers(0, 256, (*size[::-1], 4), dtype=np.uint8), "RGBA").convert(mode)
    read_as = {"P": "LA", "I;16": "I", "CMYK": "L", "1": "L"}.get(mode, mode)
    whole = image.convert(read_as).reduce(3)
    assert np.array_equal(np.asarray(_reduce(image)), np.asarray(whole))


@pytest.mark.parametrize("size", [2, 3, 4, 7])
def test_grey_morphology_and_centre_of_mass_are_scipys_value_for_value(size):
    """Preprocessing's own versions, so that serving does not import SciPy, read as before."""
    rng = np.random.default_rng(size)
    for shape in [(1, 1), (5, 9), (28, 13), (40, 40)]:
        crop = (rng.random(shape) * (rng.random(shape) < 0.6)).astype(np.float32)
        assert np.array_equal(_square(cv2.dilate, crop, size), ndimage.grey_dilation(crop, size=size))
        assert np.array_equal(_square(cv2.erode, crop, size), ndimage.grey_erosion(crop, size=size))
        if crop.sum() > 0:
            assert _centre_of_mass(crop) == ndimage.center_of_mass(crop)
    for shape in [(1, 1), (40, 2), (3, 17)]:  # all ink: the one case measured without OpenCV
        mask = np.ones(shape, bool)
        assert stroke_width(mask) == pytest.approx(_scipy_stroke_width(mask), abs=0)


def _scipy_stroke_width(mask: np.ndarray) -> float:
    distance = ndimage.distance_transform_edt(mask).astype(np.float32)
    ridge = (distance >= ndimage.maximum_filter(distance, size=3, mode="reflect")) & mask
    return float(2 * distance[ridge].mean(dtype=np.float64))


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_12_megapixel_phone_jpeg_is_read_and_boxed_where_it_stands(mnist, orientation):
    # A large JPEG is decoded at a fraction of its size (draft); the box must still be in the
    # coordinates of the image as sent, turned upright by its EXIF orientation.
    from digitlab.read import load, predict_image

    digit = mnist.x_test[np.flatnonzero(mnist.y_test == 3)[0]].squeeze()
    page = np.full((3000, 4000), 235, np.uint8)
    ink = np.asarray(Image.fromarray((digit * 255).astype(np.uint8)).resize((800, 800), Image.Resampling.BICUBIC))
    page[1000:1800, 2500:3300] = np.minimum(page[1000:1800, 2500:3300], 255 - ink)
    upright = Image.fromarray(page).convert("RGB")
    # Orientation 6: the file holds the picture turned a quarter anticlockwise; viewers turn it back.
    stored = upright if orientation == 1 else upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    answer = predict_image(load(None), buffer.getvalue())
    assert answer["digit"] == 3
    rows, cols = np.flatnonzero(ink.max(1) > 25) + 1000, np.flatnonzero(ink.max(0) > 25) + 2500
    expected = np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1])
    assert np.abs(np.array(answer["box"]) - expected).max() <= 40, (answer["box"], expected)  # 1% of the image
