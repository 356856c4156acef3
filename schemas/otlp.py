"""OTLP/HTTP trace requests in and answers out, in protobuf or OTLP JSON.

An OpenTelemetry exporter posts an ``ExportTraceServiceRequest`` (protobuf, or OTLP's JSON
with hex ids) to ``/v1/traces``. ``decode`` parses either with the ``opentelemetry-proto``
classes, ``spans`` walks its spans with the metadata of their resource and scope (each span
becomes an event in ``schemas.otlp_spans``), and ``encode_response``/``encode_status`` write the
answers in the request's encoding.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from schemas.otlp_spans import any_value, as_text

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CONTENT_TYPES = (PROTOBUF, JSON)


class UndecodableRequest(ValueError):
    """The body is not an ``ExportTraceServiceRequest`` in the content type it was sent as."""


def media_type(content_type: str | None) -> str | None:
    """``application/x-protobuf`` or ``application/json`` from a Content-Type header (parameters
    such as ``charset`` ignored), or None for any other."""
    media = (content_type or "").partition(";")[0].strip().lower()
    return media if media in CONTENT_TYPES else None


def decode(raw: bytes, media: str) -> ExportTraceServiceRequest:
    """The request in ``raw`` (``media`` is one of ``CONTENT_TYPES``); UndecodableRequest otherwise."""
    request = ExportTraceServiceRequest()
    if media == PROTOBUF:
        try:
            request.ParseFromString(raw)
        except (DecodeError, RecursionError) as exc:
            raise UndecodableRequest(f"not an OTLP ExportTraceServiceRequest in protobuf: {exc}") from None
        return request
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise UndecodableRequest(f"not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise UndecodableRequest("expected a JSON object (an OTLP ExportTraceServiceRequest)")
    try:
        _hex_ids_to_base64(body)
        # receivers ignore fields they do not know (OTLP: forward compatibility)
        json_format.ParseDict(body, request, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, AttributeError, RecursionError) as exc:
        raise UndecodableRequest(f"not an OTLP ExportTraceServiceRequest in JSON: {exc}") from None
    return request


def _hex_ids_to_base64(body: dict[str, Any]) -> None:
    """OTLP JSON writes trace and span ids as hex where protobuf's JSON mapping reads base64: turn
    each into base64 in place. An id that is not hex keeps its bytes (as UTF-8), so the span is
    rejected for its length, by name, and the rest of the request still counts."""
    def fix(obj: Any, keys: tuple[str, ...]) -> None:
        if not isinstance(obj, dict):
            return
        for key in keys:
            value = obj.get(key)
            if isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raw = value.encode("utf-8", "replace") or b"?"
                obj[key] = base64.b64encode(raw).decode()

    for resource_spans in _list(body.get("resourceSpans")):
        for scope_spans in _list(resource_spans.get("scopeSpans") if isinstance(resource_spans, dict) else None):
            for span in _list(scope_spans.get("spans") if isinstance(scope_spans, dict) else None):
                fix(span, ("traceId", "spanId", "parentSpanId"))
                if isinstance(span, dict):
                    for link in _list(span.get("links")):
                        fix(link, ("traceId", "spanId"))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def encode_response(media: str, rejected: int = 0, message: str = "") -> bytes:
    """An ``ExportTraceServiceResponse``: ``partial_success`` when spans were rejected."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return _encode(response, media)


def encode_status(media: str, code: int, message: str) -> bytes:
    """A ``google.rpc.Status``: the body of every OTLP/HTTP error response (``code`` a gRPC code)."""
    return _encode(status_pb2.Status(code=code, message=message), media)


def _encode(message: Any, media: str) -> bytes:
    if media == JSON:
        return json.dumps(json_format.MessageToDict(message), separators=(",", ":")).encode()
    return message.SerializeToString()


def spans(request: ExportTraceServiceRequest) -> Iterator[tuple[dict[str, str], Span]]:
    """Every span of the request in order, with the metadata of its resource and scope."""
    for resource_spans in request.resource_spans:
        resource = _resource_metadata(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope, context = scope_spans.scope, dict(resource)
            if scope.name:
                context["otel.scope.name"] = scope.name
            if scope.version:
                context["otel.scope.version"] = scope.version
            for span in scope_spans.spans:
                yield context, span


def span_count(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def _resource_metadata(attributes: Any) -> dict[str, str]:
    """The resource's attributes as metadata text, ``service.name`` first."""
    values = {kv.key: as_text(any_value(kv.value)) for kv in attributes}
    if "service.name" in values:
        values = {"service.name": values.pop("service.name"), **values}
    return values


# --- one span -------------------------------------------------------------------------------
