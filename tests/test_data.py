from __future__ import annotations

import gzip
import http.server
import shutil
import struct
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from digitlab.data.download import download
from digitlab.data.mnist import FILES, load_mnist, load_raw, parse_idx, split_indices
from digitlab.errors import DigitlabError

# From the data set's own README: the published label counts.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def raw_bytes(data_dir: Path, key: str) -> bytes:
    return gzip.decompress((data_dir / f"{FILES[key][0]}.gz").read_bytes())


def copy_data(data_dir: Path, dest: Path) -> Path:
    shutil.copytree(data_dir, dest, ignore=shutil.ignore_patterns("*.md", "SHA256SUMS"))
    return dest


def test_parses_real_idx_files(data_dir):
    raw = load_raw(data_dir)
    assert raw.train_images.shape == (60000, 28, 28) and raw.train_images.dtype == np.uint8
    assert raw.test_images.shape == (10000, 28, 28)
    assert np.bincount(raw.train_labels).tolist() == TRAIN_COUNTS
    assert np.bincount(raw.test_labels).tolist() == TEST_COUNTS
    assert raw.train_images.max() == 255 and raw.train_images.min() == 0


def test_raw_idx_with_dotted_names_and_npz_give_the_same_data(data_dir, tmp_path):
    reference = load_raw(data_dir)
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for key, (name, _) in FILES.items():  # uncompressed, in the `train-images.idx3-ubyte` spelling
        (raw_dir / name.replace("-idx", ".idx")).write_bytes(raw_bytes(data_dir, key))
    npz = tmp_path / "npz" / "mnist.npz"
    npz.parent.mkdir()
    np.savez(
        npz,
        x_train=reference.train_images,
        y_train=reference.train_labels,
        x_test=reference.test_images,
        y_test=reference.test_labels,
    )
    for source in (raw_dir, npz.parent):
        other = load_raw(source)
        for key in FILES:
            np.testing.assert_array_equal(getattr(other, key), getattr(reference, key))


def test_keras_cache_is_found_when_nothing_else_is(data_dir, tmp_path, monkeypatch):
    reference = load_raw(data_dir)
    keras_home = tmp_path / "keras"
    (keras_home / "datasets").mkdir(parents=True)
    np.savez(
        keras_home / "datasets" / "mnist.npz",
        x_train=reference.train_images,
        y_train=reference.train_labels,
        x_test=reference.test_images,
        y_test=reference.test_labels,
    )
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    assert load_raw().source.endswith("mnist.npz")


@pytest.mark.parametrize(
    ("key", "corrupt", "message"),
    [
        ("train_images", lambda b: b"\x00\x00\x09\x03" + b[4:], "bad magic"),
        ("train_images", lambda b: b[: len(b) // 2], "truncated"),
        ("train_labels", lambda b: b[:4] + struct.pack(">I", 59999) + b[8:-1], "60000 images but"),
        ("test_labels", lambda b: b[:8] + b"\x0a" + b[9:], "label 10, outside 0-9"),
        ("test_images", lambda b: b[:1000] + bytes([b[1000] ^ 0xFF]) + b[1001:], "SHA-256 mismatch"),
    ],
    ids=["wrong-magic", "truncated", "count-mismatch", "label-out-of-range", "flipped-pixel"],
)
def test_corrupt_files_give_a_clear_error_naming_the_file(data_dir, tmp_path, key, corrupt, message):
    folder = copy_data(data_dir, tmp_path / "mnist")
    target = folder / f"{FILES[key][0]}.gz"
    target.write_bytes(gzip.compress(corrupt(raw_bytes(data_dir, key)), compresslevel=1))
    with pytest.raises(DigitlabError, match=message) as error:
        load_raw(folder)
    assert str(target) in str(error.value) or FILES[key][0] in str(error.value)


def test_broken_gzip_is_reported(data_dir, tmp_path):
    folder = copy_data(data_dir, tmp_path / "mnist")
    target = folder / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(DigitlabError, match=f"corrupt gzip file {target}"):
        load_raw(folder)


def test_parse_idx_rejects_a_short_header():
    with pytest.raises(DigitlabError, match="header truncated"):
        parse_idx(b"\x00\x00\x08\x03\x00\x00", "x")


def test_missing_data_offline_names_the_places_to_put_it(tmp_path):
    with pytest.raises(DigitlabError, match=f"MNIST not found in {tmp_path}.*pass --data-dir"):
        load_raw(tmp_path)


class _Server:
    """A real HTTP server on loopback standing in for a mirror."""

    def __init__(self, folder: Path):
        handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_tries_mirrors_in_turn_and_verifies(data_dir, tmp_path):
    good = _Server(copy_data(data_dir, tmp_path / "good"))
    bad_folder = copy_data(data_dir, tmp_path / "bad")
    # The bad mirror serves a tampered file (valid gzip, wrong content) and lacks the others.
    tampered = bytearray(raw_bytes(data_dir, "train_images"))
    tampered[5000] ^= 0xFF
    (bad_folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(tampered)))
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (bad_folder / name).unlink()
    bad = _Server(bad_folder)
    try:
        dest = tmp_path / "cache"
        files = download(dest, "MNIST", FILES, ("http://127.0.0.1:9/", bad.url, good.url), timeout=5)
        assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n, _ in FILES.values())
        assert files["train_images"].read_bytes() == (data_dir / "train-images-idx3-ubyte.gz").read_bytes()
        assert load_raw(dest).train_images.shape == (60000, 28, 28)
        with pytest.raises(DigitlabError, match=r"could not download .* put the 4 MNIST files into"):
            download(tmp_path / "other", "MNIST", FILES, (bad.url,), timeout=5)
        assert not (tmp_path / "other").exists()  # nothing half-written, not even an empty folder
    finally:
        good.close()
        bad.close()


def test_split_is_stratified_disjoint_and_deterministic(mnist, data_dir):
    labels = load_raw(data_dir).train_labels
    train, val = split_indices(labels, 10_000, seed=0)
    assert len(train) == 50_000 and len(val) == 10_000
    assert len(np.intersect1d(train, val)) == 0 and len(np.union1d(train, val)) == 60_000
    expected = np.bincount(labels) * 10_000 / 60_000
    assert np.abs(np.bincount(labels[val]) - expected).max() <= 1  # stratified to the image
    again, _ = split_indices(labels, 10_000, seed=0)
    other, _ = split_indices(labels, 10_000, seed=1)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)
    assert mnist.x_train.shape == (50_000, 28, 28, 1) and mnist.x_train.dtype == np.float32
    assert mnist.x_train.min() >= 0.0 and mnist.x_train.max() == 1.0
    assert len(mnist.y_val) == 10_000 and len(mnist.y_test) == 10_000


def test_val_size_option(data_dir):
    data = load_mnist(data_dir, val_size=5_000)
    assert (len(data.y_train), len(data.y_val)) == (55_000, 5_000)
    with pytest.raises(DigitlabError, match="--val-size"):
        load_mnist(data_dir, val_size=60_000)
