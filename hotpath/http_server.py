"""hotpath's own HTTP endpoint: ``/metrics`` for Prometheus and ``/healthz``."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hotpath.metrics import Metrics


def make_app(metrics: Metrics, healthy: Callable[[], bool] = lambda: True) -> web.Application:
    async def scrape(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_: web.Request) -> web.Response:
        ok = healthy()
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", health)
    return app


class HttpServer:
    """Runs the app on host:port (port 0 picks a free one; ``.port`` tells which)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._host, self._port = host, port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        # Port 0 asks the OS for a free port; read back which one it gave.
        for addr in self._runner.addresses:
            self.port = int(addr[1])

    async def stop(self) -> None:
        await self._runner.cleanup()
