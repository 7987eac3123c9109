"""The operator's plain HTTP endpoints, served by every replica (leader or standby):
`/healthz` (alive), `/readyz` (ready: the gate webhook serves and is registered), `/metrics`."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from aiohttp import web

from lockstep.controller import metrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Where a scrape is formatted: off the event loop, which would otherwise run no reconcile pass
# and answer no probe until it is done (0.4 s of CPU at 10,000 migrations with a run each,
# docs/performance.md); on a thread of its own, so it never takes a worker the reconciler's
# blocking calls wait for, and scrapes that arrive together take turns. Formatting still holds
# the GIL, but hands it to the loop when asked, every switch interval (5 ms).
_SCRAPES: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics")


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _metrics(_: web.Request) -> web.Response:
    body = await asyncio.get_running_loop().run_in_executor(_SCRAPES, metrics.exposition)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


class Readiness:
    """Set once start-up is done; /readyz answers 503 until then."""

    def __init__(self) -> None:
        self.ready = False

    async def readyz(self, _: web.Request) -> web.Response:
        if self.ready:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="starting\n")


def build_app(readiness: Readiness) -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", readiness.readyz)
    app.router.add_get("/metrics", _metrics)
    return app


async def start(host: str, port: int, readiness: Readiness) -> web.AppRunner:
    runner = web.AppRunner(build_app(readiness), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
