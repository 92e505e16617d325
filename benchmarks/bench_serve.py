"""A bounded load test of `digitlab serve` on 127.0.0.1: throughput, liveness under load, memory.

    python benchmarks/bench_serve.py [--model PATH] [--requests 2000] [--concurrency 8 32]
                                     [--workers 1] [--saturate 10] [--exhaust 20000] [--payload png|desk]

1. Throughput: each request uploads a real MNIST test digit as a 140x140 PNG (multipart), or with
   `--payload desk` a 400x400 JPEG phone photo of it on a sheet lying on a desk, the server's
   whole path: decode, (find the sheet,) MNIST-style preprocessing, ONNX Runtime, JSON. requests/s,
   p50/p99 latency, errors and 503s, at each concurrency.
2. Liveness under saturation: /healthz probed every 20 ms, from a process of its own, while 32
   clients keep every worker busy. p50/p99/max (target: p99 under 50 ms).
3. Connection exhaustion: --exhaust connections opened from this process (loopback), each
   sending half a request's headers and then nothing, held for --saturate seconds, while
   /healthz is probed as in 2 (target: p99 under 50 ms); how many the server closed by itself.
4. Memory: the server's peak resident memory (Linux's VmHWM, summed over its processes) after
   a corpus of hostile inputs, sent two at a time, and the count of 5xx answers
   (targets: under 500 MB, none).
Count and time bounded: it stops by itself even if the server stalls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import DATA_DIR, ROOT, describe_machine
from load_client import TIME_LIMIT, hammer
from PIL import Image


def payloads(n: int, kind: str = "png") -> list[bytes]:
    """`n` uploads of one MNIST test digit: as a 140x140 PNG, or (`desk`) a phone photo of a sheet
    on a desk (data/scenes.py, test family) as a 400x400 JPEG, as a phone app would send it."""
    from digitlab.data.mnist import load_raw

    raw = load_raw(DATA_DIR)
    if kind == "desk":
        from bench_desk import to_400

        from digitlab.data import scenes

        files, _ = scenes.render(raw.test_images / np.float32(255), raw.test_labels, n, family="test")
        return [to_400(f) for f in files]
    out = []
    for image in raw.test_images[:n]:
        buffer = io.BytesIO()
        Image.fromarray(255 - image).resize((140, 140), Image.Resampling.BICUBIC).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def probe(url: str, seconds: float) -> None:
    """(Run in a process of its own.) GET /healthz every 20 ms; print the latencies in ms."""
    import httpx

    waits = []
    with httpx.Client(timeout=10) as client:
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            client.get(url + "/healthz").raise_for_status()
            waits.append((time.perf_counter() - t0) * 1e3)
            time.sleep(0.02)
    print(json.dumps(waits))


async def exhaust(base: str, n: int, seconds: float) -> tuple[int, int, int]:
    """`n` connections that send half a request's headers, then nothing, held for `seconds`:
    how many opened, how many could not, and how many the server had closed by the end."""
    import resource
    from urllib.parse import urlsplit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 1024)), hard))
    url = urlsplit(base)
    held, failed = [], 0

    async def one() -> None:
        nonlocal failed
        try:
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: attacker\r\n")
            held.append((reader, writer))
        except OSError:
            failed += 1

    stop = time.perf_counter() + seconds
    for start in range(0, n, 500):  # in waves: the backlog is finite either way
        await asyncio.gather(*(one() for _ in range(min(500, n - start))))
    await asyncio.sleep(max(0.0, stop - time.perf_counter()))
    await asyncio.sleep(0)
    closed = 0
    for reader, writer in held:
        with contextlib.suppress(TimeoutError, OSError):
            closed += reader.at_eof() or bool(await asyncio.wait_for(reader.read(1), 0.001) == b"")
        writer.close()
    return len(held), failed, closed


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def bad_inputs() -> list[tuple[str, str, dict]]:
    """The hostile inputs and the costliest images the limits still let in: (name, path, httpx
    keyword arguments)."""
    digit = np.kron(np.eye(28, dtype=np.float32)[::-1] + np.eye(28, dtype=np.float32), np.ones((8, 8)))
    rgba = np.zeros((*digit.shape, 4), np.uint8)
    rgba[..., 3] = (np.clip(digit, 0, 1) * 0.4 * 255).astype(np.uint8)
    json_type = {"content-type": "application/json"}
    side = 3999  # just under 16 Mpx: the largest image a request may hold
    files = {
        "faint-transparent-ink": encode(Image.fromarray(rgba, "RGBA"), "PNG"),
        "16-bit-grey": encode(Image.fromarray((65535 - digit * 50000).astype(np.uint16)), "PNG"),
        "palette-bomb-36mpx": encode(Image.new("P", (6000, 6000)), "PNG", transparency=0),
        "palette-16mpx": encode(Image.new("P", (side, side)), "PNG", transparency=0),
        "rgba-16mpx": encode(Image.new("RGBA", (side, side)), "PNG"),
        "16-bit-16mpx": encode(Image.new("I;16", (side, side)), "PNG"),
        "tiff-float-16mpx": encode(Image.new("F", (side, side)), "TIFF", compression="tiff_deflate"),
        "gif-bomb": encode(Image.new("L", (4100, 4100)), "GIF"),
        "eps": encode(Image.new("RGB", (40, 40)), "EPS"),
        "not-an-image": b"not an image",
    }
    cases = [(name, "/v1/predict", {"files": {"file": (name, data)}}) for name, data in files.items()]
    cases += [
        ("batch-4x16mpx-palette", "/v1/predict/batch", {"files": [("files", ("p.png", files["palette-16mpx"]))] * 4}),
        ("10**400", "/v1/predict", {"content": b'{"pixels": [[1' + b"0" * 400 + b"]]}", "headers": json_type}),
        ("5000-digits", "/v1/predict", {"content": b'{"pixels": [[' + b"9" * 5000 + b"]]}", "headers": json_type}),
        (
            "deep-1000",
            "/v1/predict",
            {"content": b'{"pixels": ' + b"[" * 1000 + b"]" * 1000 + b"}", "headers": json_type},
        ),
        ("top_k=0-batch", "/v1/predict/batch?top_k=0", {"files": [("files", ("a.png", files["16-bit-grey"]))]}),
        (
            "json-pixels-1024x1024",
            "/v1/predict/batch",
            {
                "content": b'{"pixels": [' + b",".join([b"[" + b",".join([b"0"] * 1024) + b"]"] * 1024) + b"]}",
                "headers": json_type,
            },
        ),
        ("chunked-oversize", "/v1/predict", {"content": (b"[" * 300_000,) * 20, "headers": json_type}),
    ]
    return cases


def corpus_memory(url: str, pids: list[int]) -> tuple[float, list[tuple[str, int]]]:
    """Send the corpus two at a time; the server's peak resident memory after it, in MiB."""
    import httpx

    def send(case: tuple[str, str, dict]) -> tuple[str, int]:
        name, path, kwargs = case
        kwargs = dict(kwargs)
        if isinstance(kwargs.get("content"), tuple):  # chunks: sent without a Content-Length
            kwargs["content"] = iter(kwargs["content"])
        return name, httpx.post(url + path, timeout=120, **kwargs).status_code

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(send, bad_inputs() * 2))
    return sum(peak_rss(pid) for pid in pids), answers


