"""Governance traces (seed 003): ``/api/v1/traces/{trace_id}/verify``."""

from __future__ import annotations

import asyncio

from aiohttp import web

from api.context import CHAINS, caller_org
from api.errors import not_found
from api.params import reject_unknown
from schemas.integrity import Verdict, verify
from schemas.timefmt import format_ms, now_ms
from sinks.repositories.chains import TRACE_LINKS


def verdict_json(verdict: Verdict) -> dict:
    """The seed's verify fields: first_invalid_event (and our reason) only when invalid."""
    out: dict = {"valid": verdict.valid, "event_count": verdict.event_count}
    if not verdict.valid:
        out["first_invalid_event"] = verdict.first_invalid_event
        out["reason"] = verdict.reason
    out["verified_at"] = format_ms(now_ms())
    return out


async def verify_trace(request: web.Request) -> web.Response:
    """Recompute a trace's chain from what ClickHouse holds."""
    org_id = await caller_org(request, "traces:read")
    reject_unknown(request.query, ())
    trace_id = request.match_info["trace_id"]
    rows = await request.app[CHAINS].trace_links(org_id, trace_id)
    if not rows:
        raise not_found(f"trace {trace_id}")
    verdict = await asyncio.to_thread(verify, rows, TRACE_LINKS.id_column)
    return web.json_response({"trace_id": trace_id} | verdict_json(verdict))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/traces/{trace_id}/verify", verify_trace)
