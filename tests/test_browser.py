"""The draw-a-digit page in a real headless Chromium against a real `digitlab serve`.

Chromium comes from Debian (`.ci/run` installs it); Playwright drives it without a browser
download of its own. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
from conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if CHROMIUM is None:
    if os.environ.get("CI"):
        pytest.fail("Chromium is missing: .ci/run installs Debian's chromium", pytrace=False)
    pytest.skip("Chromium not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server():
    from digitlab.serve.app import running

    with running() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def draw(page, strokes: list[list[tuple[float, float]]], steps: int = 12) -> None:
    """Strokes in canvas fractions (0-1), drawn with the mouse in small steps like a hand."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=steps)
        page.mouse.up()


SEVEN = [[(0.30, 0.22), (0.72, 0.22), (0.50, 0.82)]]
ONE = [[(0.50, 0.18), (0.50, 0.84)]]
FOUR = [[(0.36, 0.18), (0.28, 0.58), (0.72, 0.58)], [(0.60, 0.30), (0.60, 0.86)]]


def settle(page, sent: list[str], strokes: int) -> None:
    """Until the page has asked for a reading per stroke (the browser may lag behind the mouse) and
    shows the last answer; then a moment more, in which a duplicate would go out."""
    deadline = time.monotonic() + 15
    while len(sent) < strokes and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    page.wait_for_function("!['reading', 'empty'].includes(document.querySelector('.result').dataset.state)")
    page.wait_for_timeout(500)


def predictions(page) -> list[str]:
    """The URLs of every reading the page asks for, as they go out."""
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/v1/predict" in r.url and r.method == "POST" else None)
    return sent


@pytest.mark.parametrize(("name", "strokes", "digit"), [("seven", SEVEN, "7"), ("one", ONE, "1"), ("four", FOUR, "4")])
def test_drawing_a_digit_shows_its_prediction(server, browser, name, strokes, digit):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.goto(server)
    page.wait_for_function("document.getElementById('model').textContent.startsWith('Model:')")
    assert page.locator("#status").inner_text() == "Waiting for a digit."
    sent = predictions(page)
    draw(page, strokes)
    settle(page, sent, len(strokes))
    assert len(sent) == len(strokes), sent  # one reading per stroke, when the pen lifts
    assert page.locator(".result").get_attribute("data-state") == "ok", page.locator("#status").inner_text()
    assert page.locator("#digit").inner_text() == digit
    assert page.locator("#status").inner_text().startswith("Confidence")
    widths = page.eval_on_selector_all(".bar .fill", "els => els.map(e => parseFloat(e.style.width))")
    assert max(widths) == widths[int(digit)] and abs(sum(widths) - 100) < 1.5
    lit = page.evaluate("""() => {
        const d = document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] > 128; return n; }""")
    assert 15 <= lit < 400  # the 28x28 the model saw holds a digit's worth of ink (a "1" lights ~20)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"draw-{name}.png")
    assert page.locator("#hint").is_hidden()  # the prompt does not cover the drawing
    for _ in strokes:  # undo takes back one stroke at a time, down to the empty canvas
        page.click("#undo")
    page.wait_for_function("document.getElementById('digit').textContent === '–'")
    assert page.locator("#undo").is_disabled()
    page.close()


def test_phone_layout_and_dropped_file(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page.goto(server)
    pad = page.locator("#pad").bounding_box()
    assert pad["width"] <= 390 and pad["width"] > 250  # the canvas fits a phone screen
    # A blank image file: the page must say there is no digit rather than guess.
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("L", (120, 120), 255).save(blank)
    page.set_input_files("#file", str(blank))
    page.wait_for_function("document.querySelector('.result').dataset.state === 'declined'")
    assert page.locator("#status").inner_text().startswith("No ink")
    assert page.locator("#digit").inner_text() == "?"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "phone-declined.png", full_page=True)
    # The tab's icon is the page's own file, and the API's documentation is a tap away.
    icon = page.evaluate("""async () => {
        const r = await fetch(document.querySelector('link[rel=icon]').href);
        return [r.status, r.headers.get('content-type'), (await r.text()).slice(0, 4)]; }""")
    assert icon == [200, "image/svg+xml", "<svg"]
    assert page.get_attribute("#api-docs", "href") == "/docs"
    assert page.evaluate("fetch('/docs').then(r => r.status)") == 200
    page.close()


