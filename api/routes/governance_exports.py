"""Seed 003's bulk exports: the traces of a date range as CSV, and their individual events for SIEMs
(JSON or CSV), both streamed from ClickHouse chunk by chunk (``api.exports.streaming``).

Both need ``reviewer`` (or ``admin``), name the date range with ``from`` and ``to`` (required, ISO
8601), count the rows first (``X-Total-Count``) and answer 413 ``export_too_large`` above
``TRACEHOUSE_EXPORT_MAX_ROWS`` (default 100,000, the seed's limit). Rows that arrive while an export
streams may or may not be in it; none is written twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web

from api.context import EVENT_EXPORTS, SETTINGS, TRACES, caller_org
from api.errors import ApiError, bad_param
from api.exports.csv_text import csv_lines
from api.exports.json_text import json_array
from api.exports.streaming import ReadAhead, stream
from api.params import enum_param, reject_unknown, str_param, time_range
from sinks.repositories.siem_sql import SIEM_COLUMNS
from sinks.repositories.traces import TraceExports, TraceQuery, first_value_is

#: Seed 003's CSV columns of a trace, in the seed's order.
TRACE_COLUMNS = ("trace_id", "agent_id", "agent_name", "operation", "target_integration", "resource_scope",
                 "data_classification", "final_outcome", "started_at", "completed_at", "duration_ms",
                 "approval_required", "approver_name", "approval_decision", "approval_decided_at", "policy_rule_id",
                 "policy_version")
#: Rows read from ClickHouse per query; the response holds one chunk at a time (a 20,000-event
#: chunk of JSON is ~7 MB; at 50,000 the API's peak RSS grew by 250-480 MB over a 1M-event export,
#: measured 2026-12-05). The first chunk is smaller, so that the first byte leaves early.
CHUNK_ROWS = 20_000
FIRST_CHUNK_ROWS = 5_000
#: Traces per chunk of the traces CSV: its rows are ~160 bytes, and each chunk merges its traces'
#: partial rows (``FINAL``), which costs less per trace in larger chunks.
TRACE_CHUNK_ROWS = 50_000


def date_range(query: Mapping[str, str]) -> tuple[int, int]:
    """The required ``from``/``to`` (epoch ms); 400 ``validation_error`` naming the one missing or invalid."""
    for name in ("from", "to"):
        if name not in query:
            raise bad_param(name, "required: an ISO 8601 date or time")
    since, until = time_range(query, "from", "to")
    assert since is not None and until is not None
    return since, until


Key = tuple[int, str]


async def in_chunks(read: Callable[[int, Key | None], Awaitable[tuple[bytes, Key | None]]],
                    chunk_rows: int | None = None) -> AsyncIterator[bytes]:
    """What ``read(limit, after)`` gives, chunk after chunk from the start until it names no key to go
    on after: a small first chunk (an early first byte), then ``chunk_rows`` (default ``CHUNK_ROWS``) each."""
    after, limit = None, FIRST_CHUNK_ROWS
    while True:
        body, after = await read(limit, after)
        yield body
        if after is None:
            return
        limit = chunk_rows or CHUNK_ROWS


async def counted(request: web.Request, count: Awaitable[int], what: str,
                  pieces: AsyncIterator[bytes]) -> tuple[int, ReadAhead]:
    """The export's row count and its pieces, the first of them read while ``count`` runs; 413
    ``export_too_large`` above ``TRACEHOUSE_EXPORT_MAX_ROWS``."""
    ahead = ReadAhead(pieces)
    try:
        total = await count
        cap = request.app[SETTINGS].export_max_rows
        if total > cap:
            raise ApiError(413, "export_too_large", f"the export holds {total:,} {what}, more than {cap:,}: "
                           "narrow the date range", {"total": total, "limit": cap})
    except BaseException:
        await ahead.aclose()
        raise
    return total, ahead


async def export_traces(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/traces/export?from=&to=&format=csv[&agent_id=]``: one CSV row per trace that
    started in the range, newest first."""
    org_id = await caller_org(request, "reviewer")
    q = request.query
    reject_unknown(q, ("from", "to", "format", "agent_id"))
    since, until = date_range(q)
    if q.get("format") != "csv":
        raise bad_param("format", "required: csv")
    agent_id = str_param(q, "agent_id")
    query = TraceQuery(since, until, (first_value_is("agent_id", agent_id),) if agent_id is not None else ())
    traces = request.app[TRACES]
    exports = TraceExports(traces)

    async def pieces() -> AsyncIterator[bytes]:
        yield csv_lines([TRACE_COLUMNS])
        async for body in in_chunks(lambda limit, after: exports.csv_chunk(org_id, query, limit, after),
                                    TRACE_CHUNK_ROWS):
            yield body

    total, rows = await counted(request, traces.count(org_id, query), "traces", pieces())
    filename = f"audit-{q['from']}-to-{q['to']}.csv"
    return await stream(request, rows, "text/csv; charset=utf-8", {
        "Content-Disposition": f'attachment; filename="{filename}"', "X-Total-Count": str(total)})


async def export_audit_events(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/audit/export?from=&to=[&format=json|csv|ocsf|cef]``: every event that occurred
    in the range, oldest first, as a JSON array (default), CSV, or one OCSF object or CEF line per event."""
    org_id = await caller_org(request, "reviewer")
    q = request.query
    reject_unknown(q, ("from", "to", "format"))
    since, until = date_range(q)
    fmt = enum_param(q, "format", ("json", "csv", "ocsf", "cef")) or "json"
    events = request.app[EVENT_EXPORTS]

    def formatted(fmt: str) -> AsyncIterator[bytes]:
        """ClickHouse's own lines of ``fmt``, chunk by chunk."""
        return in_chunks(lambda limit, after: events.siem_formatted(org_id, since, until, fmt, limit, after))

    async def csv_pieces() -> AsyncIterator[bytes]:
        yield csv_lines([SIEM_COLUMNS])
        async for body in formatted("csv"):
            yield body

    def json_pieces() -> AsyncIterator[bytes]:
        # one object per line and no newline inside one: the lines joined by commas
        return json_array(body.rstrip(b"\n").replace(b"\n", b",") async for body in formatted("json"))

    pieces, content_type = {"ocsf": (lambda: formatted("ocsf"), "application/x-ndjson"),
                            "cef": (lambda: formatted("cef"), "text/plain; charset=utf-8"),
                            "csv": (csv_pieces, "text/csv; charset=utf-8"),
                            "json": (json_pieces, "application/json")}[fmt]
    total, ahead = await counted(request, events.count(org_id, since, until), "events", pieces())
    headers = {"X-Total-Count": str(total)}
    if fmt == "csv":
        headers["Content-Disposition"] = f'attachment; filename="audit-events-{q["from"]}-to-{q["to"]}.csv"'
    return await stream(request, ahead, content_type, headers)


def add_routes(app: web.Application) -> None:
    """Registered before the trace routes: ``/api/v1/traces/export`` is not a trace id."""
    app.router.add_get("/api/v1/traces/export", export_traces)
    app.router.add_get("/api/v1/audit/export", export_audit_events)
