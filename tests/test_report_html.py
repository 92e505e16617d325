"""report.html: a real run's report as one self-contained page, the same content as report.md,
read in a real headless Chromium at a phone's and a laptop's width; and the plots' polish.

Screenshots land in test-artifacts/report-phone.png and report-laptop.png: look at them.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, digitlab

from digitlab.evaluation.html import render, write_html
from digitlab.files import read_json

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "laptop": {"width": 1366, "height": 900}}
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir) -> Path:
    """One real, tiny `digitlab train` (logistic regression, 1,000 images, one epoch)."""
    out = tmp_path_factory.mktemp("runs") / "logreg"
    args = ["--model", "logreg", "--subset", "1000", "--epochs", "1", "--out", str(out), "--data-dir", str(data_dir)]
    result = digitlab("train", *args)
    assert result.returncode == 0, result.stderr
    return out


class Page(HTMLParser):
    """What a browser would fetch (every src and href), the images in order, and the tables' cells."""

    def __init__(self, text: str):
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.tags: set[str] = set()
        self.tables: list[list[list[str]]] = []
        self.cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        self.links += [v or "" for k, v in attrs.items() if k in ("src", "href", "srcset", "action")]
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def markdown_tables(text: str) -> list[list[list[str]]]:
    """The cells of each pipe table in Markdown, emphasis and code marks dropped, rule rows skipped."""
    tables, previous = [], False
    for line in text.splitlines():
        row = line.startswith("|")
        if row and not previous:
            tables.append([])
        if row and not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()):
            tables[-1].append([re.sub(r"\*\*|`", "", c).strip() for c in line.strip().strip("|").split("|")])
        previous = row
    return tables


def test_report_html_is_self_contained_and_holds_the_markdown(run):
    markdown, page_path = (run / "report.md").read_text(), run / "report.html"
    assert page_path.is_file() and page_path.stat().st_mtime >= (run / "report.md").stat().st_mtime
    text = page_path.read_text()
    page = Page(text)
    assert page.links and all(link.startswith(("data:", "#")) for link in page.links), page.links[:5]
    assert not {"script", "link", "iframe", "object"} & page.tags
    assert "http://" not in text and "https://" not in text and "url(" not in text
    # Every picture of report.md, in order, embedded byte for byte.
    pictures = IMAGE.findall(markdown)
    assert {"curves.png", "confusion.png", "calibration.png", "robustness.png"} <= set(pictures)
    assert len(page.images) == len(pictures)
    for name, src in zip(pictures, page.images, strict=True):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (run / name).read_bytes(), name
    # The tables: the same cells, so the same numbers, as the Markdown.
    tables = markdown_tables(markdown)
    assert len(tables) >= 4 and page.tables == tables
    metrics = read_json(run / "metrics.json")
    assert f"{metrics['test_accuracy']:.2%}" in page.tables[0][1]
    assert re.findall(r"^#+ (.+)$", markdown, re.M) == re.findall(r"<h\d[^>]*>(.*?)</h\d>", text)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="Chromium not installed")
def test_report_reads_on_a_phone_and_a_laptop(run):
    from playwright.sync_api import sync_playwright

    pictures = len(IMAGE.findall((run / "report.md").read_text()))
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for name, viewport in VIEWPORTS.items():
            page = browser.new_page(viewport=viewport)
            fetched: list[str] = []
            page.on("request", lambda request, fetched=fetched: fetched.append(request.url))
            page.goto((run / "report.html").as_uri())
            page.wait_for_load_state("load")
            assert all(u == page.url or u.startswith("data:") for u in fetched), fetched  # nothing from elsewhere
            width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"{name}: the page scrolls sideways ({width[0]} > {width[1]} px)"
            images = page.evaluate(
                "[...document.images].map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().right])"
            )
            assert len(images) == pictures
            assert all(done and natural > 0 and right <= width[1] for done, natural, right in images), images
            # No table is wider than the screen, nor scrolls sideways in its own box: every value in view.
            tables = page.eval_on_selector_all(
                ".table", "els => els.map(e => [e.scrollWidth, e.clientWidth, e.getBoundingClientRect().right])"
            )
            assert all(scroll <= client and right <= width[1] for scroll, client, right in tables), (name, tables)
            cells = page.evaluate(STACKED)
            stacked = [c for c in cells if c["stacked"]]
            if name == "phone":  # the robustness table is one card a row, each value under its column's name
                assert stacked and all(c["right"] <= width[1] and c["font"] >= 12 for c in stacked)
                assert {"declined", "AUROC, clean digits"} <= {c["label"] for c in stacked if c["row"] == "not digits"}
            else:  # a laptop keeps every table's columns
                assert not stacked
            page.screenshot(path=ARTIFACTS / f"report-{name}.png", full_page=True)
            # A tap on a plot shows it at full size, to read its small print, scrolling in its own box.
            plot = page.locator("details.plot").first
            plot.locator("summary").click()
            natural = page.evaluate("document.querySelector('details.plot img').naturalWidth")
            assert plot.evaluate("d => [d.open, Math.round(d.querySelector('img').getBoundingClientRect().width)]") == [
                True,
                natural,
            ]
            assert page.evaluate("document.documentElement.scrollWidth") <= width[1]
            page.close()
        browser.close()


