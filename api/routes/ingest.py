"""POST /v1/events and POST /v1/audit/events: validate, publish, report each rejection."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from api.context import PRODUCER, SETTINGS, caller_org
from api.errors import ApiError
from schemas.model import ValidationError, validate_audit_event, validate_trace_event
from schemas.timefmt import format_ms, now_ms

MAX_REPORTED_PAYLOAD = 64 * 1024


async def read_items(request: web.Request, source: str, org_id: str) -> list[Any]:
    """The JSON array (or ``{"events": [...]}``) of a request; 400/413 otherwise."""
    settings = request.app[SETTINGS]
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        await request.app[PRODUCER].send_invalid([{
            "source": source, "org_id": org_id, "received_at": format_ms(now_ms()),
            "field": "(body)", "reason": f"malformed JSON: {exc}",
            "payload": raw[:MAX_REPORTED_PAYLOAD].decode("utf-8", "replace"),
        }])
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if isinstance(body, dict) and set(body) == {"events"}:
        body = body["events"]
    if not isinstance(body, list):
        raise ApiError(400, "validation_error", 'body must be a JSON array of events or {"events": [...]}',
                       {"field": "(body)"})
    if len(body) > settings.max_batch_events:
        raise ApiError(413, "batch_too_large",
                       f"{len(body)} events in one request; the limit is {settings.max_batch_events}",
                       {"max_events": settings.max_batch_events})
    if not body:
        raise ApiError(400, "validation_error", "no events in the request", {"field": "(body)"})
    return body


def validate_all(items: list[Any], validate: Callable[..., dict[str, Any]], org_id: str,
                 source: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(valid datums, rejections for the client, reports for invalid-events)."""
    now = now_ms()
    valid, rejected, reports = [], [], []
    for index, item in enumerate(items):
        try:
            valid.append(validate(item, org_id=org_id, now=now))
        except ValidationError as exc:
            rejected.append({"index": index, "field": exc.field, "reason": exc.reason})
            reports.append({"source": source, "org_id": org_id, "received_at": format_ms(now),
                            "index": index, "field": exc.field, "reason": exc.reason,
                            "payload": json.dumps(item, default=str)[:MAX_REPORTED_PAYLOAD]})
    return valid, rejected, reports


def ingest_response(ids: list[str], rejected: list[dict[str, Any]]) -> web.Response:
    if not ids:
        raise ApiError(400, "validation_error", "no valid events in the request",
                       {"rejected": rejected})
    return web.json_response({"accepted": ids, "rejected": rejected}, status=202)


async def ingest(request: web.Request, scope: str, validate: Callable[..., dict[str, Any]],
                 publish: Callable[[str, list[dict[str, Any]]], Awaitable[int]], id_field: str) -> web.Response:
    """Authenticate, validate each item, report rejects, publish the valid ones."""
    org_id = await caller_org(request, scope)
    source = f"http:{request.method} {request.path}"
    items = await read_items(request, source, org_id)
    valid, rejected, reports = validate_all(items, validate, org_id, source)
    if reports:
        await request.app[PRODUCER].send_invalid(reports)
    if valid:
        await publish(org_id, valid)
    return ingest_response([e[id_field] for e in valid], rejected)


async def post_events(request: web.Request) -> web.Response:
    producer = request.app[PRODUCER]
    return await ingest(request, "traces:write", validate_trace_event,
                        lambda _org, events: producer.send_trace_events(events), "event_id")


async def post_audit_events(request: web.Request) -> web.Response:
    return await ingest(request, "audit:write", validate_audit_event,
                        request.app[PRODUCER].send_audit_events, "id")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/events", post_events)
    app.router.add_post("/v1/audit/events", post_audit_events)
