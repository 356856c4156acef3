"""POST /v1/events and POST /v1/audit/events: validate, publish, report each rejection."""

from __future__ import annotations

from aiohttp import web

from api.context import PREPARATION, PRODUCER, SETTINGS, caller_org
from api.errors import ApiError
from api.preparation import Prepared
from schemas.topics import AUDIT_EVENTS, TRACE_EVENTS

TOPICS = {"trace": TRACE_EVENTS, "audit": AUDIT_EVENTS}


async def ingest(request: web.Request, scope: str, kind: str) -> web.Response:
    """Authenticate; parse, validate and encode (off the event loop); report rejects; publish.
    202 only once the broker acknowledged every record; a broker that does not answer in
    ``send_timeout_seconds`` is a 503 with Retry-After (``api.errors``)."""
    org_id = await caller_org(request, scope)
    raw = await request.read()
    settings = request.app[SETTINGS]
    prepared = await request.app[PREPARATION].prepare(kind, raw, org_id, source(request), settings.max_batch_events,
                                                      settings.max_event_bytes)
    await publish(request.app, prepared, TOPICS[kind])
    return web.json_response({"accepted": prepared.accepted, "rejected": prepared.rejected}, status=202)


def source(request: web.Request) -> str:
    """Where a rejection report says the events came from."""
    return f"http:{request.method} {request.path}"


async def publish(app: web.Application, prepared: Prepared, topic: str) -> None:
    """Report ``prepared``'s rejections on invalid-events, refuse the request when it is refused as a whole
    (ApiError), and publish its records to ``topic``, acknowledged."""
    if prepared.reports:
        await app[PRODUCER].send_invalid(prepared.reports)
    if prepared.error is not None:
        raise ApiError(*prepared.error)
    await app[PRODUCER].send_records(topic, prepared.records)


async def post_events(request: web.Request) -> web.Response:
    return await ingest(request, "traces:write", "trace")


async def post_audit_events(request: web.Request) -> web.Response:
    return await ingest(request, "audit:write", "audit")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/events", post_events)
    app.router.add_post("/v1/audit/events", post_audit_events)
