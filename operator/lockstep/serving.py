"""The operator's plain HTTP endpoints, served by every replica (leader or standby):
`/healthz` (alive), `/readyz` (ready to serve), `/metrics` (Prometheus)."""

from __future__ import annotations

from aiohttp import web

from lockstep import metrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _healthz)
    app.router.add_get("/metrics", _metrics)
    return app


async def start(host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