# Every visible body cell that is laid out as a card (its row a flex box): its column's name as
# shown, its row's first cell, its right edge and font size.
STACKED = """[...document.querySelectorAll('td')].filter(td => td.offsetParent).map(td => ({
    stacked: getComputedStyle(td.parentElement).display === 'flex',
    label: td.dataset.label, row: td.parentElement.cells[0].textContent,
    right: td.getBoundingClientRect().right, font: parseFloat(getComputedStyle(td).fontSize)}))"""


def test_epoch_ticks_are_whole_and_calibration_counts_every_test_image(run, tmp_path):
    from digitlab.evaluation.plots import plot_calibration, plot_curves

    history = {k: list(np.linspace(1, 2, 3)) for k in ("loss", "val_loss", "accuracy", "val_accuracy")}
    for ax in plot_curves(history, tmp_path / "curves.png").axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    one = plot_curves({k: [1.0] for k in history}, tmp_path / "one.png").axes[0]
    assert [t for t in one.get_xticks() if one.get_xlim()[0] <= t <= one.get_xlim()[1]] == [1]

    calibration = read_json(run / "metrics.json")["calibration"]
    top, counts = plot_calibration(calibration["bins"], calibration["ece"], tmp_path / "calibration.png").axes
    assert counts.get_shared_x_axes().joined(top, counts)
    heights = [round(bar.get_height()) for bar in counts.patches]
    assert heights == [b["count"] for b in calibration["bins"]] and sum(heights) == 10_000


def test_leaderboard_html_embeds_its_chart(tmp_path):
    from digitlab.experiments.compare import write_leaderboard
    from digitlab.training.record import DataUsed

    used = DataUsed(train=2000, val=400, test=10_000, subset=2000)
    rows = [
        {
            "model": m,
            "n": 2,
            "test_mean": acc,
            "test_std": 0.004,
            "errors": 10_000 * (1 - acc),
            "val_mean": acc,
            "params": 7850,
            "flops": 15_680,
            "train_s": 3.0,
            "images_per_s": 90_000.0,
            "data": used,
        }
        for m, acc in (("mlp", 0.93), ("logreg", 0.88))
    ]
    write_leaderboard(rows, tmp_path, seeds=2, overrides={"epochs": 1})
    page = Page((tmp_path / "leaderboard.html").read_text())
    assert len(page.images) == 1
    assert base64.b64decode(page.images[0].split(",", 1)[1]) == (tmp_path / "leaderboard.png").read_bytes()
    assert page.tables == markdown_tables((tmp_path / "leaderboard.md").read_text())
    assert page.tables[0][1][:3] == ["1", "mlp", "93.00% ± 0.40% (n=2)"]


def test_tune_report_names_the_best_trial_and_embeds_its_plots(tmp_path):
    import optuna

    from digitlab.experiments.tune import report

    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 3e-2, log=True)}
    study = optuna.create_study(study_name="mlp-html", direction="maximize")
    for number, (lr, value) in enumerate([(1e-3, 0.91), (3e-3, 0.95), (1e-2, None)]):
        state = optuna.trial.TrialState.COMPLETE if value else optuna.trial.TrialState.PRUNED
        attrs = {"config": {"model": "mlp", "lr": lr}, "run_dir": str(tmp_path / f"trial-{number:04d}")}
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": lr}, distributions=space, value=value, state=state, user_attrs=attrs
            )
        )
    summary = report(study, tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    assert summary["report"] == str(tmp_path / "report.html")
    assert "Trial **1**: validation accuracy **95.00%**" in markdown and "| lr | 0.003 |" in markdown
    page = Page((tmp_path / "report.html").read_text())
    assert page.tables == markdown_tables(markdown) and ["complete", "2"] in page.tables[0]
    assert len(page.images) == 2 and all(src.startswith("data:image/png;base64,") for src in page.images)


def test_a_missing_picture_becomes_a_note_and_raw_html_stays_text(tmp_path):
    page = render("# T\n\n<script>alert(1)</script>\n\n![gone](gone.png)\n", tmp_path)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<img" not in page and "figure not found: gone.png" in page
    (tmp_path / "a.md").write_text("# Title\n\n![dot](dot.png)\n")
    (tmp_path / "dot.png").write_bytes(base64.b64decode(DOT))
    assert Page(write_html(tmp_path / "a.md").read_text()).images == [f"data:image/png;base64,{DOT}"]


DOT = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