def test_a_large_phone_photo_is_scaled_down_before_upload(server, browser, tmp_path, mnist_sevens):
    """A 12-megapixel photo of 4.7 MB, over the server's 4 MiB limit: the page sends it smaller."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paper = np.full((4000, 3000), 225, np.float32) + rng.normal(0, 10, (4000, 3000)).astype(np.float32)
    ink = np.asarray(Image.fromarray(mnist_sevens).resize((1800, 1800), Image.BILINEAR), np.float32) / 255
    paper[1100:2900, 600:2400] *= 1 - 0.85 * ink
    photo = tmp_path / "IMG_0001.jpg"
    Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)).save(photo, quality=92)
    assert photo.stat().st_size > 4 * 1024 * 1024 + 300_000
    page = browser.new_page(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page.goto(server)
    page.wait_for_function("document.getElementById('model').textContent.startsWith('Model:')")
    bodies: list[int] = []
    page.on("request", lambda r: bodies.append(len(r.post_data_buffer or b"")) if "/v1/predict" in r.url else None)
    page.set_input_files("#file", str(photo))
    page.wait_for_function("['ok', 'declined', 'error'].includes(document.querySelector('.result').dataset.state)")
    assert page.locator(".result").get_attribute("data-state") == "ok", page.locator("#status").inner_text()
    assert page.locator("#digit").inner_text() == "7"
    assert len(bodies) == 1 and bodies[0] < 1024 * 1024  # 1600 px on the longer side, as a JPEG
    page.close()


@pytest.fixture(scope="module")
def mnist_test(data_dir):
    from digitlab.data.mnist import load_raw

    raw = load_raw(data_dir, download_missing=False)
    return raw.test_images, raw.test_labels


@pytest.fixture(scope="module")
def mnist_sevens(mnist_test):
    return mnist_test[0][0]  # the test split's first image, a 7


def pen_strokes(digit: np.ndarray, scale: int = 4) -> list[list[tuple[float, float]]]:
    """A 28x28 MNIST digit as a hand would write it: its skeleton walked pixel to pixel, pen
    lifted where the walk ends, in fractions of the 28-px box."""
    from PIL import Image
    from skimage.morphology import skeletonize

    big = np.asarray(Image.fromarray(digit).resize((28 * scale,) * 2, Image.BILINEAR)) > 100
    left = {(int(y), int(x)) for y, x in np.argwhere(skeletonize(big))}
    steps = ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))

    def around(p):
        return [(p[0] + dy, p[1] + dx) for dy, dx in steps if (p[0] + dy, p[1] + dx) in left]

    strokes = []
    while left:
        p = min(left, key=lambda q: (len(around(q)), q))  # start at an end of a line where there is one
        path = [p]
        left.discard(p)
        while nearby := around(p):
            p = nearby[0]
            left.discard(p)
            path.append(p)
        if len(path) >= 3 * scale:  # a spur of the skeleton, not a stroke
            strokes.append([(x / (28 * scale), y / (28 * scale)) for y, x in path[::scale] + path[-1:]])
    return strokes


def side_by_side(digits: list[np.ndarray], aspect: float = 3, height: float = 0.75, gap: float = 0.2):
    """The digits' strokes written in a row across a pad `aspect` times as wide as high, in the
    pad's fractions: each 28-px box `height` of the pad high, the gap a fifth of a digit's height."""
    pitch = 0.8 * height / aspect + gap * height / aspect  # MNIST's digits fill ~20 of the box's 28 px
    left = 0.5 - (len(digits) * pitch - gap * height / aspect) / 2 - 0.1 * height / aspect
    return [
        [(left + i * pitch + x * height / aspect, (1 - height) / 2 + y * height) for x, y in stroke]
        for i, digit in enumerate(digits)
        for stroke in pen_strokes(digit)
    ]


# Test-split digits that today's reader reads whole when written this way (`digitlab predict --number`).
NUMBER = (1, 2, 3, 4)


def test_writing_a_number_on_the_wide_pad(server, browser, mnist_test):
    images, labels = mnist_test
    expected = "".join(str(labels[i]) for i in NUMBER)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(server)
    page.wait_for_function("document.getElementById('model').textContent.startsWith('Model:')")
    page.click("#mode-number")
    assert page.locator("#status").inner_text() == "Waiting for a number."
    box = page.locator("#pad").bounding_box()
    assert abs(box["width"] / box["height"] - 3) < 0.05 and box["width"] > 700  # the wide pad
    sent = predictions(page)
    strokes = side_by_side([images[i] for i in NUMBER])
    draw(page, strokes, steps=1)
    settle(page, sent, len(strokes))
    assert page.locator(".result").get_attribute("data-state") == "ok", page.locator("#status").inner_text()
    assert page.locator("#digit").inner_text() == expected
    assert page.locator("#digits li").count() == len(expected)
    assert page.locator("#status").inner_text().startswith(f"{len(expected)} digits")
    assert len(sent) == len(strokes) and all("number=true" in url for url in sent)
    assert page.evaluate("document.getElementById('seen').width") == 28 * len(expected)
    assert page.evaluate("location.hash") == "#number"  # a link to the number pad
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "draw-number.png")
    page.click("#mode-digit")  # back to one digit: the square pad, empty
    box = page.locator("#pad").bounding_box()
    assert abs(box["width"] - box["height"]) < 2 and page.locator("#status").inner_text() == "Waiting for a digit."
    page.close()


LETTER_A = [[(0.30, 0.80), (0.50, 0.20), (0.70, 0.80)], [(0.38, 0.58), (0.62, 0.58)]]
HASH = [
    [(0.42, 0.20), (0.36, 0.82)],
    [(0.64, 0.20), (0.58, 0.82)],
    [(0.22, 0.40), (0.80, 0.40)],
    [(0.20, 0.62), (0.78, 0.62)],
]


@pytest.mark.parametrize(("name", "strokes"), [("letter-a", LETTER_A), ("hash", HASH)])
def test_drawing_a_non_digit_says_it_is_not_a_digit(server, browser, name, strokes):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.goto(server)
    page.wait_for_function("document.getElementById('model').textContent.startsWith('Model:')")
    sent = predictions(page)
    draw(page, strokes)
    settle(page, sent, len(strokes))  # the last stroke's answer, not an earlier one's
    status = page.locator("#status").inner_text()
    assert page.locator(".result").get_attribute("data-state") == "declined", status
    assert status.startswith("Does not look like a digit")
    assert page.locator("#digit").inner_text() == "?"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"draw-{name}.png")
    page.close()
