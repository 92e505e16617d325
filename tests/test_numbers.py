"""Numbers as people write them, read with the shipped model: one height, wide digits, touching
neighbours, a broken stroke, several numbers on a page (image/segment.py, read/number.py)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import digitlab
from PIL import Image

from digitlab.data import lines
from digitlab.image import segment
from digitlab.read import load, predict_image
from digitlab.read.number import read_numbers


def png(ink: np.ndarray) -> bytes:
    """White ink on black (floats in [0, 1]) as dark ink on white paper, a PNG's bytes."""
    buffer = io.BytesIO()
    Image.fromarray(((1 - np.clip(ink, 0, 1)) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def digit(mnist, label: int, nth: int = 0) -> np.ndarray:
    return mnist.x_test[np.flatnonzero(mnist.y_test == label)[nth]].reshape(28, 28)


def written(mnist, labels: str, touching: bool = False, seed: int = 0) -> bytes:
    """`labels` written at one height (data/lines.py, validation settings), on paper with a margin."""
    ink = lines.write([digit(mnist, int(c)) for c in labels], np.random.default_rng(seed), "validation", touching)
    return png(np.pad(ink, 30))


@pytest.fixture(scope="module")
def model():
    return load(None)  # the shipped model


def test_digits_are_found_left_to_right(mnist):
    layout = segment.find(written(mnist, "207"), page=False)
    groups = layout.lines[0][0]
    assert len(groups) == 3
    assert [g.box[1] for g in groups] == sorted(g.box[1] for g in groups)


def test_a_broken_stroke_stays_with_its_digit(mnist, model):
    # A mark a fifth of the digits' height just right of the 2, clear of its columns: a piece of
    # its stroke where the pen skipped. On its own it would be read as a fourth digit.
    ink = np.pad(lines.write([digit(mnist, c) for c in (2, 0, 7)], np.random.default_rng(0), "validation"), 30)
    right = np.flatnonzero(ink[:, : ink.shape[1] // 3].max(0) > 0.1)[-1]
    ink[40:52, right + 4 : right + 16] = 1.0
    assert predict_image(model, png(ink), number=True)["number"] == "207"


def test_a_wide_digit_is_read_whole(mnist, model):
    # A flat 2, 1.4 times as wide as it stands tall: one digit, not two touching ones.
    two = digit(mnist, 2)
    rows, cols = np.flatnonzero(two.max(1) > 0.1), np.flatnonzero(two.max(0) > 0.1)
    crop = Image.fromarray((two[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] * 255).astype(np.uint8))
    flat = np.asarray(crop.resize((84, 60), Image.Resampling.BICUBIC), np.float32) / 255
    four = np.asarray(Image.fromarray((digit(mnist, 4) * 255).astype(np.uint8)).resize((60, 60)), np.float32) / 255
    ink = np.pad(np.concatenate([flat, np.zeros((60, 14)), four[:, 8:-8]], axis=1), 30)
    answer = predict_image(model, png(ink), number=True)
    assert answer["number"] == "24", answer["reason"]
    assert len(answer["digits"]) == 2


def test_touching_neighbours_are_split(mnist, model):
    # Not every touching number is read yet (docs/robustness/bench-numbers.md): these are.
    for labels in ("27", "203", "86"):
        answer = predict_image(model, written(mnist, labels, touching=True), number=True)
        assert answer["number"] == labels, (labels, answer["reason"], answer["digits"])


@pytest.mark.parametrize("line_sure", [0.8, 0.0], ids=["shipped", "line-reader-always-sure"])
def test_a_part_that_is_no_digit_is_named(mnist, model, monkeypatch, line_sure):
    # The line reader reads a blot as digits; however sure it is, a part the classifier takes
    # for no digit keeps the number declined.
    from digitlab.read import line

    monkeypatch.setattr(line, "LINE_SURE", line_sure)
    ink = np.pad(lines.write([digit(mnist, c) for c in (3, 8)], np.random.default_rng(1), "validation"), 30)
    tall = ink.shape[0] - 60
    blot = np.zeros((ink.shape[0], tall))
    blot[30 : 30 + tall, : tall - 8] = 1.0  # a filled square: ink, but no digit
    answer = predict_image(model, png(np.concatenate([ink, blot], axis=1)), number=True)
    assert answer["number"] is None
    assert answer["reason"].startswith("part 3 of 3 does not look like a digit")
    assert [d["digit"] for d in answer["digits"][:2]] == [3, 8]


def page(mnist) -> tuple[bytes, list[str]]:
    """Three numbers on two lines: "51" and "903" on the first, "42" indented on the second."""
    rng = np.random.default_rng(3)

    def number(text):
        return lines.write([digit(mnist, int(c), 1) for c in text], rng, "validation", height=50)

    first, second, third = number("51"), number("903"), number("42")
    tall = max(first.shape[0], second.shape[0])
    top = np.concatenate(
        [np.pad(first, ((tall - first.shape[0], 0), (0, 120))), np.pad(second, ((tall - second.shape[0], 0), (0, 0)))],
        axis=1,
    )
    bottom = np.pad(third, ((0, 0), (60, max(0, top.shape[1] - third.shape[1] - 60))))
    width = max(top.shape[1], bottom.shape[1])
    sheet = np.concatenate(
        [np.pad(top, ((0, 60), (0, width - top.shape[1]))), np.pad(bottom, ((0, 0), (0, width - bottom.shape[1])))]
    )
    return png(np.pad(sheet, 40)), ["51", "903", "42"]


def test_a_page_of_numbers_in_reading_order(mnist, model):
    image, truth = page(mnist)
    found = read_numbers(model, image)
    assert [n["number"] for n in found["numbers"]] == truth
    boxes = [n["box"] for n in found["numbers"]]
    assert boxes[0][3] < boxes[1][1]  # the first line's numbers left to right
    assert boxes[2][0] > max(boxes[0][2], boxes[1][2])  # the second line below the first


def test_read_through_the_cli(mnist, tmp_path):
    image, truth = page(mnist)
    path = tmp_path / "page.png"
    path.write_bytes(image)
    result = digitlab("read", str(path), "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert [n["number"] for n in answer["numbers"]] == truth
    plain = digitlab("read", str(path), "--show", str(tmp_path / "seen"))
    assert plain.returncode == 0 and [line.split()[0] for line in plain.stdout.splitlines()[1:4]] == truth
    assert plain.stdout.splitlines()[0] == f"{path}: 3 numbers"
    assert (tmp_path / "seen" / "page.box.png").stat().st_size > 0


def test_predict_suggests_number_for_several_digits(mnist, tmp_path):
    path = tmp_path / "number.png"
    path.write_bytes(written(mnist, "4096"))
    result = digitlab("predict", str(path))
    assert "--number" in result.stdout + result.stderr
    assert digitlab("read", str(path)).stdout.splitlines()[0] == f"{path}: 1 number"


def test_predict_suggests_number_for_digits_that_touch(mnist, model):
    """Touching digits are one mark, so not "side by side"; its width says it may be a number."""
    from digitlab.read.predict import predict_image

    image = written(mnist, "5038", True, seed=1)  # one mark: each digit touches the next
    answer = predict_image(model, image)
    assert answer["digit"] is None and "if it is a number whose digits touch" in answer["reason"], answer["reason"]
    assert predict_image(model, image, number=True)["number"] == "5038"


def test_predict_names_the_number_it_sees_in_digits_that_touch_no_wider_than_one(mnist, model):
    """A touching "17" is no wider than a 0: not side by side, not wide; read whole, the line reader
    is sure of two digits, and the hint says which."""
    from digitlab.read.predict import predict_image

    image = written(mnist, "17", True)
    ((groups,),) = segment.find(image, page=False).lines
    assert len(groups) == 1 and groups[0].box[3] - groups[0].box[1] < 1.5 * (groups[0].box[2] - groups[0].box[0])
    answer = predict_image(model, image)
    assert answer["digit"] is None and "it looks like the number 17: read it as a number" in answer["reason"]
    assert predict_image(model, image, number=True)["number"] == "17"  # and the advice works


def test_scattered_specks_are_not_taken_for_a_number(model):
    """Ink scattered over many like marks is declined as noise, with no hint to read a number."""
    from digitlab.read.predict import predict_image

    paper = np.ones((240, 240), np.float32)
    for y, x in np.random.default_rng(4).integers(10, 224, (30, 2)):
        paper[y : y + 6, x : x + 6] = 0.0
    answer = predict_image(model, png(1.0 - paper))
    assert answer["digit"] is None and "scattered marks" in answer["reason"], answer["reason"]
    assert "side by side" not in answer["reason"] and "--number" not in answer["reason"]


def test_a_large_speckled_image_is_declined_not_an_error(model):
    """Thousands of specks are too many marks to be numbers: looking for a hint must not turn
    the decline into an error."""
    from digitlab.read.predict import predict_image

    specks = (np.random.default_rng(0).random((1200, 1600)) < 0.002).astype(np.float32)
    answer = predict_image(model, png(specks))
    assert answer["digit"] is None and "scattered marks" in answer["reason"], answer["reason"]


def test_predict_suggests_read_for_a_page(mnist, tmp_path):
    path = tmp_path / "page.png"
    path.write_bytes(page(mnist)[0])
    result = digitlab("predict", str(path))
    assert result.returncode == 0 and "declined" in result.stdout
    assert "a page of numbers (3 found), read them all with `digitlab read`" in result.stdout


def test_read_through_the_api(mnist):
    from fastapi.testclient import TestClient

    from digitlab.serve.app import create_app

    image, truth = page(mnist)
    with TestClient(create_app()) as client:
        r = client.post("/v1/read", files={"file": ("page.png", image, "image/png")})
        assert r.status_code == 200, r.text
        assert [n["number"] for n in r.json()["numbers"]] == truth
        assert all(len(n["box"]) == 4 and n["confidence"] > 0.5 for n in r.json()["numbers"])
        pair = client.post(
            "/v1/predict?number=true", files={"file": ("27.png", written(mnist, "27", True), "image/png")}
        )
        assert pair.status_code == 200 and pair.json()["number"] == "27"
        assert "/v1/read" in client.get("/openapi.json").json()["paths"]
        blank = client.post("/v1/read", files={"file": ("blank.png", png(np.zeros((60, 60))), "image/png")})
        assert blank.status_code == 200 and blank.json()["numbers"] == [] and "blank" in blank.json()["reason"]


def test_the_piece_model_tells_a_pair_from_its_digits(mnist):
    # Touching "27" (test digits, never trained on): the group whole is not one digit; the
    # pieces the reader settles on are a 2 and a 7, to the piece model as to the classifier.
    from digitlab.read.number import piece_probabilities
    from digitlab.training.pieces import NOT_ONE

    layout = segment.find(written(mnist, "27", touching=True), page=False)
    (group,) = layout.lines[0][0]
    group.cut()
    shapes = {span: group.piece(*span)[2] for span in group.spans()}
    q = dict(zip(shapes, piece_probabilities(np.stack(list(shapes.values()))), strict=True))
    last = len(group.positions) - 1
    assert q[(0, last)].argmax() == NOT_ONE
    splits = [k for k in range(1, last) if q[(0, k)].argmax() == 2 and q[(k, last)].argmax() == 7]
    assert splits, {span: int(p.argmax()) for span, p in q.items()}


def test_pieces_are_labelled_by_whose_ink_they_hold():
    from digitlab.training.pieces import NOT_ONE, label

    totals = np.array([0, 100, 80])  # paper, then the pixels of "4" and of "9"
    four = np.array([1] * 95 + [2] * 5)
    assert label(four, totals, "49") == 4
    assert label(np.array([1] * 50), totals, "49") == NOT_ONE  # half a 4
    assert label(np.array([1] * 95 + [2] * 40), totals, "49") == NOT_ONE  # a 4 with half a 9
    assert label(np.array([2] * 80 + [0] * 10), totals, "49") == 9


def test_training_numbers_say_whose_ink_each_pixel_is(mnist):
    (file, owner, text), *_ = lines.training(mnist.x_train.reshape(-1, 28, 28), mnist.y_train, 3, seed=7)
    grey = np.asarray(Image.open(io.BytesIO(file)).convert("L"), np.float32) / 255
    assert owner.shape == grey.shape
    dark = grey < 0.5
    assert (owner[dark] > 0).mean() > 0.95  # the ink is some digit's
    assert (owner[grey > 0.9] == 0).mean() > 0.99  # the paper is no one's
    assert set(np.unique(owner)) == set(range(len(text) + 1))


def test_boxed_digits_keep_their_longer_side_at_the_height_and_leave_the_rest_as_it_was(mnist):
    """In MNIST's box a wide digit comes out shorter than the line's height, not wider; with no
    share boxed, the training family writes what it wrote before (the shipped readers' data)."""
    ink = lambda a: [np.ptp(np.flatnonzero(a.max(axis) > 0.1)) + 1 for axis in (1, 0)]  # noqa: E731
    wide = next(d for d in (digit(mnist, 2, k) for k in range(200)) if ink(d)[1] >= ink(d)[0] + 4)
    boxed = lines.write([wide], np.random.default_rng(3), "validation", height=60, boxed=True)
    plain = lines.write([wide], np.random.default_rng(3), "validation", height=60)
    (tall_b, wide_b), (tall_p, wide_p) = ink(boxed), ink(plain)
    assert tall_b < tall_p and wide_b < wide_p and max(tall_b, wide_b) <= 1.05 * 60 * 1.3  # slant widens
    x = mnist.x_train.reshape(-1, 28, 28)
    files = [[f for f, *_ in lines.training(x, mnist.y_train, 6, 3, *share)] for share in ((), (0.0,), (0.5,))]
    assert files[0] == files[1] != files[2]  # none boxed: the very files written before the option


def test_ctc_decoding_collapses_repeats_and_drops_blanks():
    from digitlab.training.line_reader import decode

    # Steps read: blank, 1, 1, blank, 1, 2, 2, blank -> "112" (a blank between repeats keeps both).
    path = [0, 2, 2, 0, 2, 3, 3, 0]
    logits = np.full((1, len(path), 11), -5.0, np.float32)
    logits[0, np.arange(len(path)), path] = 5.0
    ((text, confidence, rows, probability),) = decode(logits)
    assert text == "112"
    assert confidence.min() > 0.99 and rows.shape == (3, 10) and rows.argmax(1).tolist() == [1, 1, 2]
    assert 0.9 < probability <= 1.0


def test_a_readings_probability_sums_every_path_that_spells_it():
    from digitlab.training.line_reader import probability

    p = np.zeros((3, 11))
    p[:, 0], p[:, 2], p[:, 3] = 0.5, 0.3, 0.2  # blank, "1", "2" at each of three steps
    blank, one, two = 0.5, 0.3, 0.2
    # "1" (b: blank): 1bb b1b bb1 11b b11 111 (1b1 spells "11")
    ones = 3 * one * blank**2 + 2 * one**2 * blank + one**3
    assert np.isclose(probability(p, "1"), ones)
    assert np.isclose(probability(p, ""), blank**3)
    # "11" needs a blank between its two 1s: 1b1 alone in three steps
    assert np.isclose(probability(p, "11"), one * blank * one)
    # "12": 12b 1b2 b12 112 122
    assert np.isclose(probability(p, "12"), 3 * one * two * blank + one**2 * two + one * two**2)
    assert probability(p, "111") == 0.0  # three 1s need five steps


def test_a_number_becomes_one_strip_at_one_height(mnist):
    from digitlab.image.strip import HEIGHT, WIDTH, strip

    layout = segment.find(written(mnist, "4096"), page=False)
    image = strip(layout.lines[0][0])
    assert image.shape == (HEIGHT, WIDTH) and image.max() == 1.0
    rows = np.flatnonzero(image.max(1) > 0.2)
    assert rows[0] >= 1 and rows[-1] <= HEIGHT - 2  # the whole height, a margin kept
    cols = np.flatnonzero(image.max(0) > 0.2)
    assert cols[0] <= 1  # left-aligned


def test_the_line_reader_reads_what_no_cut_separates(mnist, model, monkeypatch):
    # "702" written with deep overlaps (the training family's range, test digits): cutting
    # alone reads the 0 into a neighbour; the line reader, reading the number whole, does not.
    # (Not every such overlap: of seeds 1-14 the cuts alone misread 5, the line reader 2 of them.)
    from digitlab.read import line

    ink = lines.write([digit(mnist, int(c)) for c in "702"], np.random.default_rng(2), "training", True, height=60)
    image = png(np.pad(ink, 30))
    answer = predict_image(model, image, number=True)
    assert answer["number"] == "702", answer["digits"]
    assert [len(d["top_k"]) for d in answer["digits"]] == [3, 3, 3]
    boxes = [d["box"] for d in answer["digits"]]
    assert boxes[0][1] < boxes[1][1] < boxes[2][1]  # left to right in the image as sent
    assert all(top < bottom and left < right for top, left, bottom, right in boxes)
    for name in ("LINE_SURE", "CUT_SURE"):  # the reading by cuts alone
        monkeypatch.setattr(line, name, 1.1)
    assert predict_image(model, image, number=True)["number"] != "702"


def test_the_line_reader_answers_where_the_cuts_decline(mnist, model, monkeypatch):
    # "383" with its digits touching (validation settings, test digits): the cuts find three
    # parts and take the first for no digit; the line reader, which learnt to read non-digits
    # as nothing, reads the number whole.
    from digitlab.read import line

    files, texts = lines.numbers(mnist.x_test.reshape(-1, 28, 28), mnist.y_test, 9, "validation", True)
    assert texts[8] == "383"
    answer = predict_image(model, files[8], number=True)
    assert answer["number"] == "383" and answer["reason"] is None, answer["digits"]
    monkeypatch.setattr(line, "ANSWER", np.inf)  # the cuts alone
    declined = predict_image(model, files[8], number=True)
    assert declined["number"] is None and declined["reason"].startswith("part 1 of 3 does not look like a digit")


def test_the_line_reader_wins_only_where_its_rule_says():
    from digitlab.read.line import ANSWER, CUT_SURE, DOUBT, LINE_SURE, doubtful, wins

    def cut(number, *confidences):
        return {"number": number, "digits": [{"confidence": c} for c in confidences]}

    doubted = cut("17", 0.999, DOUBT - 0.01)  # two digits from two marks, one doubtful
    assert doubtful(doubted, 2) and not doubtful(cut("17", 0.999, DOUBT), 2)
    assert wins(doubted, 2, "11", LINE_SURE)
    assert not wins(doubted, 2, "11", LINE_SURE - 0.01)  # not sure enough
    assert not wins(doubted, 2, "17", 1.0)  # the same reading
    assert not wins(doubted, 2, "", 1.0)  # read as nothing
    split = cut("17", 0.999, 0.999)  # two sure digits, but cut from one mark: touching
    assert doubtful(split, 1) and CUT_SURE < LINE_SURE
    assert wins(split, 1, "11", CUT_SURE) and not wins(split, 1, "11", CUT_SURE - 0.01)
    declined = cut(None, 0.99, 0.1, 0.99)  # a part the cuts took for no digit
    assert doubtful(declined, 3, doubt=0.0)
    assert wins(declined, 3, "381", ANSWER)
    assert not wins(declined, 3, "381", ANSWER - 0.01)
    assert not wins(declined, 3, "38", 1.0)  # it read a part as nothing: the number stays declined


def test_the_line_reader_reads_a_blot_as_nothing():
    from digitlab.read.line import read_lines

    blot = np.zeros((120, 120))
    blot[30:90, 30:85] = 1.0  # a filled square: ink, but no digit
    layout = segment.find(png(blot), page=False)
    ((text, confidence, boxes, _, probability),) = read_lines([layout.lines[0][0]])
    assert text == "" and len(confidence) == len(boxes) == 0 and probability > 0.5


def test_the_line_reader_trains_and_exports_as_keras_reads(mnist, tmp_path):
    # What `python -m digitlab.training.line_reader` ships must read as the Keras model it trained.
    import keras
    import onnxruntime as ort

    from digitlab.training.line_reader import _export, build, examples

    strips, targets = examples(mnist.x_train[:200].reshape(-1, 28, 28), mnist.y_train[:200], 8)
    keras.utils.set_random_seed(0)
    reader = build()
    reader.compile(optimizer="adam", loss=keras.losses.CTC())
    history = reader.fit(strips[..., None], targets, batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    _export(reader, tmp_path / "line.onnx")
    session = ort.InferenceSession(tmp_path / "line.onnx")
    got = session.run(None, {session.get_inputs()[0].name: strips[..., None]})[0]
    np.testing.assert_allclose(got, reader.predict(strips[..., None], verbose=0), atol=1e-4)


def test_line_readers_joined_run_as_one_graph_that_stacks_their_logits(mnist, tmp_path):
    # The shipped reader is two readers written as one graph (`--join`): one run gives each
    # reader's logits for the one strip, as each alone gives them.
    import keras
    import onnxruntime as ort

    from digitlab.training.line_reader import _export, build, examples, join

    strips, _ = examples(mnist.x_train[:200].reshape(-1, 28, 28), mnist.y_train[:200], 6)
    paths = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    for seed, path in enumerate(paths):  # untrained, from seeds of their own: readers that differ
        keras.utils.set_random_seed(seed)
        _export(build(), path)
    join(paths, tmp_path / "joined.onnx")

    def logits(path):
        session = ort.InferenceSession(path)
        return session.run(None, {session.get_inputs()[0].name: strips[..., None]})[0]

    alone, joined = [logits(path) for path in paths], logits(tmp_path / "joined.onnx")
    assert joined.shape == (2, *alone[0].shape) and not np.allclose(alone[0], alone[1])
    np.testing.assert_allclose(joined, np.stack(alone), atol=1e-5)


def test_readers_read_together_take_the_reading_they_give_the_most_probability():
    from digitlab.training.line_reader import decode

    def reader(path: list[int], sure: float) -> np.ndarray:  # one strip's logits: `path` at `sure`
        p = np.full((len(path), 11), (1 - sure) / 10)
        p[np.arange(len(path)), path] = sure
        return np.log(p)[None]

    unsure = reader([2, 0, 3, 0, 0, 0], 0.5)  # reads "12", barely
    sure = reader([2, 0, 0, 0, 0, 0], 0.99)  # reads "1", surely
    (alone,) = decode(sure)
    assert decode(sure[None])[0][0] == alone[0] == "1"  # one reader, stacked or not: the same
    assert decode(sure[None])[0][3] == pytest.approx(alone[3])
    (together,) = decode(np.stack([unsure, sure]))
    assert together[0] == "1"  # "12" is all but impossible to the sure reader
    assert together[3] < alone[3]  # the unsure reader doubts it: so does the pair
    np.testing.assert_allclose(together[1], alone[1])  # the digit's probability from the reader that read it
    (agreed,) = decode(np.stack([sure, sure]))
    assert agreed[0] == "1" and agreed[3] == pytest.approx(alone[3])


def test_the_line_reader_learns_non_digits_as_nothing(mnist):
    from digitlab.training.line_reader import MAX_DIGITS, examples

    images, labels = mnist.x_train[:500].reshape(-1, 28, 28), mnist.y_train[:500]
    strips, targets = examples(images, labels, 10, not_numbers=1.0)
    assert len(strips) == len(targets) and 15 <= len(strips) <= 20  # a non-digit segmentation finds nothing is dropped
    empty = (targets == 0).all(1)
    assert 5 <= empty.sum() <= 10 and targets.shape[1] == MAX_DIGITS
    assert (targets[~empty][:, 0] > 0).all()  # every number starts with a digit (label + 1)


def test_training_numbers_made_on_several_processes_are_the_chunks_made_alone(mnist, monkeypatch):
    from digitlab.training import line_reader

    images, labels = mnist.x_train[:300].reshape(-1, 28, 28), mnist.y_train[:300]
    monkeypatch.setattr(line_reader, "CHUNK", 3)
    second = line_reader.SECOND  # a second reader's numbers: chunks from its seed
    strips, targets = line_reader.examples_in_parallel(images, labels, 7, jobs=2, not_numbers=0.5, seed=second)
    seeds = [second + k * line_reader.CHUNK_SEEDS for k in range(3)]
    alone = [line_reader.examples(images, labels, n, seed, 0.5) for n, seed in zip((3, 3, 1), seeds, strict=True)]
    assert strips.dtype == np.float16
    np.testing.assert_allclose(strips, np.concatenate([x for x, _ in alone]), atol=2**-11)
    np.testing.assert_array_equal(targets, np.concatenate([y for _, y in alone]))
    assert len({bytes(x) for x in strips}) == len(strips)  # no chunk repeats another's numbers
