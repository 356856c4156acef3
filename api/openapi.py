"""The API's OpenAPI 3.1 document, served at ``GET /v1/openapi.json`` (no key needed).

Built from what the routes validate with: the limits, enums and defaults are the route
modules' own constants, the event bodies and event documents come from the ``.avsc``
files, the scopes from ``api.auth``. tests/unit/test_openapi.py holds the document's
(method, path) pairs equal to the app's routes; tests/e2e/test_openapi_contract.py runs
schemathesis against a real service with it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web

from api.auth import SCOPES
from api.paging import MAX_OFFSET
from api.routes import admin, audit_export, gateway, governance, tenants, webhooks
from api.routes import gateway_export as trace_export
from api.routes import webhook_deliveries as deliveries
from schemas.lifecycle import FINAL_OUTCOMES, IN_PROGRESS, OUTCOME_STATUSES
from schemas.model import BOUNDED_FIELDS, ID_FIELDS, MAX_COST, MAX_ID_LEN, MAX_TOKENS, SERVER_DEFAULTS, SERVER_FIELDS
from schemas.registry import record_fields
from schemas.ssrf import MAX_URL_LENGTH
from schemas.timefmt import MAX_MS, MIN_MS
from schemas.webhooks import EVENT_TYPES, FILTER_KEYS
from sinks.repositories.webhook_deliveries import OUTCOMES
from tracehouse.settings import Settings

Schema = dict[str, Any]

_DEFAULTS = Settings()
_LONG = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
_TIME_TEXT = ("ISO 8601: `Z`, an offset, or naive (UTC), e.g. `2026-11-23T10:00:00.123Z`. A value that is not a "
              "timestamp, or a time outside the range the service can compare (events are stored between "
              "2000-01-01 and 2100-01-01), answers 400 naming the parameter.")
_STR_PARAM = {"type": "string", "minLength": 1, "maxLength": 256}
_ISO = {"type": "string", "format": "date-time", "description": "UTC, milliseconds: `YYYY-MM-DDTHH:MM:SS.mmmZ`"}
_HEX64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return schema | {"type": [*types, "null"]}


def _object(properties: dict[str, Schema], required: list[str] | None = None, *, closed: bool = True) -> Schema:
    out: Schema = {"type": "object", "properties": properties,
                   "required": list(properties) if required is None else required}
    if closed:
        out["additionalProperties"] = False
    return out


# --- event shapes, from the .avsc files -------------------------------------------------


def _avro_branch(field: dict[str, Any]) -> tuple[Any, bool]:
    t = field["type"]
    nullable = isinstance(t, list) and "null" in t
    return (next(x for x in t if x != "null") if nullable else t), nullable


def _event_input_field(field: dict[str, Any]) -> Schema:
    """What POST /v1/events (or /v1/audit/events) accepts for one field (schemas/model.py)."""
    t, nullable = _avro_branch(field)
    if field.get("tracehouse.json"):
        return {"description": "Any JSON value; stored as canonical JSON and returned as the same JSON."}
    if isinstance(t, dict) and t.get("logicalType") == "timestamp-millis":
        schema: Schema = {"anyOf": [
            {"type": "string", "format": "date-time", "pattern": "^20[0-9]{2}-",
             "description": "ISO 8601 (`Z`, an offset, or naive = UTC)"},
            {"type": "integer", "minimum": MIN_MS, "maximum": MAX_MS - 1, "description": "epoch milliseconds"}],
            "description": "between 2000-01-01 and 2100-01-01"}
        return {"anyOf": [*schema["anyOf"], {"type": "null"}]} if nullable else schema
    if isinstance(t, dict) and t["type"] == "map":
        schema = {"type": "object", "additionalProperties": {"type": "number" if t["values"] == "double" else "string"}}
    elif isinstance(t, dict) and t["type"] == "array":
        schema = {"type": "array", "items": {"type": "string"}}
    elif t == "string" and field["name"] in ID_FIELDS:
        schema = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN}
    elif field["name"] == "cost":
        schema = {"type": "number", "minimum": -MAX_COST, "maximum": MAX_COST}
    elif field["name"] in BOUNDED_FIELDS:
        schema = {"type": "integer", "minimum": 0, "maximum": MAX_TOKENS}
    else:
        schema = {"string": {"type": "string"}, "long": dict(_LONG), "double": {"type": "number"}}[t]
    if field.get("doc"):
        schema["description"] = field["doc"]
    return _nullable(schema) if nullable else schema


def _event_input(record: str) -> Schema:
    properties, required = {}, []
    for field in record_fields(record):
        name = field["name"]
        if name in SERVER_FIELDS:
            continue
        properties[name] = _event_input_field(field)
        if "default" not in field and name not in SERVER_DEFAULTS:
            required.append(name)
    schema = _object(properties, required)
    schema["description"] = ("Unknown fields, `org_id` (it comes from the key), text that is not valid Unicode and "
                             "numbers no double holds are rejected naming the field. "
                             f"{', '.join(sorted(n for n in SERVER_DEFAULTS if n in properties))} default to a "
                             "new UUID / the receive time.")
    return schema


def _event_document() -> Schema:
    """One stored event as the read API returns it (sinks/migrations/0011_event_json.sql)."""
    properties = {}
    for field in record_fields("TraceEvent"):
        t, nullable = _avro_branch(field)
        if field.get("tracehouse.json"):
            schema: Schema = {"description": "the JSON value the producer sent"}
            properties[field["name"]] = schema
            continue
        if isinstance(t, dict) and t.get("logicalType") == "timestamp-millis":
            schema = dict(_ISO)
        elif isinstance(t, dict) and t["type"] == "map":
            schema = {"type": "object",
                      "additionalProperties": {"type": "number" if t["values"] == "double" else "string"}}
        elif isinstance(t, dict) and t["type"] == "array":
            schema = {"type": "array", "items": {"type": "string"}}
        else:
            schema = {"string": {"type": "string"}, "long": {"type": "integer"}, "double": {"type": "number"}}[t]
        properties[field["name"]] = _nullable(schema) if nullable else schema
    return _object(properties)


# --- response shapes --------------------------------------------------------------------


def _components() -> dict[str, Schema]:
    trace_fields = {name: {"type": ["string", "null"]} for name in (
        "agent_id", "agent_name", "authority_model", "requested_operation", "target_integration", "resource_scope")}
    outcome = {"type": "string", "enum": [IN_PROGRESS, *sorted(FINAL_OUTCOMES)]}
    governance_trace = {"id": {"type": "string"}, **trace_fields, "parent_trace_id": {"type": ["string", "null"]},
                        "final_outcome": outcome, "started_at": _ISO, "completed_at": _nullable(dict(_ISO)),
                        "duration_ms": {"type": ["integer", "null"]}}
    verdict = {"valid": {"type": "boolean"}, "event_count": {"type": "integer", "minimum": 0},
               "first_invalid_event": {"type": ["string", "null"], "description": "only when invalid"},
               "reason": {"type": "string", "description": "only when invalid"}, "verified_at": _ISO}
    checkpoint = {"version": {"type": "integer"}, "number": {"type": "integer", "minimum": 1},
                  "period_start": {"type": "integer", "description": "epoch ms"},
                  "period_end": {"type": "integer", "description": "epoch ms"},
                  "tree_size": {"type": "integer", "minimum": 0}, "root": _HEX64,
                  "previous": _HEX64 | {"description": "sha256 of the previous statement (64 zeros for the first)"},
                  "signature": {"type": "string", "description": "ed25519, base64"},
                  "public_key": {"type": "string", "description": "ed25519 raw public key, base64"},
                  "digest": _HEX64, "period_start_iso": _ISO, "period_end_iso": _ISO}
    tenant_item = {
        "traceId": {"type": "string"}, "promptName": {"type": ["string", "null"]},
        "status": {"type": "string", "enum": ["completed", "error"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "inputTokens": {"type": "integer"}, "outputTokens": {"type": "integer"}, "totalTokens": {"type": "integer"},
        "cost": {"type": "number"}, "duration": {"type": "integer", "description": "milliseconds"},
        "modelConfig": {"type": ["object", "null"]}, "createdAt": _ISO}
    api_key = {"key_id": {"type": "string"}, "org_id": {"type": "string"}, "name": {"type": "string"},
               "scopes": {"type": "array", "items": {"type": "string", "enum": list(SCOPES)}},
               "created_at": _ISO, "revoked": {"type": "boolean"}}
    webhook = {
        "id": {"type": "string", "pattern": "^wh_[a-z2-7]{26}$"}, "url": {"type": "string"},
        "event_types": {"type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)}},
        "description": {"type": "string"}, "filter": _ref("WebhookFilter"),
        "status": {"type": "string", "enum": [*webhooks.SETTABLE_STATUSES]},
        "disabled_reason": {"type": "string", "description": "empty unless disabled"},
        "created_at": _ISO, "updated_at": _ISO}
    health = {
        "last_success_at": _nullable(dict(_ISO)), "last_failure_at": _nullable(dict(_ISO)),
        "consecutive_failures": {"type": "integer", "minimum": 0},
        "breaker": {"type": "string", "enum": ["closed", "open"],
                    "description": "open when the last TRACEHOUSE_WEBHOOK_BREAKER_FAILURES attempts or more failed and "
                                   "the last of them is less than TRACEHOUSE_WEBHOOK_BREAKER_COOLDOWN_SECONDS old: the "
                                   "dispatcher's rule applied to the recorded attempts"},
        "dead_letters": _ref("WebhookDeadLetters")}
    dead_letter = {"delivery_id": {"type": "string"}, "event_id": {"type": "string"}, "type": {"type": "string"},
                   "created_at": _ISO, "last_error": {"type": "string"},
                   "attempts": {"type": "integer", "minimum": 0}}
    attempt = {"delivery_id": {"type": "string", "description": "the webhook-id header"},
               "event_id": {"type": "string"}, "type": {"type": "string"},
               "attempt": {"type": "integer", "minimum": 0, "description": "1 for the first; a replay counts "
                                                                             "from 1 again"},
               "at": _ISO, "status_code": {"type": ["integer", "null"], "description": "null when no answer came"},
               "error": {"type": "string"}, "latency_ms": {"type": "integer", "minimum": 0},
               "outcome": {"type": "string", "enum": list(OUTCOMES)}}
    secret = {"secret": {"type": "string", "pattern": "^whsec_",
                         "description": "Standard Webhooks signing secret; shown only here"}}
    return {
        "WebhookFilter": _object({k: {"type": "string", "minLength": 1, "maxLength": 256} for k in FILTER_KEYS}, []),
        "Webhook": _object(webhook | health),
        "CreatedWebhook": _object(webhook | secret),
        "UpdatedWebhook": _object(webhook),
        "WebhookList": _object({"webhooks": {"type": "array", "items": _ref("Webhook")},
                                "nextCursor": {"type": ["string", "null"]}}),
        "WebhookDeadLetters": _object({
            "count": {"type": "integer", "minimum": 0, "description": "dead letters not delivered since"},
            "recent": {"type": "array", "maxItems": webhooks.RECENT_DEAD_LETTERS, "items": _object(dead_letter),
                       "description": "the newest of them"}}),
        "WebhookAttemptList": _object({"attempts": {"type": "array", "items": _object(attempt)},
                                       "nextCursor": {"type": ["string", "null"]}}),
        "ScheduledTest": _object({"delivery_id": {"type": "string"}, "subscription_id": {"type": "string"},
                                  "secret": secret["secret"] | {
                                      "description": "only when the route created the subscription"}},
                                 ["delivery_id", "subscription_id"]),
        "Replayed": _object({"replayed": {"type": "integer", "minimum": 0},
                             "delivery_ids": {"type": "array", "items": {"type": "string"}},
                             "not_found": {"type": "array", "items": {"type": "string"},
                                           "description": "requested ids that are not dead letters of the "
                                                          "subscription"}}),
        "Error": _object({"error": _object({
            "code": {"type": "string", "description": "machine-readable: validation_error, invalid_json, "
                                                      "unauthorized, forbidden, not_found, conflict, "
                                                      "payload_too_large, batch_too_large, unavailable, timeout..."},
            "message": {"type": "string"},
            "details": {"type": "object", "description": "a 400 on a parameter or field holds "
                                                         "`{\"field\", \"reason\"}`"}}, ["code", "message"])}),
        "TraceEventInput": _event_input("TraceEvent"),
        "AuditEventInput": _event_input("AuditEvent"),
        "Event": _event_document(),
        "OtlpExportResponse": {
            "type": "object", "description": "OTLP's ExportTraceServiceResponse in JSON: `{}` when every span was "
                                             "accepted",
            "properties": {"partialSuccess": _object({
                "rejectedSpans": {"type": "string", "pattern": "^[0-9]+$", "description": "an int64, as OTLP JSON "
                                                                                          "writes it"},
                "errorMessage": {"type": "string", "description": "the first rejected spans: `span <index>: <event "
                                                                  "field>: <reason>`"}}, [])}},
        "OtlpStatus": _object({"code": {"type": "integer", "description": "the gRPC status code"},
                               "message": {"type": "string"}, "details": {"type": "array"}}, ["code", "message"]),
        "IngestResult": _object({
            "accepted": {"type": "array", "items": {"type": "string"}, "description": "ids of the stored events"},
            "rejected": {"type": "array", "items": _object({"index": {"type": "integer", "minimum": 0},
                                                            "field": {"type": "string"},
                                                            "reason": {"type": "string"}})}}),
        "EventPage": _object({"events": {"type": "array", "items": _ref("Event")},
                              "nextCursor": {"type": ["string", "null"]}}),
        "TraceEvents": _object({"events": {"type": "array", "items": _ref("Event"), "minItems": 1},
                                "trace_id": {"type": "string"}, "event_count": {"type": "integer", "minimum": 1}}),
        "Metrics": _object({
            "since": _ISO, "until": _nullable(dict(_ISO)),
            "buckets": {"type": "array", "items": _object({
                "hour": _ISO, "type": {"type": "string"}, "outcome": {"type": ["string", "null"]},
                "count": {"type": "integer", "minimum": 0}, "errors": {"type": "integer", "minimum": 0},
                "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"}, "cost": {"type": "number"}})},
            "total": {"type": "integer", "minimum": 0}}),
        "GovernanceTraceSummary": _object({
            "id": {"type": "string"}, **trace_fields, "final_outcome": outcome, "started_at": _ISO,
            "completed_at": _nullable(dict(_ISO)), "duration_ms": {"type": ["integer", "null"]},
            "event_count": {"type": "integer", "minimum": 1}, "has_approval": {"type": "boolean"}}),
        "GovernanceTraceList": _object({
            "data": {"type": "array", "items": _ref("GovernanceTraceSummary")},
            "pagination": _object({"total": {"type": "integer", "minimum": 0}, "limit": {"type": "integer"},
                                   "offset": {"type": "integer"}, "next_cursor": {"type": ["string", "null"]}})}),
        "GovernanceTrace": _object(governance_trace),
        "GovernanceEvent": _object({
            "id": {"type": "string"}, "event_type": {"type": "string"}, "actor_type": {"type": ["string", "null"]},
            "actor_name": {"type": ["string", "null"]}, "description": {"type": ["string", "null"]},
            "status": {"type": ["string", "null"]}, "timestamp": _ISO,
            "policy_version": {"type": ["integer", "null"]}, "approval_request_id": {"type": ["string", "null"]},
            "metadata": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
            "integrity_hash": {"type": ["string", "null"], "pattern": "^sha256:[0-9a-f]{64}$"}}),
        "ApprovalRequest": _object({
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "approved", "denied", "expired"]},
            "flag_reason": {"type": ["string", "null"]}, "approver_name": {"type": ["string", "null"]},
            "decision_note": {"type": ["string", "null"]}, "decided_at": _nullable(dict(_ISO))}),
        "GovernanceTraceDetail": _object(governance_trace | {
            "events": {"type": "array", "items": _ref("GovernanceEvent")},
            "approval_requests": {"type": "array", "items": _ref("ApprovalRequest")}}),
        "TraceVerification": _object({
            "trace_id": {"type": "string"}, **verdict,
            "proof": _nullable(_ref("InclusionProof")) | {"description": "only with proof=true; null until a "
                                                                          "checkpoint covers the trace"}},
            ["trace_id", "valid", "event_count", "verified_at"]),
        "Checkpoint": _object(checkpoint),
        "InclusionProof": _object({
            "checkpoint": _ref("Checkpoint"),
            "leaf": _object({"kind": {"type": "string", "enum": ["trace", "audit"]}, "org_id": {"type": "string"},
                             "chain": {"type": "string"}, "seq": {"type": "integer", "minimum": 1}, "hash": _HEX64}),
            "leaf_index": {"type": "integer", "minimum": 0}, "tree_size": {"type": "integer", "minimum": 1},
            "path": {"type": "array", "items": _HEX64, "description": "audit path, bottom-up"}}),
        "TraceExport": _object({
            "trace": _ref("GovernanceTrace"), "events": {"type": "array", "items": _ref("GovernanceEvent")},
            "approval_requests": {"type": "array", "items": _ref("ApprovalRequest")}, "exported_at": _ISO,
            "integrity": _object({
                "chain": {"type": "array", "description": "every link as stored: the hashed Avro datum (times in "
                                                          "epoch ms; `app_id` only when set) with seq, prev_hash and "
                                                          "hash",
                          "items": {"type": "object", "required": ["seq", "prev_hash", "hash"],
                                    "properties": {"seq": {"type": "integer"}, "prev_hash": _HEX64,
                                                   "hash": _HEX64}}},
                "proof": _nullable(_ref("InclusionProof"))})}),
        "TenantTraceSummary": _object(tenant_item),
        "TenantTraceList": _object({
            "data": {"type": "array", "items": _ref("TenantTraceSummary")},
            "page": {"type": "integer", "minimum": 1}, "per_page": {"type": "integer", "minimum": 1},
            "has_more": {"type": "boolean"}, "next_cursor": {"type": ["string", "null"]}}),
        "TenantTraceDetail": _object({
            "traceId": tenant_item["traceId"], "promptName": tenant_item["promptName"],
            "messages": {"type": "array"}, "output": {"description": "the last event's output (any JSON)"},
            "inputTokens": {"type": "integer"}, "outputTokens": {"type": "integer"},
            "totalTokens": {"type": "integer"}, "cost": {"type": "number"},
            "costCurrency": {"type": ["string", "null"]}, "duration": tenant_item["duration"],
            "modelConfig": tenant_item["modelConfig"], "tools": {"description": "any JSON"},
            "toolChoice": {"description": "any JSON"}, "status": tenant_item["status"], "tags": tenant_item["tags"],
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}}, "createdAt": _ISO,
            "timestamp": {"type": "integer", "description": "createdAt in epoch ms"}}),
        "CheckpointList": _object({"public_key": {"type": ["string", "null"]},
                                   "checkpoints": {"type": "array", "items": _ref("Checkpoint")},
                                   "nextCursor": {"type": ["string", "null"]}}),
        "AuditExportEntry": _object({
            "id": {"type": "string"}, "orgId": {"type": "string"}, "actor": {"type": "string"},
            "action": {"type": "string"}, "target": {"type": "string"},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}}, "occurredAt": _ISO},
            list(audit_export.COLUMNS)),
        "AuditVerification": _object({
            "org_id": {"type": "string"}, "from": _ISO, "to": _ISO, "first_seq": {"type": ["integer", "null"]},
            "last_seq": {"type": ["integer", "null"]}, **verdict},
            ["org_id", "from", "to", "first_seq", "last_seq", "valid", "event_count", "verified_at"]),
        "ApiKey": _object(api_key),
        "CreatedApiKey": _object(api_key | {"key": {"type": "string", "description": "the secret, shown once"}}),
        "ApiKeyList": _object({"keys": {"type": "array", "items": _ref("ApiKey")}}),
        "Status": _object({"status": {"type": "string"}}),
        "Readiness": _object({"status": {"type": "string"}}, closed=False) | {
            "description": "`status` says whether the service is ready; further members may report the broker "
                           "and ClickHouse separately"},
    }


# --- operations -------------------------------------------------------------------------

_ERRORS = {
    400: "Invalid parameter, field or body: `details.field` names it",
    401: "Missing, unknown or revoked bearer key",
    403: "The key lacks the scope (the operator key reads no data)",
    404: "Not found, or another org's",
    409: "Conflict",
    413: "Request body above TRACEHOUSE_MAX_BODY_BYTES "
         f"(default {_DEFAULTS.max_body_bytes}; `details.max_bytes`)",
    503: "Unavailable",
    504: "Timed out",
}


def _error(status: int, description: str | None = None, headers: dict[str, Any] | None = None) -> Schema:
    out: Schema = {"description": description or _ERRORS[status],
                   "content": {"application/json": {"schema": _ref("Error")}}}
    if headers:
        out["headers"] = headers
    return out


def _long_request_line(error: Schema) -> Schema:
    """``error`` plus the HTTP server's own plain-text 400 for a request line above 8190 bytes (before any
    route runs), which an operation whose parameters may be that long together can get."""
    error["description"] += "; a request line above 8190 bytes is refused by the HTTP server in plain text"
    error["content"]["text/plain"] = {"schema": {"type": "string"}}
    return error


def _ok(schema: Schema, description: str = "OK", headers: dict[str, Any] | None = None) -> Schema:
    out: Schema = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _query(name: str, schema: Schema, description: str = "", *, required: bool = False) -> Schema:
    out: Schema = {"name": name, "in": "query", "required": required, "schema": schema}
    if description:
        out["description"] = description
    return out


def _path(name: str, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}


def _time(name: str, description: str) -> Schema:
    return _query(name, {"type": "string", "format": "date-time"}, f"{description}. {_TIME_TEXT}")


def _int(name: str, default: int, lo: int, hi: int, description: str = "") -> Schema:
    return _query(name, {"type": "integer", "minimum": lo, "maximum": hi, "default": default}, description)


def _cursor(source: str) -> Schema:
    return _query("cursor", {"type": "string", "minLength": 1},
                  f"`{source}` of the previous page (opaque); anything else answers 400 naming `cursor`")


def _operation(summary: str, scope: str | None, responses: dict[int, Schema], parameters: list[Schema] = (),
               body: Schema | None = None, tag: str = "", description: str = "") -> Schema:
    """One operation; ``scope`` None means no key, ``"*"`` any valid key, ``"operator"`` the operator key only."""
    op: Schema = {"summary": summary, "operationId": "", "tags": [tag] if tag else []}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = list(parameters)
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if scope is None:
        op["security"] = []
    elif scope == "operator":
        op["security"] = [{"bearerAuth": ["operator"]}]
        responses = {401: _error(401), 403: _error(403, "Not the operator key (TRACEHOUSE_ADMIN_KEY)")} | responses
    else:
        op["security"] = [{"bearerAuth": [] if scope == "*" else [scope]}]
        responses = {401: _error(401)} | responses
        if scope != "*":
            responses = {403: _error(403, f"The key lacks the `{scope}` scope" + (
                " (`admin` implies every scope of its org; the operator key reads no data)"
                if scope != "admin" else ""))} | responses
    op["responses"] = {str(status): responses[status] for status in sorted(responses)}
    return op


def _otlp_export() -> Schema:
    """``POST /v1/traces``: OTLP/HTTP, bodies and answers in protobuf or OTLP JSON, errors ``google.rpc.Status``."""
    binary = {"schema": {"type": "string", "format": "binary"}}

    def otlp(description: str, schema: Schema, headers: dict[str, Any] | None = None) -> Schema:
        out: Schema = {"description": description,
                       "content": {"application/x-protobuf": binary, "application/json": {"schema": schema}}}
        if headers:
            out["headers"] = headers
        return out

    def error(description: str, headers: dict[str, Any] | None = None) -> Schema:
        return otlp(description, _ref("OtlpStatus"), headers)

    op = _operation(
        "Ingest OpenTelemetry spans (OTLP/HTTP): point OTEL_EXPORTER_OTLP_ENDPOINT here", "traces:write", {
            200: otlp("Accepted: `partial_success` counts the spans rejected, and says why",
                      _ref("OtlpExportResponse")),
            400: error("Not an ExportTraceServiceRequest in its Content-Type, a body that does not decompress "
                       "as its Content-Encoding says, or no valid span"),
            401: error("Missing or invalid key"),
            403: error("The key lacks the `traces:write` scope"),
            413: error(f"Body above TRACEHOUSE_MAX_BODY_BYTES decompressed (default {_DEFAULTS.max_body_bytes}) "
                       f"or more than TRACEHOUSE_MAX_BATCH_EVENTS spans (default {_DEFAULTS.max_batch_events})"),
            415: error("Content-Type neither application/x-protobuf nor application/json"),
            503: error("The broker is unavailable: nothing was accepted, retry after `Retry-After` seconds",
                       {"Retry-After": {"description": "seconds to wait before retrying",
                                        "schema": {"type": "integer", "minimum": 0}}}),
        }, tag="ingest",
        description="An OTLP ExportTraceServiceRequest, protobuf or OTLP JSON (hex ids), gzip- or deflate-encoded "
                    "or not; each span becomes a trace event (README \"OpenTelemetry in\") and is validated, "
                    "stored and chained like POST /v1/events'. Answers are in the request's encoding.")
    op["requestBody"] = {"required": True, "content": {"application/x-protobuf": binary,
                                                       "application/json": {"schema": {"type": "object"}}}}
    return op


def _replay_body_optional(op: Schema) -> Schema:
    """An operation whose body may be left out."""
    op["requestBody"]["required"] = False
    return op


def _paths() -> dict[str, dict[str, Schema]]:
    trace_id = _path("trace_id", "the trace's id")
    retry_after = {"Retry-After": {"description": "seconds to wait before retrying",
                                   "schema": {"type": "integer", "minimum": 0}}}
    ingest_responses = {
        202: _ok(_ref("IngestResult"), "Accepted: the valid events are published; invalid ones are reported by "
                                       "index in `rejected` (and on the invalid-events topic)"),
        400: _error(400, "Malformed JSON (`invalid_json`), not an array, no events, or no valid event "
                         "(`details.rejected`)"),
        413: _error(413, f"Body above TRACEHOUSE_MAX_BODY_BYTES (default {_DEFAULTS.max_body_bytes}, "
                         f"`details.max_bytes`) or more than TRACEHOUSE_MAX_BATCH_EVENTS (default "
                         f"{_DEFAULTS.max_batch_events}, `details.max_events`) events"),
        503: _error(503, "The broker is unavailable: nothing was accepted, retry after `Retry-After` seconds",
                    retry_after),
    }

    def ingest_body(item: str) -> Schema:
        array = {"type": "array", "minItems": 1, "items": _ref(item)}
        return {"anyOf": [array, _object({"events": array})],
                "description": f"A JSON array of events or `{{\"events\": [...]}}`; at most "
                               f"{_DEFAULTS.max_batch_events} events (TRACEHOUSE_MAX_BATCH_EVENTS, 413 above)"}

    gateway_params = [
        _int("limit", gateway.DEFAULT_LIMIT, 1, gateway.MAX_LIMIT),
        _cursor("nextCursor"),
        _query("class", _STR_PARAM, "event class, exact"),
        _query("type", _STR_PARAM, "event type, exact (GENERATION, SPAN, EVENT, a dotted type such as "
                                   "tool.executed, a governance event type); `all` means any"),
        _time("since", "events occurring at or after this time"),
        _time("until", "events occurring at or before this time"),
        _time("startDate", "alias of `since` (giving both is a 400); with any of seed 001's filters and no start, "
                           "the window is the last 30 days"),
        _time("endDate", "alias of `until` (giving both is a 400)"),
        _query("model", _STR_PARAM, "exact model name"),
        _query("status", {"type": "string", "enum": list(gateway.STATUSES)},
               "STATUS_CODE_UNSET also matches events without a status"),
        _query("name", _STR_PARAM, "case-insensitive substring of the event name"),
        _query("minScore", {"type": "number"}, "any score at least this (finite)"),
        _query("maxScore", {"type": "number"}, "any score at most this (finite)"),
        _query("userId", _STR_PARAM, "exact user id"),
        _query("tag", _STR_PARAM, "events carrying this tag"),
        _query("metadata_key", _STR_PARAM, "with metadata_value (one without the other is a 400)"),
        _query("metadata_value", {"type": "string", "minLength": 1, "maxLength": 4096},
               "with metadata_key: events whose metadata holds this value under that key"),
    ]
    export_params = [
        _query("format", {"type": "string", "enum": list(trace_export.FORMATS), "default": "jsonl"},
               "jsonl (default), csv, openai (GENERATION events as chat fine-tuning lines) or json"),
        _int("limit", trace_export.DEFAULT_LIMIT, 1, trace_export.MAX_LIMIT, "events in the page"),
        _query("lightweight", {"type": "boolean", "default": False},
               "leave out input, output and messages (not with format=openai)"),
        _query("cursor", {"type": "string", "minLength": 1},
               "`next_cursor` of the previous page (opaque), or an ISO 8601 time: the events after it; anything "
               "else answers 400 naming `cursor`"),
        _query("type", _STR_PARAM, "GENERATION, SPAN, EVENT or any event type, exact; `all` means any (openai: "
                                   "GENERATION or all)"),
        _time("startDate", "events occurring at or after this time (default: 30 days before `endDate`)"),
        _time("endDate", "events occurring at or before this time (default: now)"),
        *(p for p in gateway_params if p["name"] not in ("limit", "cursor", "class", "type", "since", "until",
                                                            "startDate", "endDate")),
        {"name": trace_export.APP_ID_HEADER, "in": "header", "required": False,
         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LEN},
         "description": "Your application ID (e.g. `app_abc123`): only the org's events whose `app_id` is exactly "
                        "this. Without the header, every event of the org, those of no application (`app_id` null) "
                        "included. Empty, longer than 256 characters, or given twice: 400 naming it"},
    ]
    governance_params = [
        _query("agent_id", _STR_PARAM, "exact agent id"),
        _query("outcome", {"type": "string", "enum": list(governance.OUTCOME_FILTERS)},
               "final outcome; `pending` is `in_progress`"),
        _time("from", "traces started at or after this time"),
        _time("to", "traces started at or before this time (not before `from`)"),
        _int("limit", governance.DEFAULT_LIMIT, 1, governance.MAX_LIMIT),
        _int("offset", 0, 0, MAX_OFFSET, "traces to skip; deeper pages are served by `cursor` only; not with "
                                         "`cursor`"),
        _cursor("pagination.next_cursor"),
    ]
    export_range = [
        {**_time("from", "the range's start (required)"), "required": True},
        {**_time("to", "the range's end (required, not before `from`)"), "required": True},
    ]
    export_headers = {"X-Total-Count": {"description": "rows counted before the export started",
                                        "schema": {"type": "integer"}},
                      "Content-Disposition": {"description": "CSV: attachment; filename=\"audit-{from}-to-{to}.csv\"",
                                              "schema": {"type": "string"}}}
    tenant_params = [
        _int("page", 1, 1, 2**31, f"page number; pages more than {MAX_OFFSET} traces deep answer 400 (follow "
                                  "`next_cursor` instead); not with `cursor`"),
        _int("per_page", tenants.DEFAULT_PER_PAGE, 1, tenants.MAX_PER_PAGE),
        _query("search", _STR_PARAM, "case-insensitive substring of the prompt name (or first event name) or model"),
        _cursor("next_cursor"),
    ]
    tenant_id = _path("tenant_id", "the key's org; any other tenant id answers 404")
    outcome_body = _object({
        "status": {"type": "string", "enum": list(OUTCOME_STATUSES)},
        "metadata": {"type": ["object", "null"], "maxProperties": governance.MAX_OUTCOME_METADATA,
                     "description": "non-string values are stored as their canonical JSON text; NaN, numbers no "
                                    "double holds, lone surrogates and JSON nested too deeply answer 400 naming "
                                    "`metadata`"}}, ["status"])
    key_body = _object({
        "org_id": {"type": "string", "pattern": admin.ORG_ID.pattern},
        "scopes": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(SCOPES)}},
        "name": {"type": "string", "maxLength": 200, "default": "", "description": "valid Unicode"}},
        ["org_id", "scopes"])
    webhook_fields = {
        "url": {"type": "string", "minLength": 1, "maxLength": MAX_URL_LENGTH, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
                "description": "http(s); must not resolve to a private, loopback or link-local address unless "
                               "TRACEHOUSE_WEBHOOK_ALLOW_PRIVATE_NETWORKS"},
        "event_types": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(EVENT_TYPES)}},
        "description": {"type": "string", "maxLength": webhooks.MAX_DESCRIPTION, "default": ""},
        "filter": {"anyOf": [{"type": "object", "additionalProperties": False, "properties": {
            k: {"type": ["string", "null"], "minLength": 1, "maxLength": 256} for k in FILTER_KEYS}},
            {"type": "null"}], "description": "deliver only events whose given keys equal these values"}}
    webhook_body = _object(webhook_fields, ["url", "event_types"])
    webhook_patch = _object(webhook_fields | {"status": {"type": "string", "enum": list(webhooks.SETTABLE_STATUSES)}},
                            []) | {"minProperties": 1}
    webhook_id = _path("webhook_id", "the subscription's id (`wh_…`); another org's answers 404")
    webhook_errors = {400: _error(400), 503: _error(503, "The broker did not acknowledge the change (retry after "
                                                         "`Retry-After` seconds), or this process is still reading "
                                                         "the subscriptions")}
    keys_responses = {400: _error(400), 403: _error(403, "Managing keys needs the operator key or an org key with "
                                                         "`admin` (its own org only)")}

    return {
        "/healthz": {"get": _operation("Liveness", None, {200: _ok(_ref("Status"))}, tag="health")},
        "/readyz": {"get": _operation("Readiness: ClickHouse and the broker reachable", None, {
            200: _ok(_ref("Readiness"), "Ready"),
            503: _ok(_ref("Readiness"), "Not ready: the body says which dependency is unavailable")}, tag="health")},
        "/v1/openapi.json": {"get": _operation("This document", None, {
            200: {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}},
            tag="health")},
        "/v1/events": {"post": _operation(
            "Ingest trace events", "traces:write", ingest_responses, body=ingest_body("TraceEventInput"),
            tag="ingest", description="Events of one trace travel as one Kafka record; a request where some items "
                                      "are invalid is accepted for the valid ones (202).")},
        "/v1/audit/events": {"post": _operation(
            "Ingest audit events", "audit:write", ingest_responses, body=ingest_body("AuditEventInput"),
            tag="ingest")},
        "/v1/traces": {"post": _otlp_export(), "get": _operation(
            "Events, oldest first (seed 000, with seed 001's filters)", "traces:read",
            {200: _ok(_ref("EventPage")), 400: _error(400)}, gateway_params, tag="gateway")},
        "/v1/traces/export": {"get": _operation(
            "Export a page of events as JSONL, CSV, OpenAI fine-tuning JSONL, JSON or Parquet, streamed (seed 001)",
            "traces:read", {
                200: {"description": "The page, streamed. jsonl: one event document per line, then "
                                     '`{"_export_meta": {"next_cursor", "has_more", "count", "limit"}}`; csv: a '
                                     "header row, then one row per event; openai: `{\"messages\": [...], "
                                     "\"tools\"?: [...]}` per generation; json: an array of event documents; "
                                     "parquet: the stored columns and chain links, a row group per 1,000 events",
                      "headers": {"X-Next-Cursor": {"description": "`cursor` of the next page; absent on the last",
                                                    "schema": {"type": "string"}},
                                  "Content-Disposition": {"description": 'attachment; filename="traces-export.…"',
                                                          "schema": {"type": "string"}}},
                      "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                                  "text/csv": {"schema": {"type": "string"}},
                                  "application/json": {"schema": {"type": "array",
                                                                  "items": _ref("Event")}},
                                  "application/vnd.apache.parquet": {"schema": {"type": "string",
                                                                                "format": "binary"}}}},
                400: _long_request_line(_error(400, "A parameter or the "
                                                    f"`{trace_export.APP_ID_HEADER}` header is invalid (named "
                                                    "in `details.field`)"))},
            export_params, tag="gateway",
            description="The event list's filters; without `startDate` the window is the last 30 days, without "
                        "`endDate` it ends now. `lightweight` leaves out `input`, `output` and `messages` (the "
                        "seed's Input, Output, OutputObject and ToolCalls). Pages follow `next_cursor`; a walk is a "
                        "snapshot: it holds the events stored when its first page was read, each once.")},
        "/v1/traces/{trace_id}": {"get": _operation(
            "One trace's events in time order", "traces:read",
            {200: _ok(_ref("TraceEvents")), 400: _error(400), 404: _error(404)},
            [trace_id], tag="gateway")},
        "/v1/metrics": {"get": _operation(
            "Hourly rollups by hour, type and outcome (seed 000)", "traces:read",
            {200: _ok(_ref("Metrics")), 400: _error(400)},
            [_time("since", "the hour holding this time is the first (default: 24 h ago); comes back rounded down"),
             _time("until", "the hour holding this time is the last (default: open); not before `since`")],
            tag="gateway")},
        "/api/v1/traces": {"get": _operation(
            "Governance traces, newest first (seed 003)", "traces:read",
            {200: _ok(_ref("GovernanceTraceList")), 400: _error(400)}, governance_params, tag="governance")},
        "/api/v1/traces/{trace_id}": {"get": _operation(
            "A governance trace with its events and approval requests", "traces:read",
            {200: _ok(_ref("GovernanceTraceDetail")), 400: _error(400), 404: _error(404)},
            [trace_id], tag="governance")},
        "/api/v1/traces/{trace_id}/verify": {"get": _operation(
            "Recompute the trace's hash chain and check it against its newest signed checkpoint", "traces:read",
            {200: _ok(_ref("TraceVerification")), 400: _error(400), 404: _error(404)},
            [trace_id, _query("proof", {"type": "boolean", "default": False}, "add the inclusion proof")],
            tag="governance")},
        "/api/v1/traces/{trace_id}/outcome": {"post": _operation(
            "Record the trace's outcome (finalizes it)", "traces:write", {
                204: {"description": "Recorded: operation_executed (or operation_failed) and trace_closed chained"},
                400: _error(400), 404: _error(404), 409: _error(409, "Already finalized (also the loser of a race)"),
                413: _error(413),
                503: _error(503, "Outcomes need the chain agents (TRACEHOUSE_CHAIN_EVENTS=true)"),
                504: _error(504, "No verdict within TRACEHOUSE_COMMAND_TIMEOUT_SECONDS; the outcome may still "
                                 "apply (a retry then answers 409)")},
            [trace_id], body=outcome_body, tag="governance")},
        "/api/v1/traces/export": {"get": _operation(
            "Traces that started in a date range as CSV, newest first (seed 003's 17 columns)", "reviewer", {
                200: {"description": "CSV attachment, streamed", "headers": export_headers,
                      "content": {"text/csv": {"schema": {"type": "string"}}}},
                400: _error(400), 413: _error(413, "More than TRACEHOUSE_EXPORT_MAX_ROWS traces: narrow the range")},
            [*export_range, _query("format", {"type": "string", "enum": ["csv"]}, "must be csv", required=True),
             _query("agent_id", {"type": "string", "minLength": 1, "maxLength": 256}, "the trace's first agent_id")],
            tag="governance")},
        "/api/v1/audit/export": {"get": _operation(
            "Every event that occurred in a date range, for SIEMs (seed 003's 11 fields), oldest first", "reviewer", {
                200: {"description": "A JSON array, or a CSV attachment, streamed", "headers": export_headers,
                      "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                                  "text/csv": {"schema": {"type": "string"}},
                                  "application/x-ndjson": {"schema": {"type": "string"}},
                                  "text/plain": {"schema": {"type": "string"}}}},
                400: _error(400), 413: _error(413, "More than TRACEHOUSE_EXPORT_MAX_ROWS events: narrow the range")},
            [*export_range, _query("format", {"type": "string", "enum": ["json", "csv", "ocsf", "cef"],
                                              "default": "json"},
                                   "json (default), csv, ocsf (OCSF API Activity, one JSON object per line) or cef "
                                   "(one CEF:0 line per event)")],
            tag="governance")},
        "/api/v1/traces/{trace_id}/export": {"get": _operation(
            "Single-trace export with what `tracehouse verify-export` checks offline", "reviewer", {
                200: _ok(_ref("TraceExport"), headers={"Content-Disposition": {
                    "description": 'attachment; filename="trace-{trace_id}.json"', "schema": {"type": "string"}}}),
                400: _error(400), 404: _error(404)},
            [trace_id], tag="governance")},
        "/tenants/{tenant_id}/traces": {"get": _operation(
            "Tenant traces, newest first (seed 002)", "traces:read",
            {200: _ok(_ref("TenantTraceList")), 400: _error(400), 404: _error(404, "Not the key's tenant")},
            [tenant_id, *tenant_params], tag="tenants")},
        "/tenants/{tenant_id}/traces/{trace_id}": {"get": _operation(
            "A tenant trace with its messages, output, tools and metadata (seed 002)", "traces:read",
            {200: _ok(_ref("TenantTraceDetail")), 400: _error(400), 404: _error(404)},
            [tenant_id, trace_id], tag="tenants")},
        "/v1/checkpoints": {"get": _operation(
            "Signed checkpoints, newest first (roots and leaf counts only: no org's data)", "*",
            {200: _ok(_ref("CheckpointList")), 400: _error(400)},
            [_int("limit", 50, 1, 200), _cursor("nextCursor")], tag="integrity")},
        "/v1/audit/verify": {"get": _operation(
            "Verify the org's audit chain over the entries occurring in [from, to]", "audit:read",
            {200: _ok(_ref("AuditVerification")), 400: _error(400)},
            [_time("from", "default: the beginning"), _time("to", "default: now; not before `from`")],
            tag="integrity")},
        "/v1/audit/export": {"post": _operation(
            "The org's audit log, oldest first, as JSON or as a CSV attachment (seed 000)", audit_export.SCOPE, {
                200: {"description": "Streamed as ClickHouse is read; `audit.exported` is in the audit log already",
                      "headers": {
                          "X-Total-Count": {"description": "entries matching when the export started",
                                            "schema": {"type": "integer", "minimum": 0}},
                          "Content-Disposition": {"description": 'CSV only: attachment; filename="audit-{org}-'
                                                                 '{yyyymmddThhmmssZ}.csv"',
                                                  "schema": {"type": "string"}}},
                      "content": {"application/json": {"schema": {"type": "array",
                                                                  "items": _ref("AuditExportEntry")}},
                                  "text/csv": {"schema": {"type": "string", "description": (
                                      "RFC 4180, CRLF, header " + ",".join(audit_export.COLUMNS) + "; metadata "
                                      "as compact JSON; a cell starting with = + - @ tab or CR is written "
                                      "with a leading apostrophe")}}}},
                400: _error(400), 413: _error(413),
                503: _error(503, "The broker did not acknowledge the `audit.exported` entry: nothing was exported, "
                                 "retry after `Retry-After` seconds", retry_after)},
            body=_object({"format": {"type": "string", "enum": list(audit_export.FORMATS), "default": "json"},
                          "from": {"type": "string", "format": "date-time",
                                   "description": f"entries occurring at or after this time. {_TIME_TEXT}"},
                          "to": {"type": "string", "format": "date-time",
                                 "description": f"entries occurring at or before this time (not before `from`). "
                                                f"{_TIME_TEXT}"}}, []),
            tag="integrity", description="A JSON object body is required (`{}`: every entry, as JSON). Only the "
                                         "key's org: there is no cross-org export.")},
        "/v1/webhooks": {
            "post": _operation("Subscribe a URL to webhook events (the signing secret is shown once)",
                               webhooks.SCOPE, {201: _ok(_ref("CreatedWebhook"), "Created"), 413: _error(413),
                                                **webhook_errors}, body=webhook_body, tag="webhooks"),
            "get": _operation("The org's webhook subscriptions, newest first, with their delivery health",
                              webhooks.SCOPE, {200: _ok(_ref("WebhookList")), 400: _error(400),
                                               503: webhook_errors[503]},
                              [_int("limit", *webhooks.LIMIT), _cursor("nextCursor")], tag="webhooks")},
        "/v1/webhooks/{webhook_id}": {
            "get": _operation("A webhook subscription with its delivery health", webhooks.SCOPE,
                              {200: _ok(_ref("Webhook")), 404: _error(404), 503: webhook_errors[503]},
                              [webhook_id], tag="webhooks"),
            "patch": _operation("Change a webhook subscription's URL, event types, description, filter or status",
                                webhooks.SCOPE, {200: _ok(_ref("UpdatedWebhook")), 404: _error(404),
                                                 413: _error(413), **webhook_errors},
                                [webhook_id], body=webhook_patch, tag="webhooks"),
            "delete": _operation("Delete a webhook subscription", webhooks.SCOPE,
                                 {204: {"description": "Deleted"}, 404: _error(404), 503: webhook_errors[503]},
                                 [webhook_id], tag="webhooks")},
        "/v1/webhooks/test": {"post": _operation(
            "Schedule a webhook.test delivery of a payload to a URL (seed 000)", webhooks.SCOPE,
            {202: _ok(_ref("ScheduledTest"), "Enqueued: the dispatcher attempts it at once"), 413: _error(413),
             **webhook_errors},
            body=_object({"url": webhook_fields["url"],
                          "payload": {"type": "object", "description": "any JSON object of at most "
                                      f"{deliveries.MAX_TEST_PAYLOAD_BYTES} bytes as compact JSON; default {{}}"}},
                         ["url"]),
            tag="webhooks", description="Delivered through the org's active subscription of exactly this URL, or a "
                                        "new one (event_types [webhook.test]) whose secret the answer holds.")},
        "/v1/webhooks/{webhook_id}/deliveries": {"get": _operation(
            "The subscription's delivery attempts, newest first", webhooks.SCOPE,
            {200: _ok(_ref("WebhookAttemptList")), 400: _error(400), 404: _error(404), 503: webhook_errors[503]},
            [webhook_id, _int("limit", *webhooks.LIMIT), _cursor("nextCursor"),
             _query("status", {"type": "string", "enum": list(OUTCOMES)}, "only attempts with this outcome")],
            tag="webhooks")},
        "/v1/webhooks/{webhook_id}/replay": {"post": _replay_body_optional(_operation(
            "Send dead letters again with their original ids and payloads", webhooks.SCOPE,
            {202: _ok(_ref("Replayed"), "Enqueued"), 404: _error(404), 409: _error(409, "The subscription is "
                                                                                         "disabled"),
             413: _error(413), **webhook_errors}, [webhook_id],
            body=_object({"delivery_ids": {"type": "array", "minItems": 1, "maxItems": deliveries.MAX_REPLAY_IDS,
                                           "items": {"type": "string", "minLength": 1, "maxLength": 256}}}, []),
            tag="webhooks", description="No body or `{}`: every dead letter of the subscription not delivered "
                                        "since. Each is produced again to webhook-deliveries, due at once."))},
        "/v1/webhooks/{webhook_id}/rotate-secret": {"post": _operation(
            "Replace the signing secret; the previous one keeps signing for 24 h", webhooks.SCOPE,
            {200: _ok(_ref("CreatedWebhook"), "The new secret (shown only here)"), 404: _error(404),
             503: webhook_errors[503]}, [webhook_id], tag="webhooks")},
        "/v1/admin/keys": {
            "post": _operation("Create an org key (the secret is shown once)", "admin", {
                201: _ok(_ref("CreatedApiKey"), "Created"), 413: _error(413), **keys_responses},
                body=key_body, tag="admin", description="The operator key (TRACEHOUSE_ADMIN_KEY) or an org key "
                                                        "with `admin` for its own org."),
            "get": _operation("List an org's keys (no secrets)", "admin", {200: _ok(_ref("ApiKeyList")),
                                                                          **keys_responses},
                              [_query("org_id", {"type": "string"}, "required with the operator key; an org key "
                                                                    "lists its own org")], tag="admin")},
        "/v1/admin/stored-links": {"get": _operation(
            "Links stored from one sealed-events partition from an offset on (chain workers in other processes)",
            "operator", {200: _ok({"type": "object", "required": ["links"], "properties": {"links": {
                "type": "object", "description": "rows by event schema (TraceEvent, AuditEvent), each with its "
                                                 "_offset, seq, prev_hash and hash",
                "additionalProperties": {"type": "array", "items": {"type": "object"}}}}}), 400: _error(400)},
            [_query("partition", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                    "a sealed-events partition (one that does not exist has no links)", required=True),
             _query("offset", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, "the first offset",
                    required=True)],
            tag="admin", description="The operator key (TRACEHOUSE_ADMIN_KEY) only.")},
        "/v1/admin/keys/{key_id}": {"delete": _operation(
            "Revoke a key", "admin", {200: _ok(_ref("ApiKey"), "Revoked"), 404: _error(404),
                                      403: keys_responses[403]},
            [_path("key_id", "the key's id")], tag="admin")},
    }


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    paths = _paths()
    for path, methods in paths.items():
        for method, op in methods.items():
            op["operationId"] = f"{method}_{path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}"
    return {
        "openapi": "3.1.0",
        "info": {"title": "tracehouse", "version": "0.1.0",
                 "description": "Agent traces and audit logs: ingest, org-scoped reads, hash-chain verification. "
                                "Every error is `{\"error\": {\"code\", \"message\", \"details\"}}`. Unknown query "
                                "parameters answer 400 naming them."},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "An org key (`th_<key_id>_<secret>`) from POST /v1/admin/keys, or the operator key "
                               "for /v1/admin/keys. Each operation lists the scope it needs: "
                               f"{', '.join(SCOPES)}; `admin` implies every scope of its org, `reviewer` "
                               "implies traces:read and audit:read."}},
            "schemas": _components(),
        },
    }


async def serve(request: web.Request) -> web.Response:
    """``GET /v1/openapi.json``."""
    return web.json_response(document())
