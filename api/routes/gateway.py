"""Gateway traces (seed 000): GET /v1/traces and GET /v1/traces/{trace_id}."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from api.context import EVENTS, ROLLUPS, caller_org
from api.errors import bad_param, not_found
from api.params import (
    encode_cursor,
    enum_param,
    float_param,
    int_param,
    key_cursor,
    reject_unknown,
    str_param,
    time_range,
)
from schemas.timefmt import QUERY_MIN_MS, format_ms, now_ms
from sinks.repositories.events import EventFilter
from sinks.repositories.rollups import HOUR_MS

#: Seed 000's parameters, then seed 001's filters (AgentMark trace export) as extras.
GATEWAY_PARAMS = ("limit", "cursor", "class", "type", "since", "until")
AGENTMARK_PARAMS = ("startDate", "endDate", "model", "status", "name", "minScore", "maxScore", "userId", "tag",
                    "metadata_key", "metadata_value")
DEFAULT_LIMIT, MAX_LIMIT = 50, 200
STATUSES = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
#: Seed 001's default window when none is given: the last 30 days (only when a seed 001 filter is used).
AGENTMARK_WINDOW_MS = 30 * 86_400_000


def _one_of(query: Mapping[str, str], gateway: str, agentmark: str) -> str:
    if gateway in query and agentmark in query:
        raise bad_param(agentmark, f"give {gateway} or {agentmark}, not both")
    return agentmark if agentmark in query else gateway


def event_filter(query: Mapping[str, str], *, default_window: bool = False) -> EventFilter:
    """The event list's filters: seed 000's (class, type, since, until) and seed 001's. Without a
    start, the window is seed 001's last 30 days when ``default_window`` or any seed 001 filter is given."""
    start, end = _one_of(query, "since", "startDate"), _one_of(query, "until", "endDate")
    since_ms, until_ms = time_range(query, start, end)
    if since_ms is None and (default_window or any(name in query for name in AGENTMARK_PARAMS)):
        since_ms = max(QUERY_MIN_MS, (until_ms if until_ms is not None else now_ms()) - AGENTMARK_WINDOW_MS)
    key, value = str_param(query, "metadata_key"), str_param(query, "metadata_value", 4096)
    if (key is None) != (value is None):
        raise bad_param("metadata_key" if key is None else "metadata_value",
                        "metadata_key and metadata_value must be given together")
    event_type = str_param(query, "type")
    return EventFilter(
        event_class=str_param(query, "class"), event_type=None if event_type == "all" else event_type,
        since_ms=since_ms, until_ms=until_ms, model=str_param(query, "model"),
        status=enum_param(query, "status", STATUSES), name_contains=str_param(query, "name"),
        min_score=float_param(query, "minScore"), max_score=float_param(query, "maxScore"),
        user_id=str_param(query, "userId"), tag=str_param(query, "tag"),
        metadata=(key, value) if key is not None and value is not None else None)


def events_response(docs: Sequence[str], **fields: Any) -> web.Response:
    """A JSON object of ``events`` (the stored event documents, joined as they are) and ``fields``."""
    rest = "," + json.dumps(fields)[1:] if fields else "}"
    return web.Response(text='{"events":[' + ",".join(docs) + "]" + rest, content_type="application/json")


async def list_traces(request: web.Request) -> web.Response:
    org_id = await caller_org(request, "traces:read")
    q = request.query
    reject_unknown(q, GATEWAY_PARAMS + AGENTMARK_PARAMS)
    limit = int_param(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    flt = event_filter(q)
    page = await request.app[EVENTS].page(org_id, flt, limit, key_cursor(q.get("cursor")))
    next_cursor = encode_cursor(list(page.next_key)) if page.next_key else None
    return events_response(page.events, nextCursor=next_cursor)


async def get_trace(request: web.Request) -> web.Response:
    org_id = await caller_org(request, "traces:read")
    reject_unknown(request.query, ())
    trace_id = request.match_info["trace_id"]
    events = await request.app[EVENTS].trace(org_id, trace_id)
    if not events:
        raise not_found(f"trace {trace_id}")
    return events_response(events, trace_id=trace_id, event_count=len(events))


async def metrics(request: web.Request) -> web.Response:
    """The hourly rollups (counts, errors, tokens and cost per hour, type and outcome) of the
    whole hours from the one holding ``since`` (default: 24 h ago) to the one holding ``until``."""
    org_id = await caller_org(request, "traces:read")
    q = request.query
    reject_unknown(q, ("since", "until"))
    since_ms, until_ms = time_range(q, "since", "until")
    if since_ms is None:
        since_ms = max(QUERY_MIN_MS, (until_ms if until_ms is not None else now_ms()) - 24 * HOUR_MS)
    since_ms -= since_ms % HOUR_MS
    buckets = [b.to_json() for b in await request.app[ROLLUPS].buckets(org_id, since_ms, until_ms)]
    body = {"since": format_ms(since_ms), "until": None if until_ms is None else format_ms(until_ms),
            "buckets": buckets, "total": sum(b["count"] for b in buckets)}
    return web.json_response(body)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/metrics", metrics)
    app.router.add_get("/v1/traces", list_traces)
    app.router.add_get("/v1/traces/{trace_id:[^/]+}", get_trace)
