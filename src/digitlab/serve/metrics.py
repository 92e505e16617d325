"""Prometheus metrics for `digitlab serve`, at GET /metrics (prometheus_client's text format).

    digitlab_requests_total{method, route, status}      requests answered; 499: the client left first
    digitlab_request_duration_seconds{method, route}    latency histogram, from first byte to last
    digitlab_requests_in_flight                         requests being answered now
    digitlab_predictions_total{digit}                   digits read by the v1 API
    digitlab_declined_total                             v1 answers declined as not a digit
    digitlab_queue_waiting                              requests waiting for a worker
    digitlab_workers_busy                               workers at work now (saturated: all of them)

`route` is the route's template (`/v2/models/{model_name}/infer`), or `unmatched` for paths the
app does not serve, so a scanner cannot grow the label set. With several processes
(`digitlab serve --workers N`), prometheus_client's multiprocess mode sums them: each process
writes its values to files in $PROMETHEUS_MULTIPROC_DIR and /metrics reads them all.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """One app's metrics. In one process they live in a registry of the app's own (tests make
    many apps in one process); in multiprocess mode each is written to the shared folder and a
    fresh registry reads them all at each scrape, as prometheus_client prescribes."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = None if multiprocess() else CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "digitlab_requests", "HTTP requests answered", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "digitlab_request_duration_seconds", "Time to answer a request", ["method", "route"], registry=registry
        )
        self.in_flight = Gauge(
            "digitlab_requests_in_flight", "Requests being answered", registry=registry, multiprocess_mode="livesum"
        )
        self.predictions = Counter(
            "digitlab_predictions", "Digits read (v1 API), by digit", ["digit"], registry=registry
        )
        self.declined = Counter("digitlab_declined", "Answers declined as not a digit (v1 API)", registry=registry)
        self.waiting = Gauge(
            "digitlab_queue_waiting", "Requests waiting for a worker", registry=registry, multiprocess_mode="livesum"
        )
        self.busy = Gauge(
            "digitlab_workers_busy", "Workers at work now", registry=registry, multiprocess_mode="livesum"
        )

    def count(self, answer: dict) -> None:
        """Count the digits of one v1 answer (a number's digits one by one)."""
        for item in answer.get("digits", [answer]):
            if item.get("digit") is None:
                self.declined.inc()
            else:
                self.predictions.labels(digit=str(item["digit"])).inc()

    def scrape(self) -> bytes:
        if self.registry is not None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)


class Measured:
    """ASGI middleware timing and counting every HTTP request, 4xx, 413s from the body limit
    and 500s from unexpected errors included, in the metrics the app's lifespan made (until it
    has made them, requests are not counted)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        metrics = getattr(scope["app"].state, "metrics", None) if scope["type"] == "http" else None
        if metrics is None:
            return await self.app(scope, receive, send)
        status = 500  # if the app raises before answering, the server's 500 handler answers
        start = time.perf_counter()

        async def sent(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, sent)
        finally:
            metrics.in_flight.dec()
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            metrics.requests.labels(scope["method"], path, str(status)).inc()
            metrics.latency.labels(scope["method"], path).observe(time.perf_counter() - start)
