"""The draw-a-digit page in a real headless Chromium against a real `digitlab serve`.

Chromium comes from Debian (`.ci/run` installs it); Playwright drives it without a browser
download of its own. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import os
import shutil

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


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Strokes in canvas fractions (0-1), drawn with the mouse in small steps like a hand."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
        page.mouse.up()


SEVEN = [[(0.30, 0.22), (0.72, 0.22), (0.50, 0.82)]]
ONE = [[(0.50, 0.18), (0.50, 0.84)]]
FOUR = [[(0.36, 0.18), (0.28, 0.58), (0.72, 0.58)], [(0.60, 0.30), (0.60, 0.86)]]


@pytest.mark.parametrize(("name", "strokes", "digit"), [("seven", SEVEN, "7"), ("one", ONE, "1"), ("four", FOUR, "4")])
def test_drawing_a_digit_shows_its_prediction(server, browser, name, strokes, digit):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.goto(server)
    page.wait_for_function("document.getElementById('model').textContent.startsWith('Model:')")
    assert page.locator("#status").inner_text() == "Waiting for a digit."
    draw(page, strokes)
    settled = "document.querySelector('.result').dataset.state === 'ok'"
    page.wait_for_function(f"{settled} && document.getElementById('digit').textContent === '{digit}'", timeout=15_000)
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
    draw(page, strokes)
    page.wait_for_timeout(400)  # the last stroke's request is on its way: wait for its answer
    page.wait_for_function("['ok', 'declined'].includes(document.querySelector('.result').dataset.state)")
    status = page.locator("#status").inner_text()
    assert page.locator(".result").get_attribute("data-state") == "declined", status
    assert status.startswith("Does not look like a digit")
    assert page.locator("#digit").inner_text() == "?"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"draw-{name}.png")
    page.close()
