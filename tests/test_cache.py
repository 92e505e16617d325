"""The cache of evaluation inputs: made once, read back the same, remade when anything that made it changes."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab import cache


@pytest.fixture
def place(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", str(tmp_path / "inputs"))
    return tmp_path / "inputs"


def counting(values):
    calls = []

    def make():
        calls.append(1)
        return values

    return make, calls


def test_made_once_then_read_back_identical(place):
    a = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)
    make, calls = counting((a, np.array([True, False, True, True, False])))
    first = cache.arrays("t", (1, "x"), make)
    second = cache.arrays("t", (1, "x"), make)
    assert len(calls) == 1
    assert all(np.array_equal(f, s) and f.dtype == s.dtype for f, s in zip(first, second, strict=True))
    assert len(list(place.glob("t-*.npz"))) == 1


def test_a_different_key_or_source_array_is_a_new_entry(place):
    make, calls = counting((np.zeros(3),))
    digits = np.arange(10, dtype=np.uint8)
    cache.arrays("t", (1, cache.fingerprint(digits)), make)
    cache.arrays("t", (2, cache.fingerprint(digits)), make)
    digits[3] = 0
    cache.arrays("t", (1, cache.fingerprint(digits)), make)
    assert len(calls) == 3


def test_a_damaged_entry_is_made_again(place):
    make, calls = counting((np.ones(4),))
    cache.arrays("t", (1,), make)
    (entry,) = place.glob("t-*.npz")
    entry.write_bytes(b"PK\x03\x04 not a zip")
    assert np.array_equal(cache.arrays("t", (1,), make)[0], np.ones(4))
    assert len(calls) == 2


def test_off_makes_everything_afresh(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITLAB_CACHE_DIR", "off")
    make, calls = counting((np.ones(2),))
    cache.arrays("t", (1,), make)
    cache.arrays("t", (1,), make)
    assert len(calls) == 2 and cache.folder() is None


def test_the_least_recently_used_go_past_the_limit(place, monkeypatch):
    monkeypatch.setattr(cache, "LIMIT", 3 * 8_500)  # three entries of 1,000 float64s and their headers
    for key in range(5):
        cache.arrays("t", (key,), lambda: (np.zeros(1000),))
    assert len(list(place.glob("t-*.npz"))) == 3
    make, calls = counting((np.zeros(1000),))
    cache.arrays("t", (4,), make)  # the newest is kept
    cache.arrays("t", (0,), make)  # the oldest was pruned
    assert len(calls) == 1