def peak_rss(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024


def server_pids() -> list[int]:
    """The serving processes: the `digitlab serve` child, or its worker processes."""
    import psutil

    server = next(p for p in psutil.Process().children() if "serve" in p.cmdline())
    workers = [p.pid for p in server.children() if "spawn_main" in " ".join(p.cmdline())]
    return workers or [server.pid]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--payload", choices=("png", "desk"), default="png", help="140x140 PNGs or 400x400 desk JPEGs")
    parser.add_argument("--saturate", type=float, default=10, help="seconds of /healthz probing under load")
    parser.add_argument("--exhaust", type=int, default=20_000, help="idle half-open connections (0: skip)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: the prober process
    args = parser.parse_args()
    if args.probe:
        return probe(args.probe, args.saturate)

    from digitlab.serve.app import running

    bodies = payloads(200, args.payload)
    options = ("--workers", str(args.workers))
    rows = []
    with running(args.model, options=options) as base:
        asyncio.run(hammer(base + "/v1/predict", bodies, 50, 2))  # warm-up, not counted
        for concurrency in args.concurrency:
            rows.append((concurrency, *asyncio.run(hammer(base + "/v1/predict", bodies, args.requests, concurrency))))
        prober = subprocess.Popen(
            [sys.executable, __file__, "--probe", base, "--saturate", str(args.saturate)], stdout=subprocess.PIPE
        )
        load = asyncio.run(hammer(base + "/v1/predict", bodies, 100_000, 32, args.saturate + 1))
        waits = np.array(json.loads(prober.communicate(timeout=TIME_LIMIT)[0]))
        attack = None
        if args.exhaust:
            prober = subprocess.Popen(
                [sys.executable, __file__, "--probe", base, "--saturate", str(args.saturate)], stdout=subprocess.PIPE
            )
            attack = asyncio.run(exhaust(base, args.exhaust, args.saturate + 1))
            attack_waits = np.array(json.loads(prober.communicate(timeout=TIME_LIMIT)[0]))
        peak, answers = corpus_memory(base, server_pids())
    print(f"machine: {describe_machine()}")
    print(f"server: digitlab serve --workers {args.workers} on 127.0.0.1; clients in other processes, same cores")
    print(f"uploads: {'400x400 desk-photo JPEGs' if args.payload == 'desk' else '140x140 PNGs'}")
    print()
    print("| requests | concurrency | requests/s | p50 ms | p99 ms | errors | 503s |")
    print("|---|---|---|---|---|---|---|")
    for concurrency, latencies, errors, busy, wall in rows:
        p50, p99 = np.percentile(latencies, [50, 99])
        rate = len(latencies) / wall
        print(f"| {len(latencies)} | {concurrency} | {rate:.0f} | {p50:.1f} | {p99:.1f} | {errors} | {busy} |")
    print()
    p50, p99 = np.percentile(waits, [50, 99])
    print(f"/healthz under saturation ({len(load[0])} uploads at concurrency 32 in {load[3]:.1f} s, {load[2]} 503s):")
    print(f"  {len(waits)} probes, p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {waits.max():.1f} ms (target: p99 < 50 ms)")
    if attack is not None:
        p50, p99 = np.percentile(attack_waits, [50, 99])
        opened, failed, closed = attack
        print(f"/healthz while {args.exhaust:,} idle half-open connections were opened and held {args.saturate:g} s:")
        print(f"  {opened:,} opened, {failed:,} could not connect, {closed:,} closed by the server by the end")
        print(
            f"  {len(attack_waits)} probes, p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {attack_waits.max():.1f} ms "
            "(target: p99 < 50 ms)"
        )
    print()
    server_errors = [(name, status) for name, status in answers if status >= 500]
    print(
        f"bad-input corpus: {len(answers)} requests, statuses {sorted({s for _, s in answers})}, 5xx: {server_errors}"
    )
    print(f"  server peak RSS over the whole run, the corpus last: {peak:.0f} MiB (target: < 500 MB)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
