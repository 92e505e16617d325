"""The server's connections, bounded so that idle or slow clients cannot lock everyone out.

uvicorn times out a kept-alive connection between requests, but not one that never finishes
its request's headers (slowloris), and it accepts connections until the process runs out of
file descriptors: then every new client, the probes included, waits, and asyncio logs a
traceback for each failed accept. `Guarded`, its HTTP/1.1 protocol with these added:

- a connection whose request headers are not complete within HEADER_TIMEOUT of it opening (or
  of the first byte of its next request, when kept alive) is closed;
- at most `budget(...)[0]` are open (MAX_OPEN, or fewer where open files are short): past it,
  the connection idle longest (no request in progress) is closed for the new one, so a probe
  always gets in (or the new one, when every connection has a request in progress);
- the soft limit on open files is raised to the hard one at start (`raise_open_files`).

The body's own deadline is limits.BodyLimit's (a 408). `LOG_CONFIG` is uvicorn's logging with
`Quiet` on its handler, so a flood of bad clients logs a few lines a second, not one each.
uvicorn's own `limit_concurrency` is not used: it counts idle connections too, so a few
thousand of them would turn /healthz into 503s.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections import OrderedDict
from weakref import WeakKeyDictionary

import h11
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from digitlab.errors import DigitlabError

HEADER_TIMEOUT = 10.0  # seconds from a connection's opening (or a kept-alive one's next byte) to its headers
KEEP_ALIVE = 5  # seconds an idle kept-alive connection stays open (uvicorn's timeout_keep_alive)
MAX_HEADERS = 16 * 1024  # bytes of request line and headers (h11's max incomplete event size)
RESERVE = 64  # open files kept for the process's own (model, logs, metrics, pipes)
# Connections one process keeps open, far more than two cores serve at once: a flood of idle
# ones then costs evictions, not memory and a longer turn of the event loop for every request.
MAX_OPEN = 1024
# asyncio accepts up to a backlog's worth of connections in one turn of its loop, each through
# connection_made: a larger batch is a longer stall for the requests and probes already in.
BACKLOG = 256
# For whoever runs the server behind slow links, or tests it: seconds, read by every server process.
ENV_HEADER_TIMEOUT, ENV_BODY_TIMEOUT = "DIGITLAB_SERVE_HEADER_TIMEOUT", "DIGITLAB_SERVE_BODY_TIMEOUT"


def seconds(name: str, default: float) -> float:
    """A timeout from the environment variable `name`, or `default` where it is not set."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 3600:
        raise DigitlabError(f"{name} must be a number of seconds over 0 and at most 3600, got '{text[:20]}'")
    return value


def raise_open_files() -> int:
    """Raise this process's soft limit on open files to its hard limit (worker processes inherit
    it); returns the limit now in force. A no-op where there is no such limit (Windows)."""
    try:
        import resource
    except ImportError:
        return 1 << 16
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # macOS caps it lower than the hard limit says
            pass
    return soft


def budget(open_files: int) -> tuple[int, int]:
    """(connections one server process keeps open, connections it accepts at once: its listen
    backlog) within `open_files`. asyncio accepts a backlog's worth in one go, and a connection
    past the cap is closed two turns of the loop later, so three batches above the cap, and the
    process's own files, must fit: an accept that fails for want of a file descriptor stalls
    every client for a second, and logs a traceback for each of the batch's remaining accepts."""
    backlog = min(BACKLOG, max(16, open_files // 16))
    return min(MAX_OPEN, max(16, open_files - RESERVE - 4 * backlog)), backlog


# Per server: its connections waiting for a request, the longest-waiting first.
_idle: WeakKeyDictionary[ServerState, OrderedDict[Guarded, None]] = WeakKeyDictionary()


class Guarded(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a cap on open connections."""

    header_timeout: float = HEADER_TIMEOUT  # both set when the first connection is made
    cap: int | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: object | None = None  # the timer that closes a connection too slow to ask

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cls = type(self)
        if cls.cap is None:
            cls.header_timeout = seconds(ENV_HEADER_TIMEOUT, HEADER_TIMEOUT)
            cls.cap = budget(raise_open_files())[0]
        idle = _idle.setdefault(self.server_state, OrderedDict())
        while len(self.connections) > cls.cap and idle:
            oldest, _ = idle.popitem(last=False)
            oldest._close()
            self.logger.warning("%d connections open, the most: closed the one idle longest", cls.cap)
        if len(self.connections) > cls.cap:  # every other one has a request in progress
            self.logger.warning("refused a connection: %d are open, each with a request in progress", cls.cap)
            self._close()
        else:
            self._watch(clock=True)

    def _close(self) -> None:
        self.connections.discard(self)  # now: its connection_lost comes on a later turn of the loop
        self._stop_waiting()
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch(clock=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch(clock=False)  # until its next request's first byte, uvicorn's keep-alive timeout runs

    def _watch(self, clock: bool) -> None:
        """Waiting for a request's headers (idle): first to go when full, and on the clock if `clock`."""
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            self._stop_waiting()
            return
        idle = _idle.setdefault(self.server_state, OrderedDict())
        if self not in idle:
            idle[self] = None
        if clock and self._deadline is None:
            self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _stop_waiting(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()  # type: ignore[attr-defined]
            self._deadline = None
        idle = _idle.get(self.server_state)
        if idle is not None:
            idle.pop(self, None)

    def _too_slow(self) -> None:
        self._deadline = None
        self._stop_waiting()
        if not self.transport.is_closing():
            self.logger.info("closed a connection that sent no complete request within %g s", self.header_timeout)
            self.transport.close()


class Quiet(logging.Filter):
    """At most one record a second of each kind (logger and message template); the next one
    says how many were left out. Bad clients come in floods; their log should not."""

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__()
        self.interval = interval
        self.seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = (record.name, record.msg), time.monotonic()
        last, left_out = self.seen.get(key, (-self.interval, 0))
        if now - last < self.interval:
            self.seen[key] = (last, left_out + 1)
            return False
        if len(self.seen) > 1000:  # message templates are few; preformatted ones must not pile up
            self.seen.clear()
        self.seen[key] = (now, 0)
        if left_out:
            record.msg = f"{record.msg} ({left_out} more like it in the last {now - last:.0f} s)"
        return True


# uvicorn's logging, with digitlab's and asyncio's records through the same handler, all quieted.
LOG_CONFIG = copy.deepcopy(LOGGING_CONFIG)
LOG_CONFIG["filters"] = {"quiet": {"()": Quiet}}
LOG_CONFIG["handlers"]["default"]["filters"] = ["quiet"]
LOG_CONFIG["loggers"] |= {
    "digitlab.serve": {"handlers": ["default"], "level": "INFO", "propagate": False},
    "asyncio": {"handlers": ["default"], "level": "WARNING", "propagate": False},
}
