"""The robustness suite on the shipped model and real MNIST: every condition, its files, the
naive baseline beside digitlab's preprocessing, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import digitlab

from digitlab import robustness
from digitlab.data import corruptions, negatives, synth
from digitlab.io.load import load


@pytest.fixture(scope="module")
def suites(mnist):
    model = load()
    return {
        reader: robustness.measure([model], mnist.x_test, mnist.y_test, n=40, reader=reader, corruption_n=60)[0]
        for reader in robustness.READERS
    }


def test_every_condition_is_measured(suites):
    rows = suites["digitlab"].rows
    names = [(r.group, r.condition) for r in rows]
    expected = [("clean", "clean")]
    expected += [("MNIST-C", c) for c in corruptions.NAMES] + [("real input", k) for k in synth.KINDS]
    expected += [("numbers", "2-5 digits")]
    expected += [("in the wild", c) for c in ("desk photos", "one height", "touching", "pages")]
    expected += [("not digits", k) for k in (*negatives.EVAL_KINDS, "all")]
    assert names == expected
    for r in rows:
        # Every share is a whole number of the row's n images: n is what was measured.
        shares = [r.declined] if r.group == "not digits" else [r.declined, r.read, r.accuracy]
        shares = [s for s in shares if s is not None]  # pages: found and read, nothing declined
        assert all(abs(share * r.n - round(share * r.n)) < 1e-6 for share in shares), r
        if r.group == "not digits":  # ranked by confidence, digits come far above non-digits
            assert r.accuracy is None and r.read is None and r.auroc > 0.9 and r.auroc_clean > 0.9, r
    by_name = {r.condition: r for r in rows}
    # The pooled row is measured on all the non-digits at once: it must agree with the kinds'.
    kinds = [r for r in rows if r.group == "not digits" and r.condition != "all"]
    assert by_name["all"].declined * by_name["all"].n == pytest.approx(sum(r.declined * r.n for r in kinds))
    assert by_name["blank"].declined == 1.0  # no ink: preprocessing declines every one
    assert by_name["clean"].accuracy > 0.9
    assert by_name["all"].n == 40 * len(negatives.EVAL_KINDS)
    # In the wild: one digit on a sheet on a desk, numbers at one height, pages of several numbers.
    assert by_name["desk photos"].read > 0.85 and by_name["one height"].read > 0.85
    assert by_name["pages"].n >= 3 * 40 // 5 and by_name["pages"].read > 0.85


def test_digitlab_preprocessing_beats_the_naive_resize_on_photos(suites):
    photo = {reader: next(r for r in s.rows if r.condition == "photo") for reader, s in suites.items()}
    # Dark ink on uneven paper, resized as is: the model sees a grey page and declines most.
    assert photo["digitlab"].read > photo["naive"].read + 0.4


def test_suite_files(suites, tmp_path):
    path = robustness.write(suites["digitlab"], tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == set(robustness.FILES)
    table = path.read_text()
    assert "| MNIST-C | fog |" in table and "AUROC" in table
    saved = json.loads((tmp_path / "robustness.json").read_text())
    assert saved["summary"]["mnist_c_worst"].split()[0] in corruptions.NAMES
    assert len((tmp_path / "robustness.csv").read_text().splitlines()) == len(suites["digitlab"].rows) + 1
    # The picture's tiles are 28x28 images the model saw.
    assert all(r.example is None or r.example.shape == (28, 28) for r in suites["digitlab"].rows)
    assert np.isfinite(saved["summary"]["auroc"])


def test_robustness_cli(data_dir, tmp_path):
    out = tmp_path / "suite"
    result = digitlab("robustness", "--n", "10", "--corruption-n", "10", "--out", str(out), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert "| not digits | all |" in result.stdout
    assert (out / "robustness.png").is_file()
    bad = digitlab("robustness", "--reader", "magic", "--data-dir", str(data_dir))
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--reader" in bad.stderr


def test_several_models_at_once_score_as_each_alone(mnist):
    # measure prepares each condition once for all models; each must score as if alone.
    first, second = load(), load()
    second.info = {**second.info, "name": "lenient", "threshold": 0.3}
    together = robustness.measure([first, second], mnist.x_test, mnist.y_test, n=10, corruption_n=10)
    for model, suite in zip((first, second), together, strict=True):
        (alone,) = robustness.measure([model], mnist.x_test, mnist.y_test, n=10, corruption_n=10)
        assert suite.model == model.info["name"] and suite.to_json() == alone.to_json()
    declined = [{r.condition: r.declined for r in s.rows} for s in together]
    assert declined[1]["all"] < declined[0]["all"]  # a lower threshold lets more non-digits through


def test_wilson_interval_matches_the_textbook_values():
    # Wilson (1927) for 50 of 100: 0.4038-0.5962; for none of 100 the upper end is z^2 / (n + z^2).
    assert robustness.wilson(0.5, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert robustness.wilson(0.0, 100) == pytest.approx((0.0, 1.96**2 / (100 + 1.96**2)), abs=1e-9)
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", his examples'
    # score intervals without continuity correction: lopsided cases, where the centre moves off k/n.
    published = {
        (81, 263): (0.2553, 0.3662),
        (15, 148): (0.0624, 0.1605),
        (0, 20): (0.0, 0.1611),
        (1, 29): (0.0061, 0.1718),
    }
    for (k, n), interval in published.items():
        assert robustness.wilson(k / n, n) == pytest.approx(interval, abs=1e-4), (k, n)


def test_the_table_gives_each_read_right_figure_its_interval(suites):
    table = robustness.markdown(suites["digitlab"])
    photo = next(r for r in suites["digitlab"].rows if r.condition == "photo")
    low, high = robustness.wilson(photo.read, photo.n)
    assert f"| {photo.read:.1%} ({low:.1%}-{high:.1%}) |" in table


def test_a_suite_read_back_from_the_cache_scores_as_one_made_afresh(mnist, monkeypatch, tmp_path):
    # The conditions' prepared images are kept (cache.py): read back, they score to the last bit
    # as when every image is rendered and prepared again.
    model = load()
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "inputs"))
    made, read_back = (robustness.measure([model], mnist.x_test, mnist.y_test, n=10, wild=True)[0] for _ in range(2))
    assert len(list((tmp_path / "inputs").glob("suite-*.npz"))) == len(synth.KINDS) + len(negatives.EVAL_KINDS) + 1
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", "off")
    afresh = robustness.measure([model], mnist.x_test, mnist.y_test, n=10, wild=True)[0]
    assert made.to_json() == read_back.to_json() == afresh.to_json()
