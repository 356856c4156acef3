"""OTLP/HTTP trace ingest: ``POST /v1/traces``, where OpenTelemetry exporters send spans.

``OTEL_EXPORTER_OTLP_ENDPOINT=http://host:8080`` and ``OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer <key>``
point any OTLP/HTTP exporter here: it posts ``ExportTraceServiceRequest`` to ``{endpoint}/v1/traces``,
the path whose GET lists events (seed 000). Each span becomes a trace event (``schemas.otlp``) and
goes the way ``POST /v1/events`` sends events: validated, published, chained.

Answers follow the OTLP/HTTP specification, in the request's encoding (protobuf or JSON):
200 with ``ExportTraceServiceResponse`` (``partial_success`` counting the spans rejected, and
why), and every error a ``google.rpc.Status``: 400, 401, 403, 413 and 415 are not retried by
exporters; 503 (the broker did not acknowledge) carries ``Retry-After`` and is.
"""

from __future__ import annotations

from aiohttp import web

from api.context import PREPARATION, SETTINGS, caller_org
from api.errors import CLIENT_FAILURES, ApiError, client_error
from api.routes.ingest import publish, source
from schemas import otlp
from schemas.topics import TRACE_EVENTS

#: HTTP status → the gRPC status code its ``google.rpc.Status`` carries (OTLP/HTTP maps them so).
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 3, 429: 8, 503: 14}
_GRPC_INTERNAL = 13


async def post_traces(request: web.Request) -> web.Response:
    """``POST /v1/traces``: an OTLP export request of spans."""
    media = otlp.media_type(request.headers.get("Content-Type"))
    answer_in = media or otlp.JSON  # an unsupported type: the error in JSON, which a person can read
    try:
        return await _export(request, media)
    except CLIENT_FAILURES as exc:  # what every route answers, as a Status instead of the JSON error
        error = client_error(request, exc, request.app[SETTINGS].max_body_bytes)
        response = _status(answer_in, error.status, error.message)
        response.headers.update(error.headers)
        return response


async def _export(request: web.Request, media: str | None) -> web.Response:
    org_id = await caller_org(request, "traces:write")
    if media is None:
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type must be {otlp.PROTOBUF} or {otlp.JSON}, not "
                       f"{request.headers.get('Content-Type') or 'missing'}")
    raw = await request.read()
    settings = request.app[SETTINGS]
    prepared = await request.app[PREPARATION].prepare_otlp(raw, media, org_id, source(request),
                                                           settings.max_batch_events, settings.max_event_bytes)
    await publish(request.app, prepared, TRACE_EVENTS)
    body = otlp.encode_response(media, len(prepared.rejected), prepared.rejections())
    return web.Response(body=body, content_type=media)


def _status(media: str, status: int, message: str) -> web.Response:
    body = otlp.encode_status(media, _GRPC_CODES.get(status, _GRPC_INTERNAL), message)
    return web.Response(status=status, body=body, content_type=media)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/traces", post_traces)
