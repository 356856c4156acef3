"""Gateway traces (seed 000): GET /v1/traces and GET /v1/traces/{trace_id}."""

from __future__ import annotations

from aiohttp import web

from api.context import EVENTS, caller_org
from api.errors import bad_param, not_found
from api.params import decode_cursor, encode_cursor, int_param, reject_unknown, str_param, time_param
from schemas.timefmt import format_ms, now_ms
from sinks.repositories.events import EventFilter

LIST_PARAMS = ("limit", "cursor", "class", "type", "since", "until")
DEFAULT_LIMIT, MAX_LIMIT = 50, 200


def _after(raw: str | None) -> tuple[int, str] | None:
    if raw is None:
        return None
    key = decode_cursor(raw)
    if not (isinstance(key, list) and len(key) == 2 and isinstance(key[0], int) and isinstance(key[1], str)):
        raise bad_param("cursor", "not a cursor returned by this API")
    return key[0], key[1]


async def list_traces(request: web.Request) -> web.Response:
    org_id = await caller_org(request, "traces:read")
    q = request.query
    reject_unknown(q, LIST_PARAMS)
    limit = int_param(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    flt = EventFilter(event_class=str_param(q, "class"), event_type=str_param(q, "type"),
                      since_ms=time_param(q, "since"), until_ms=time_param(q, "until"))
    if flt.since_ms is not None and flt.until_ms is not None and flt.since_ms > flt.until_ms:
        raise bad_param("since", "must not be after until")
    page = await request.app[EVENTS].page(org_id, flt, limit, _after(q.get("cursor")))
    next_cursor = encode_cursor(list(page.next_key)) if page.next_key else None
    return web.json_response({"events": page.events, "nextCursor": next_cursor})


async def get_trace(request: web.Request) -> web.Response:
    org_id = await caller_org(request, "traces:read")
    reject_unknown(request.query, ())
    trace_id = request.match_info["trace_id"]
    events = await request.app[EVENTS].trace(org_id, trace_id)
    if not events:
        raise not_found(f"trace {trace_id}")
    return web.json_response({"trace_id": trace_id, "event_count": len(events), "events": events})


async def metrics(request: web.Request) -> web.Response:
    """Pre-aggregated counts per hour, type and outcome since ``since`` (default: last 24 h)."""
    org_id = await caller_org(request, "traces:read")
    q = request.query
    reject_unknown(q, ("since", "until"))
    until_ms = time_param(q, "until")
    since_ms = time_param(q, "since")
    if since_ms is None:
        since_ms = now_ms() - 24 * 3_600_000
    if until_ms is not None and since_ms > until_ms:
        raise bad_param("since", "must not be after until")
    buckets = await request.app[EVENTS].hourly_counts(org_id, since_ms, until_ms)
    return web.json_response({"since": format_ms(since_ms), "buckets": buckets,
                              "total": sum(b["count"] for b in buckets)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/metrics", metrics)
    app.router.add_get("/v1/traces", list_traces)
    app.router.add_get("/v1/traces/{trace_id}", get_trace)
