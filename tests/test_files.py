"""files.py: temporary files a killed writer left are known by name and removed by the next write
into their folder (never a live writer's), and JSON read from files stays within its bounds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from digitlab import files
from digitlab.files import TEMP_PREFIX, UnreadableJSON, parse_json, read_json, write_atomic, write_json


def leftover(folder, pid: int, name: str, host: str | None = None, folder_too: bool = False):
    path = folder / f"{TEMP_PREFIX}{host or files._HOST}-{pid}-abcd1234-{name}"
    if folder_too:
        path.mkdir()
        (path / "saved_model.pb").write_bytes(b"")
    else:
        path.write_bytes(b"")  # as mkstemp leaves it when its writer is killed at once
    return path


def test_the_next_write_into_a_folder_removes_what_killed_writers_left_and_nothing_else(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gone = [leftover(tmp_path, dead.pid, "model.onnx"), leftover(tmp_path, dead.pid, "saved", folder_too=True)]
        kept = [
            leftover(tmp_path, alive.pid, "model.onnx"),  # a write in progress in another process
            leftover(tmp_path, os.getpid(), "report.md"),  # and in this one (another thread's)
            leftover(tmp_path, dead.pid, "x.json", host="f00baa"),  # another machine's, on a shared disk: recent
            tmp_path / ".model.ab12cd.onnx",  # not ours to judge
        ]
        kept[-1].write_bytes(b"")
        write_json(tmp_path / "metrics.json", {"a": 1})
        assert not any(p.exists() for p in gone)
        assert all(p.exists() for p in kept)
        assert read_json(tmp_path / "metrics.json") == {"a": 1}
    finally:
        alive.kill()
        alive.wait()


def test_a_failed_write_leaves_neither_a_temporary_file_nor_a_half_written_one(tmp_path):
    (tmp_path / "model.onnx").write_text("the old one")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(tmp_path / "model.onnx", fail)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    assert (tmp_path / "model.onnx").read_text() == "the old one"


def test_a_temporary_name_keeps_every_suffix_of_the_final_one(tmp_path):
    seen = []
    write_atomic(tmp_path / "latest.weights.h5", lambda tmp: seen.append(tmp.name) or tmp.write_bytes(b""))
    assert seen[0].startswith(TEMP_PREFIX) and seen[0].endswith("-latest.weights.h5")  # Keras wants .weights.h5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nests JSON more than 64 levels deep"),
        ("[" * 65 + "]" * 65, "nests JSON more than 64 levels deep"),  # parsed, then refused
        ('{"t": ' + "9" * 5_000 + "}", "holds a number of 5,000 digits"),
        ('{"t": 0.' + "1" * 5_000 + "}", "holds a number of 5,002 digits"),
        ("{oops", "is not JSON"),
        (b"\xff\x00\xfe", "is not JSON"),
    ],
)
def test_json_past_its_bounds_is_one_clear_error(text, message):
    with pytest.raises(UnreadableJSON, match=message) as error:
        parse_json(text, "model.onnx: metadata x")
    assert str(error.value).startswith("model.onnx: metadata x ") and "\n" not in str(error.value)


def test_json_within_its_bounds_reads_as_json():
    nested = "[" * 64 + "1" + "]" * 64
    assert parse_json(nested, "x") is not None
    assert parse_json('{"t": 0.8970774338240345, "n": 10000, "e": 1e-07}', "x") == {
        "t": 0.8970774338240345,
        "n": 10000,
        "e": 1e-07,
    }


def test_a_json_file_too_large_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(" " * 100 + "{}")
    with pytest.raises(UnreadableJSON, match="holds 102 bytes, more than the 100"):
        read_json(path, limit=100)
