"""``POST /v1/audit/export`` (seed 000): the caller's org's audit log, oldest first, as a JSON array or
a CSV attachment, streamed chunk by chunk as ClickHouse is read (``api.exports.streaming``).

Body ``{"format": "json"|"csv", "from": ISO 8601, "to": ISO 8601}``, every field optional (``{}``:
the whole log as JSON); ``from``/``to`` bound ``occurredAt`` inclusively. Scope ``audit:read``. Each
export appends ``audit.exported`` to the org's audit log before its first byte.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from api.audit_trail import entry_id, publish_audit
from api.auth import authenticate, require_scope
from api.body import json_body
from api.context import AUDIT_LOG, VERIFIER
from api.errors import bad_param
from api.exports.csv_text import csv_lines
from api.exports.json_text import compact_json, json_array
from api.exports.streaming import stream
from api.params import reject_unknown, time_range
from schemas.timefmt import format_ms, now_ms
from sinks.repositories.audit_events import CHUNK_ROWS

SCOPE = "audit:read"
FIELDS = ("format", "from", "to")
FORMATS = ("json", "csv")
#: The seed's columns, in its order: CSV header and JSON keys alike.
COLUMNS = ("id", "orgId", "actor", "action", "target", "metadata", "occurredAt")
#: Characters an org id keeps in the CSV's file name; any other becomes ``_``.
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9_.-]")


def export_request(body: dict[str, Any]) -> tuple[str, int | None, int | None]:
    """(format, from ms, to ms) of the body; 400 naming the field at fault."""
    for name in body:
        if name not in FIELDS:
            raise bad_param(name, f"unknown field; allowed: {', '.join(FIELDS)}")
    fmt = body.get("format", "json")
    if fmt not in FORMATS:
        raise bad_param("format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    for name in ("from", "to"):
        if name in body and not isinstance(body[name], str):  # null too: leave the field out instead
            raise bad_param(name, "expected an ISO 8601 timestamp string such as 2026-11-23T10:00:00.123Z")
    from_ms, to_ms = time_range(body, "from", "to")
    return fmt, from_ms, to_ms


def entry_values(row: dict[str, Any]) -> tuple[Any, ...]:
    """One stored entry as the values of ``COLUMNS``: metadata is a dict, occurredAt ISO 8601 with ms."""
    return (row["id"], row["org_id"], row["actor"], row["action"], row["target"], row["metadata"],
            format_ms(row["occurred_at"]))


async def json_objects(chunks: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """Each chunk's entries as JSON objects joined by commas (``json_array``'s pieces)."""
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            yield ",".join(compact_json(dict(zip(COLUMNS, entry_values(r), strict=True))) for r in chunk).encode()


async def csv_pieces(chunks: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """The header row, then the entries (one piece per chunk); metadata as compact JSON."""
    yield csv_lines([COLUMNS])
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            yield csv_lines((*values[:5], compact_json(values[5]), values[6])
                            for values in map(entry_values, chunk))


def csv_filename(org_id: str, at_ms: int) -> str:
    """``audit-<org>-<yyyymmddThhmmssZ>.csv``, the org id restricted to ``[A-Za-z0-9_.-]``."""
    stamp = format_ms(at_ms)[:19].replace("-", "").replace(":", "") + "Z"
    return f"audit-{_UNSAFE_IN_FILENAME.sub('_', org_id)}-{stamp}.csv"


async def export_audit(request: web.Request) -> web.StreamResponse:
    """Validate, count, write ``audit.exported``, then stream the entries."""
    principal = await authenticate(request, request.app[VERIFIER])
    org_id = require_scope(principal, SCOPE)
    reject_unknown(request.query, ())
    fmt, from_ms, to_ms = export_request(json_body(await request.read(), "{format, from, to}"))
    repo = request.app[AUDIT_LOG]
    total = await repo.count(org_id, from_ms, to_ms)
    now = now_ms()
    bounds = {name: format_ms(ms) for name, ms in (("from", from_ms), ("to", to_ms)) if ms is not None}
    await publish_audit(request, org_id, entry_id("export"), principal.key_id, "audit.exported", org_id,
                        {"format": fmt, "rows": str(total)} | bounds, now)
    chunks = repo.chunks(org_id, from_ms, to_ms, chunk_rows=CHUNK_ROWS)
    headers = {"X-Total-Count": str(total)}
    if fmt == "csv":
        headers["Content-Disposition"] = f'attachment; filename="{csv_filename(org_id, now)}"'
        return await stream(request, csv_pieces(chunks), "text/csv; charset=utf-8", headers)
    return await stream(request, json_array(json_objects(chunks)), "application/json", headers)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/audit/export", export_audit)
