"""ONNX Runtime for digitlab: a session of a model file, and each run of it under a deadline and
a memory cap. Model files are untrusted: a hostile graph may loop for ever or ask for terabytes
at run time; here either is one DigitlabError, not a hang or a killed process.
"""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from digitlab.errors import DigitlabError

# Every run has a deadline, after which a watchdog sets RunOptions.terminate (ONNX Runtime checks
# it between nodes, inside a Loop's body too); every session allocates from one arena capped at
# ONNX_MEMORY, so a graph asking more fails at once instead of swapping or being killed
# (SERVING.md: margins).
RUN_DEADLINE_S = 2.0  # per run, plus:
RUN_DEADLINE_PER_IMAGE_S = 0.2
ONNX_MEMORY = 2 * 2**30


def onnx_session(path: Path, threads: int = 0):
    """A session of the ONNX model at `path` on the CPU, `threads` for its operators (0: one a
    core), allocating from the capped arena; an unreadable model is one DigitlabError."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads  # 0: one per core
    options.log_severity_level = 4  # a failure is our one-line error, not also ORT's log lines
    if _capped_arena(ort):
        options.add_session_config_entry("session.use_env_allocators", "1")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own untyped errors for unreadable models
        raise DigitlabError(f"cannot load ONNX model {path}: {_reason(e)}") from None


_arena = {"lock": threading.Lock(), "ready": None}


def _capped_arena(ort) -> bool:
    """One CPU arena for every session of this process, capped at ONNX_MEMORY (registered once)."""
    with _arena["lock"]:
        if _arena["ready"] is None:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            try:
                ort.create_and_register_allocator(info, ort.OrtArenaCfg(ONNX_MEMORY, -1, -1, -1))
                _arena["ready"] = True
            except Exception:  # an embedding program registered its own: sessions keep their own arenas
                _arena["ready"] = False
        return _arena["ready"]


class _Watchdog:
    """One thread for every ONNX run in the process, asleep while none runs: it sets
    RunOptions.terminate on a run past its deadline (a timer thread per run would cost more). A
    run wakes it only where parked: a switch of threads at every run cost more than a small model."""

    TICK_S = 0.1

    def __init__(self):
        self.awake, self.runs, self.thread, self.parked = threading.Condition(), {}, None, False

    @contextmanager
    def watch(self, options, seconds: float):
        with self.awake:
            self.runs[id(options)] = (time.monotonic() + seconds, options)
            if self.thread is None or not self.thread.is_alive():  # also after a fork, which keeps no threads
                self.thread = threading.Thread(target=self._patrol, name="digitlab-onnx-deadline", daemon=True)
                self.thread.start()
            elif self.parked:
                self.awake.notify()
        try:
            yield
        finally:
            with self.awake:
                self.runs.pop(id(options), None)

    def _patrol(self) -> None:
        with self.awake:
            while True:
                self.parked = True
                self.awake.wait_for(lambda: self.runs)
                self.parked = False
                self.awake.wait(self.TICK_S)
                now = time.monotonic()
                for deadline, options in self.runs.values():
                    if now > deadline:
                        options.terminate = True


_watchdog = _Watchdog()


def run_onnx(session, path: Path, feeds: dict) -> np.ndarray:
    """The first output of one run of `session`, under its deadline and memory cap: a graph that
    overruns either, or fails otherwise, is one DigitlabError."""
    import onnxruntime as ort

    images = len(next(iter(feeds.values())))
    seconds = RUN_DEADLINE_S + RUN_DEADLINE_PER_IMAGE_S * images
    options = ort.RunOptions()
    options.log_severity_level = 4
    with _watchdog.watch(options, seconds):
        try:
            return session.run(None, feeds, options)[0]
        except Exception as e:  # ORT's own error types derive from Exception only
            if options.terminate:
                raise DigitlabError(
                    f"{path} did not read {images} image(s) within {seconds:.1f} s, where a digit model needs "
                    "milliseconds: stopped; it loops, or is far too heavy for digitlab to run"
                ) from None
            reason = _reason(e)
            if "allocate" in reason or "memory" in reason.lower():
                reason = (
                    f"it asks for more memory than the {ONNX_MEMORY / 2**30:g} GiB digitlab allows a model ({reason})"
                )
            raise DigitlabError(f"{path} failed reading digits: {reason}; it is not a model digitlab can run") from None


def _reason(error: Exception) -> str:
    """ORT's message without its source file and function: "[ONNXRuntimeError] : 1 : FAIL : ...
    Status Message: /onnxruntime_src/....cc:360 void* f(...) Available memory of ..."."""
    text = " ".join(str(error).split())
    node = re.search(r"running (\w+) node", text)
    text = text.rpartition("Status Message: ")[2]
    text = re.sub(r"^\S+\.(cc|h|cpp):\d+ .*?\)\s+", "", text)
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    return (f"its {node.group(1)} node: " if node else "") + text[:200]
