"""Tenant traces (seed 002): GET /tenants/{tenant_id}/traces and .../traces/{trace_id}.

The tenant is the caller's org: a key reads its own tenant only, and any other tenant id
answers 404, as an unknown one does (no existence leak).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from api.context import CHAINS, TRACES, caller_org
from api.errors import not_found
from api.paging import paging, read_page
from api.params import int_param, reject_unknown, str_param
from api.views.tenant import DETAIL_COLUMNS, DETAIL_FIRST, LIST_FIRST, detail, list_item
from sinks.repositories.traces import TraceQuery, contains_any

LIST_PARAMS = ("page", "per_page", "search", "cursor")
DEFAULT_PER_PAGE, MAX_PER_PAGE = 20, 100
#: What ``search`` looks in: the prompt name (or the first event name) and the model.
SEARCHED = ("prompt_name", "name", "model")


async def _tenant_org(request: web.Request) -> str:
    org_id = await caller_org(request, "traces:read")
    if request.match_info["tenant_id"] != org_id:
        raise not_found(f"tenant {request.match_info['tenant_id']}")
    return org_id


async def list_traces(request: web.Request) -> web.Response:
    """``{data, page, per_page, has_more}`` newest first, plus ``next_cursor``."""
    org_id = await _tenant_org(request)
    q = request.query
    reject_unknown(q, LIST_PARAMS)
    per_page = int_param(q, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    number = int_param(q, "page", 1, 1, 2**31)
    page = paging(q, per_page, (number - 1) * per_page, "page")
    search = str_param(q, "search")
    query = TraceQuery(filters=(contains_any(search, SEARCHED),) if search is not None else ())
    found = await read_page(request.app[TRACES], org_id, query, page, LIST_FIRST)
    return web.json_response({"data": [list_item(t) for t in found.traces], "page": number, "per_page": per_page,
                              "has_more": found.next_cursor is not None, "next_cursor": found.next_cursor})


async def get_trace(request: web.Request) -> web.Response:
    """The trace's summary with its messages, output, tools and metadata."""
    org_id = await _tenant_org(request)
    reject_unknown(request.query, ())
    trace_id = request.match_info["trace_id"]
    trace, rows = await asyncio.gather(request.app[TRACES].get(org_id, trace_id, DETAIL_FIRST),
                                       request.app[CHAINS].trace_links(org_id, trace_id, DETAIL_COLUMNS))
    if trace is None:
        raise not_found(f"trace {trace_id}")
    return web.json_response(detail(trace, rows))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/tenants/{tenant_id:[^/]+}/traces", list_traces)
    app.router.add_get("/tenants/{tenant_id:[^/]+}/traces/{trace_id:[^/]+}", get_trace)
