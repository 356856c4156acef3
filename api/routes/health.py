"""Liveness and readiness."""

from __future__ import annotations

from aiohttp import web

from api.context import CLICKHOUSE


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ok = await request.app[CLICKHOUSE].ping()
    return web.json_response({"status": "ready" if ok else "clickhouse unavailable"},
                             status=200 if ok else 503)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
