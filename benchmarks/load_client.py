"""The clients of bench_serve.py: uploads to a server at a given concurrency, each request
prepared once as bytes, on kept-alive connections, so that the clients, which share the cores
with the server, take as little of them as they can."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

TIME_LIMIT = 300  # seconds: the load stops even if the server stalls
# Seconds between one client's first connection and the next's, as independent clients arrive.
# Opened in one burst, the first worker process to wake accepts them all (asyncio accepts up to
# the backlog at once) and keeps them for the run: two processes then serve as one.
STAGGER = 0.005


def upload(url: str, body: bytes) -> bytes:
    """The whole HTTP/1.1 request that uploads `body` as the multipart field `file`, made once:
    the clients share the server's cores, so each request costs them a write and a read."""
    where = urlsplit(url)
    name, kind = ("d.jpg", "image/jpeg") if body.startswith(b"\xff\xd8") else ("d.png", "image/png")
    boundary = "digitlab-bench-boundary"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: {kind}\r\n\r\n"
    ).encode()
    content = part + body + f"\r\n--{boundary}--\r\n".encode()
    head = (
        f"POST {where.path} HTTP/1.1\r\nHost: {where.netloc}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(content)}\r\n\r\n"
    )
    return head.encode() + content


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One response: its status, its body and whether the server keeps the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "chunked" in fields.get("transfer-encoding", "").lower():  # digitlab's answers carry a length
        raise ValueError("a chunked response: this client reads Content-Length bodies only")
    body = await reader.readexactly(int(fields.get("content-length", 0)))
    return int(lines[0].split()[1]), body, fields.get("connection", "").lower() != "close"


async def hammer(
    url: str, bodies: list[bytes], total: int, concurrency: int, seconds: float = TIME_LIMIT
) -> tuple[list[float], int, int, float]:
    """`total` uploads (or as many as fit in `seconds`) from `concurrency` kept-alive connections:
    latencies in ms, errors, 503s and the wall time. A request is a prepared write and a read
    (upload()): a full HTTP client cost the shared cores ~10x more per request than this."""
    where = urlsplit(url)
    requests = [upload(url, body) for body in bodies]
    latencies: list[float] = []
    errors = busy = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    stop = time.perf_counter() + seconds

    async def send(connection, request: bytes) -> tuple[int, bytes, bool]:
        reader, writer = connection
        writer.write(request)
        return await asyncio.wait_for(answer(reader), 30)

    async def worker(k: int) -> None:
        nonlocal errors, busy
        connection = None
        await asyncio.sleep(k * STAGGER)
        while not queue.empty() and time.perf_counter() < stop:
            i = queue.get_nowait()
            t0 = time.perf_counter()
            request = requests[i % len(requests)]
            try:
                if connection is not None:
                    try:
                        status, body, keep = await send(connection, request)
                    except (OSError, asyncio.IncompleteReadError):  # closed while idle: once more, anew
                        connection[1].close()
                        connection = None
                if connection is None:
                    connection = await asyncio.open_connection(where.hostname, where.port)
                    status, body, keep = await send(connection, request)
                ok = status == 200 and b'"digit"' in body
                busy += status == 503
                if not keep:
                    connection[1].close()
                    connection = None
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError):
                ok = False
                if connection is not None:
                    connection[1].close()
                connection = None
            latencies.append((time.perf_counter() - t0) * 1e3)
            errors += not ok
        if connection is not None:
            connection[1].close()

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker(k) for k in range(concurrency))), TIME_LIMIT)
    return latencies, errors, busy, time.perf_counter() - t0
