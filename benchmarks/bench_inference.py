"""Keras `predict` against ONNX Runtime on the same model, in one run.

    python benchmarks/bench_inference.py RUN_DIR_OR_MODEL.keras [--repeats 7]

Batch: all 10,000 test images, several repetitions, median and spread. Single image: latency of
one image per call, p50 and p99 over many calls. Each engine runs in a child process of its own,
so its peak memory is its own; the ONNX child never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import DATA_DIR, ROOT, describe_machine, run_child, spread

SINGLE_CALLS = 2000


def test_images() -> np.ndarray:
    from digitlab.data.mnist import load_raw, scale

    return scale(load_raw(DATA_DIR).test_images)


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up: graph tracing, kernel selection
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def latencies(fn, image: np.ndarray) -> list[float]:
    for _ in range(50):
        fn(image)
    out = []
    for _ in range(SINGLE_CALLS):
        t0 = time.perf_counter()
        fn(image)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def child(engine: str, model: str, repeats: int) -> dict:
    x = test_images()
    if engine == "onnx":
        from digitlab.io.native import OnnxModel

        m = OnnxModel(Path(model))
        batch = timed(lambda: m.probabilities(x), repeats)
        single = latencies(m.probabilities, x[:1])
        assert "tensorflow" not in sys.modules, "the ONNX path must not load TensorFlow"
        probs = m.probabilities(x)
    else:
        from digitlab.io.native import KerasModel

        m = KerasModel(Path(model))
        batch = timed(lambda: m.model.predict(x, verbose=0), repeats)  # Keras' own predict, its default batch
        batch_512 = timed(lambda: m.model.predict(x, batch_size=512, verbose=0), repeats)
        single = latencies(lambda one: m.model(one, training=False), x[:1])  # direct call: Keras' fastest
        probs = m.model.predict(x, verbose=0)
    np.save(Path(model).parent / f".bench-{engine}.npy", probs)
    result = {"batch_s": batch, "single_ms": single}
    if engine == "keras":
        result["batch512_s"] = batch_512
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run folder or a .keras file")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child", choices=["keras", "onnx"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.repeats)))
        return

    from digitlab.io.export import export
    from digitlab.io.native import model_file

    keras_path = model_file(args.model)
    workdir = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    onnx_path = export(keras_path, "onnx", out=workdir / "model.onnx")
    print(f"machine: {describe_machine()}")
    print(f"model: {keras_path} -> {onnx_path}")
    results = {}
    for engine, path in (("keras", keras_path), ("onnx", onnx_path)):
        out, peak = run_child([__file__, str(path), "--child", engine, "--repeats", str(args.repeats)])
        results[engine] = json.loads(out.strip().splitlines()[-1]) | {"peak_mib": peak}
    diff = np.abs(np.load(keras_path.parent / ".bench-keras.npy") - np.load(workdir / ".bench-onnx.npy")).max()
    (keras_path.parent / ".bench-keras.npy").unlink()
    k, o = results["keras"], results["onnx"]
    n = 10_000
    print()
    print("| engine | 10k images, s: median [min-max] | images/s | 1 image p50 ms | p99 ms | peak MiB |")
    print("|---|---|---|---|---|---|")
    for name, r, batch in (
        ("Keras predict (batch 32)", k, k["batch_s"]),
        ("Keras predict (batch 512)", k, k["batch512_s"]),
        ("ONNX Runtime", o, o["batch_s"]),
    ):
        p50, p99 = np.percentile(r["single_ms"], [50, 99])
        print(
            f"| {name} | {spread(batch)} | {n / statistics.median(batch):,.0f} | {p50:.3f} | {p99:.3f} | "
            f"{r['peak_mib']:.0f} |"
        )
    best_keras = min(statistics.median(k["batch_s"]), statistics.median(k["batch512_s"]))
    print()
    print(
        f"batch throughput, ONNX Runtime / Keras predict at its best batch size: "
        f"{best_keras / statistics.median(o['batch_s']):.1f}x (target >= 2x)"
    )
    p50 = float(np.percentile(o["single_ms"], 50))
    print(
        f"single-image p50 with ONNX Runtime: {p50:.3f} ms (target <= 0.2 ms); "
        f"Keras direct call: {np.percentile(k['single_ms'], 50):.3f} ms"
    )
    print(f"max |p_onnx - p_keras| over the 10k test images: {diff:.2e} (target <= 1e-5)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
