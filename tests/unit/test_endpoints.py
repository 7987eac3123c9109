"""The HTTP endpoints: /metrics serves the exposition without stalling the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiohttp import test_utils

from lockstep.controller import endpoints, metrics

BODY = b"# HELP x A test series\n# TYPE x gauge\nx 1.0\n"
WAIT = 5.0  # seconds: how long the slow exposition waits for the probe before it gives up


async def _serve_slow_scrape(monkeypatch: pytest.MonkeyPatch) -> tuple[int, bytes, str, int]:
    """GET /metrics with an exposition that ends only once /healthz has been answered meanwhile
    (after WAIT seconds, with an error, if the loop cannot answer it)."""
    scraping, probed = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    def slow_exposition() -> bytes:
        threads.append(threading.current_thread())
        scraping.set()
        if not probed.wait(WAIT):
            raise TimeoutError("/healthz was not answered while /metrics was being formatted")
        return BODY

    monkeypatch.setattr(metrics, "exposition", slow_exposition)
    app = endpoints.build_app(endpoints.Readiness())
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        scrape = asyncio.create_task(client.get("/metrics"))
        assert await asyncio.to_thread(scraping.wait, WAIT)
        health = await client.get("/healthz")
        probed.set()
        response = await scrape
        body = await response.read()
        assert threads != [threading.current_thread()], "the exposition ran on the event loop"
        return response.status, body, response.headers["Content-Type"], health.status


def test_a_scrape_leaves_the_event_loop_free(monkeypatch: pytest.MonkeyPatch) -> None:
    status, body, content_type, health = asyncio.run(_serve_slow_scrape(monkeypatch))
    assert (status, body, health) == (200, BODY, 200)
    assert content_type == endpoints.CONTENT_TYPE


def test_metrics_serves_the_exposition() -> None:
    metrics.set_state("ns-e", "m", {"ready": 1.0})

    async def scrape() -> bytes:
        app = endpoints.build_app(endpoints.Readiness())
        async with test_utils.TestClient(test_utils.TestServer(app)) as client:
            response = await client.get("/metrics")
            assert response.status == 200
            return await response.read()

    try:
        served = asyncio.run(scrape())
        assert served == metrics.exposition()
        assert b'lockstep_migration_ready{name="m",namespace="ns-e"} 1.0\n' in served
    finally:
        metrics.forget("ns-e", "m")
