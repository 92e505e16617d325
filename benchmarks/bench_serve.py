"""A bounded load test of `digitlab serve` on 127.0.0.1: N requests at concurrency C.

    python benchmarks/bench_serve.py [--model PATH] [--requests 2000] [--concurrency 8]

Each request uploads a real MNIST test digit as a 140x140 PNG photo-style upload (multipart),
the server's whole path: decode, MNIST-style preprocessing, ONNX Runtime, JSON. Reports
requests/s, p50/p99 latency and the error count; stops by itself (count and time bounded).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time

import numpy as np
from common import DATA_DIR, ROOT, describe_machine
from PIL import Image

TIME_LIMIT = 300  # seconds: the test stops even if the server stalls


def payloads(n: int) -> list[bytes]:
    from digitlab.data import load_raw

    raw = load_raw(DATA_DIR)
    out = []
    for image in raw.test_images[:n]:
        buffer = io.BytesIO()
        Image.fromarray(255 - image).resize((140, 140), Image.Resampling.BICUBIC).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


async def hammer(url: str, bodies: list[bytes], total: int, concurrency: int) -> tuple[list[float], int, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            i = queue.get_nowait()
            t0 = time.perf_counter()
            try:
                r = await client.post(url, files={"file": ("d.png", bodies[i % len(bodies)], "image/png")})
                ok = r.status_code == 200 and "digit" in r.json()
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - t0) * 1e3)
            errors += not ok

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(client) for _ in range(concurrency))), TIME_LIMIT)
        return latencies, errors, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    from digitlab.serve import running

    bodies = payloads(200)
    with running(args.model) as base:
        asyncio.run(hammer(base + "/v1/predict", bodies, 50, 2))  # warm-up, not counted
        latencies, errors, wall = asyncio.run(hammer(base + "/v1/predict", bodies, args.requests, args.concurrency))
    p50, p99 = np.percentile(latencies, [50, 99])
    print(f"machine: {describe_machine()}")
    print("server: digitlab serve (uvicorn, 1 process) on 127.0.0.1; client in another process, same 2 cores")
    print()
    print("| requests | concurrency | requests/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|")
    print(f"| {len(latencies)} | {args.concurrency} | {len(latencies) / wall:.0f} | {p50:.1f} | {p99:.1f} | {errors} |")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
