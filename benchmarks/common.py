"""Shared by the benchmarks: the machine, robust statistics, peak memory of a child process."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = os.environ.get("DIGITLAB_DATA_DIR", str(ROOT.parent / "shared" / "data" / "mnist"))


def cpu() -> dict:
    """CPU model, cores, clock and an fp32 peak estimate: cores x GHz x FLOP/cycle, where
    FLOP/cycle = 2 FMA pipes x lanes x 2 (AVX-512: 16 fp32 lanes, AVX2: 8). An estimate, stated."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", info)
    mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", info)
    flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split()) if "flags" in info else set()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    cores = os.cpu_count() or 1
    ghz = float(mhz.group(1)) / 1000 if mhz else 0.0
    return {
        "model": model.group(1).strip() if model else platform.processor(),
        "cores": cores,
        "ghz": round(ghz, 2),
        "isa": "AVX-512" if lanes == 16 else "AVX2" if lanes == 8 else "SSE",
        "peak_gflops": round(cores * ghz * 2 * lanes * 2, 1),
    }


def describe_machine() -> str:
    c = cpu()
    return (
        f"{c['model']}, {c['cores']} cores at {c['ghz']} GHz, {c['isa']}, fp32 peak ~{c['peak_gflops']} GFLOP/s "
        f"(estimate); Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def spread(values: list[float]) -> str:
    """median [min-max] over the repetitions."""
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_child(args: list[str]) -> tuple[str, float]:
    """Run `python args...` and return its stdout and its peak resident memory in MiB."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{args} failed with status {proc.returncode}")
    return out, usage.ru_maxrss / 1024


def keras_io_convnet():
    """keras-io's mnist_convnet, compiled as its tutorial does: two convs, dropout 0.5, Adam.
    The reference every training benchmark measures against; it trains 15 epochs at batch 128."""
    from digitlab.nn.backend import keras

    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
