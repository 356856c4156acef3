"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from aiohttp import web

from api.context import CLICKHOUSE, PRODUCER


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP (nothing else is checked)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the broker (a metadata round trip on the API's producer) and ClickHouse,
    checked at once, each ``up`` or ``down``; 503 unless both are up."""
    clickhouse, broker = await asyncio.gather(request.app[CLICKHOUSE].ping(), request.app[PRODUCER].ping())
    components = {"broker": "up" if broker else "down", "clickhouse": "up" if clickhouse else "down"}
    ready = broker and clickhouse
    return web.json_response({"status": "ready" if ready else "unavailable", "components": components},
                             status=200 if ready else 503)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
