"""Many image files read on every core: a process per core, each with its own session of the
same ONNX model and its share of the cores' threads, the answers in the order of the files.

Preparing an image is mostly NumPy on small arrays and Python between OpenCV calls, holding the
GIL: threads do not read two images at once, processes do. A process costs its start (importing
ONNX Runtime, OpenCV and SciPy, loading the model), so a few images are read in this one.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from digitlab.environment import cores, take_share
from digitlab.errors import DigitlabError
from digitlab.io.native import Model, OnnxModel

PER_PROCESS = 32  # images a process must have to be worth its start (imports, the model loaded again)
MAX_PROCESSES = 64
CHUNK = 8  # images sent to a process at a time: fewer round trips, still an even share at the end

_model: dict[str, OnnxModel] = {}  # a reading process's own model


def processes(model: Model, count: int, workers: int | None = None) -> int:
    """How many processes read `count` files: `workers` where given; else one per core, as far
    as each has PER_PROCESS images. An ONNX model only: a Keras model in every process would
    import TensorFlow in each."""
    if workers is not None and not 1 <= workers <= MAX_PROCESSES:
        raise DigitlabError(f"--workers must be between 1 and {MAX_PROCESSES}, got {workers}")
    if workers is None:
        workers = min(cores(), count // PER_PROCESS)
    return max(1, workers) if type(model) is OnnxModel else 1


Read = Callable[[Model, Path], dict]  # predict_image or read_numbers, its options bound (functools.partial)


def read_files(
    model: Model, paths: list[Path], read: Read, workers: int | None = None
) -> Iterator[tuple[Path, dict | DigitlabError]]:
    """Each file and what `read` made of it, or the error that kept it from being read."""
    n = processes(model, len(paths), workers)
    if n == 1:
        for path in paths:
            yield path, _read(read, path, model)
        return
    # spawn: a forked child would inherit this process's ONNX Runtime threads in an unknown state
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n, mp_context=context, initializer=_start, initargs=(model.path, n)) as pool:
        try:
            yield from zip(paths, pool.map(functools.partial(_read, read), paths, chunksize=CHUNK), strict=True)
        except BrokenProcessPool:
            raise DigitlabError("a reading process died (out of memory?); read with --workers 1") from None


def _start(path: Path, processes: int) -> None:
    _model["onnx"] = OnnxModel(path, threads=take_share(processes))


def _read(read: Read, path: Path, model: Model | None = None) -> dict | DigitlabError:
    try:
        return read(model or _model["onnx"], path)
    except DigitlabError as e:
        return e
