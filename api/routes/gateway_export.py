"""Seed 001's trace export (AgentMark): ``GET /v1/traces/export``, one page of events of the event
list's filters as JSONL (the seed's default, ending with an ``_export_meta`` line), CSV, OpenAI chat
fine-tuning JSONL, a JSON array or Parquet, streamed.

A page is decided before its first byte: its (at most ``limit``) events are read first, with the
documents of the small ones, so ``next_cursor`` can travel in the ``X-Next-Cursor`` header of every
format too; the larger documents are then read in chunks of at most ``CHUNK_BYTES``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
from aiohttp import web
from multidict import CIMultiDictProxy

from api.context import EVENT_EXPORTS, caller_org
from api.errors import bad_param
from api.exports.csv_text import csv_lines
from api.exports.fine_tuning import chat_example
from api.exports.json_text import compact_json, json_array
from api.exports.parquet_stream import parquet_pieces
from api.exports.streaming import stream
from api.params import bool_param, decode_cursor, encode_cursor, enum_param, int_param, keyset_position, reject_unknown
from api.routes.gateway import AGENTMARK_PARAMS, event_filter
from schemas.model import MAX_ID_LEN, unaddressable_id
from schemas.registry import record_fields
from schemas.timefmt import check_query_ms, now_ms, parse_ms
from sinks.repositories.events import EventFilter

FORMATS = ("jsonl", "csv", "openai", "json", "parquet")
DEFAULT_LIMIT, MAX_LIMIT = 500, 2000
#: Events read per ClickHouse query for Parquet (chdb buffers a whole result before its first row).
CHUNK_ROWS = 1000
#: A page's query carries the documents of at most this size; larger ones are read in chunks of at
#: most ``CHUNK_BYTES`` (one event may be up to TRACEHOUSE_MAX_EVENT_BYTES), so a page of 2,000
#: events holds at most ~32 MB of small documents plus one chunk.
INLINE_BYTES = 16 * 1024
CHUNK_BYTES = 16 * 1024 * 1024
EXPORT_PARAMS = ("format", "limit", "lightweight", "cursor", "type", *AGENTMARK_PARAMS)
#: The seed's Input, Output, OutputObject and ToolCalls: ``input``, ``output`` (text or object) and
#: ``messages`` (the conversation, where the tool calls are).
HEAVY_FIELDS = ("input", "output", "messages")
#: Columns of the CSV: the event document's fields, in its order.
EVENT_FIELDS = tuple(f["name"] for f in record_fields("TraceEvent"))
#: Fields written as their JSON text in a CSV cell (any JSON value, maps, arrays).
JSON_CELLS = frozenset(f["name"] for f in record_fields("TraceEvent")
                       if f.get("tracehouse.json") or any(isinstance(t, dict) and t.get("type") in ("map", "array")
                                                          for t in (f["type"] if isinstance(f["type"], list)
                                                                    else [f["type"]])))
APP_ID_HEADER = "X-Agentmark-App-Id"
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "openai": "application/x-ndjson",
                 "csv": "text/csv; charset=utf-8", "json": "application/json",
                 "parquet": "application/vnd.apache.parquet"}
FILENAMES = {"jsonl": "traces-export.jsonl", "openai": "traces-export-openai.jsonl", "csv": "traces-export.csv",
             "json": "traces-export.json", "parquet": "traces-export.parquet"}


def app_id_header(headers: CIMultiDictProxy[str]) -> str | None:
    """``X-Agentmark-App-Id``: the application of the caller's org whose events to export (exact
    match), None when absent (every event of the org)."""
    given = headers.getall(APP_ID_HEADER, [])
    if not given:
        return None
    if len(given) > 1:
        raise bad_param(APP_ID_HEADER, "give the header once")
    app_id = given[0]
    if not 0 < len(app_id) <= MAX_ID_LEN:
        raise bad_param(APP_ID_HEADER, f"must be 1 to {MAX_ID_LEN} characters")
    if unaddressable_id(app_id):
        raise bad_param(APP_ID_HEADER, "must not hold control characters or be . or ..")
    return app_id


@dataclasses.dataclass(frozen=True)
class ExportPosition:
    """Where a page of a walk starts: after the keyset position ``after`` (a ``next_cursor``) or
    after the instant ``after_ms`` (the seed's date-time cursor), in the walk's snapshot: the events
    stored at or before ``as_of_ms``."""

    as_of_ms: int
    after: tuple[int, str] | None = None
    after_ms: int | None = None


def export_position(query: Mapping[str, str]) -> ExportPosition:
    """``cursor``: a ``next_cursor`` of this API (a keyset position and the walk's snapshot instant),
    or an ISO 8601 time (the seed's date-time cursor: the events after that instant, in a snapshot
    taken now). No cursor starts a walk with a snapshot taken now."""
    raw = query.get("cursor")
    if raw is None:
        return ExportPosition(now_ms())
    try:
        at = parse_ms(raw)
    except ValueError:
        pass
    else:
        try:
            return ExportPosition(now_ms(), after_ms=check_query_ms(at))
        except ValueError as exc:
            raise bad_param("cursor", str(exc)) from None
    key = decode_cursor(raw)
    if not (isinstance(key, list) and len(key) == 3 and type(key[2]) is int):
        raise bad_param("cursor", "not a cursor returned by this API")
    after = keyset_position(key[:2])
    try:
        return ExportPosition(check_query_ms(key[2]), after=after)
    except ValueError:
        raise bad_param("cursor", "not a cursor returned by this API") from None


def export_filter(query: Mapping[str, str], fmt: str, position: ExportPosition) -> EventFilter:
    """The event list's filters in the walk's snapshot; the window defaults to the last 30 days up
    to the snapshot's instant, and ``openai`` exports generations only."""
    flt = event_filter(query, default_window=True)
    flt = dataclasses.replace(flt, stored_until_ms=position.as_of_ms)
    if flt.until_ms is None:
        flt = dataclasses.replace(flt, until_ms=position.as_of_ms)
    after_ms = position.after_ms
    if after_ms is not None and (flt.since_ms is None or flt.since_ms <= after_ms):
        flt = dataclasses.replace(flt, since_ms=after_ms + 1)
    if fmt == "openai":
        if flt.event_type not in (None, "GENERATION"):
            raise bad_param("type", "format=openai exports generations: give GENERATION, all or nothing")
        flt = dataclasses.replace(flt, event_type="GENERATION")
    return flt


def light(doc: str) -> dict[str, Any]:
    """An event document without the heavy fields."""
    data = json.loads(doc)
    for name in HEAVY_FIELDS:
        data.pop(name, None)
    return data


def csv_row(event: Mapping[str, Any], columns: Sequence[str]) -> list[Any]:
    """An event's CSV cells: JSON-valued fields as their JSON text, null as an empty cell."""
    return [compact_json(event[c]) if c in JSON_CELLS and event[c] is not None else event[c] for c in columns]


async def export_traces(request: web.Request) -> web.StreamResponse:
    """``GET /v1/traces/export``: up to ``limit`` events of the filters after ``cursor``, oldest first."""
    org_id = await caller_org(request, "traces:read")
    app_id = app_id_header(request.headers)
    q = request.query
    reject_unknown(q, EXPORT_PARAMS)
    fmt = enum_param(q, "format", FORMATS) or "jsonl"
    limit = int_param(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    lightweight = bool_param(q, "lightweight")
    if lightweight and fmt == "openai":
        raise bad_param("lightweight", "format=openai writes the conversations that lightweight leaves out")
    position = export_position(q)
    flt = dataclasses.replace(export_filter(q, fmt, position), app_id=app_id)
    exports = request.app[EVENT_EXPORTS]
    # Parquet reads the stored columns, not the documents
    inline = 0 if fmt == "parquet" else INLINE_BYTES
    rows, more = await exports.page_rows(org_id, flt, limit + 1, position.after, inline)
    more, rows = more or len(rows) > limit, rows[:limit]
    keys = [row.key for row in rows]
    next_cursor = encode_cursor([*keys[-1], position.as_of_ms]) if more and keys else None

    async def chunks() -> AsyncIterator[list[str]]:
        """The page's documents in order, in chunks holding at most ``CHUNK_BYTES`` of large ones."""
        start, large = 0, 0
        for end, row in enumerate(rows, 1):
            large += row.size if row.doc is None else 0
            if large >= CHUNK_BYTES or end == len(rows):
                chunk = rows[start:end]
                fetched = await exports.documents(org_id, flt, [r.key for r in chunk if r.doc is None])
                yield [doc for r in chunk if (doc := r.doc if r.doc is not None else fetched.get(r.key)) is not None]
                start, large = end, 0

    async def events() -> AsyncIterator[list[str]]:
        """Each chunk's events as JSON text."""
        async for docs in chunks():
            yield [compact_json(light(d)) for d in docs] if lightweight else docs

    async def jsonl() -> AsyncIterator[bytes]:
        count = 0
        async for lines in events():
            count += len(lines)
            if lines:
                yield ("\n".join(lines) + "\n").encode()
        meta = {"next_cursor": next_cursor, "has_more": next_cursor is not None, "count": count, "limit": limit}
        yield (compact_json({"_export_meta": meta}) + "\n").encode()

    def array() -> AsyncIterator[bytes]:
        return json_array(",".join(lines).encode() async for lines in events())

    async def csv_text() -> AsyncIterator[bytes]:
        columns = [c for c in EVENT_FIELDS if not (lightweight and c in HEAVY_FIELDS)]
        yield csv_lines([columns])
        async for docs in chunks():
            yield csv_lines(csv_row(json.loads(d), columns) for d in docs)

    async def openai() -> AsyncIterator[bytes]:
        async for docs in chunks():
            examples = (chat_example(json.loads(d)) for d in docs)
            yield "".join(compact_json(e) + "\n" for e in examples if e is not None).encode()

    async def tables() -> AsyncIterator[pa.Table]:
        for start in range(0, max(len(keys), 1), CHUNK_ROWS):  # one table at least: the columns
            table = await exports.stored_columns(org_id, flt, keys[start:start + CHUNK_ROWS])
            yield table.drop_columns(list(HEAVY_FIELDS)) if lightweight else table

    pieces = {"jsonl": jsonl, "json": array, "csv": csv_text, "openai": openai,
              "parquet": lambda: parquet_pieces(tables())}[fmt]()
    headers = {"Content-Disposition": f'attachment; filename="{FILENAMES[fmt]}"'}
    if next_cursor is not None:
        headers["X-Next-Cursor"] = next_cursor
    return await stream(request, pieces, CONTENT_TYPES[fmt], headers)


def add_routes(app: web.Application) -> None:
    """Registered before the gateway's trace route: ``/v1/traces/export`` is not a trace id."""
    app.router.add_get("/v1/traces/export", export_traces)
