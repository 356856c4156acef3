"""``POST /v1/traces`` as an OTLP/HTTP receiver, in process: protobuf and JSON, gzip and deflate,
partial success, every error as a ``google.rpc.Status`` in the request's encoding, hostile bodies,
keys, scopes and tenancy. The official SDK's exporter against a running service:
tests/e2e/test_otlp_ingest.py."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.service import uid
from tests.unit.test_otlp_mapping import SPEC_JSON

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROTOBUF, JSON = "application/x-protobuf", "application/json"


def request_of(trace_ids: list[str], spans_each: int = 1, start_ns: int = 1_764_000_000_000_000_000) -> bytes:
    """An ExportTraceServiceRequest (protobuf) of ``spans_each`` spans per trace id (hex)."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "checkout"
    ss = rs.scope_spans.add()
    for t, trace_id in enumerate(trace_ids):
        for i in range(spans_each):
            span = ss.spans.add(trace_id=bytes.fromhex(trace_id), span_id=(t * 100_000 + i + 1).to_bytes(8, "big"),
                                name=f"span-{i}", start_time_unix_nano=start_ns + i * 1_000_000,
                                end_time_unix_nano=start_ns + i * 1_000_000 + 500_000)
            span.attributes.add(key="gen_ai.operation.name").value.string_value = "chat"
            span.attributes.add(key="gen_ai.request.model").value.string_value = "gpt-4o"
    return request.SerializeToString()


def trace_id() -> str:
    return uid("t").encode().hex()[:32].rjust(32, "0")


async def post(client, key: str | None, body: bytes, content_type: str = PROTOBUF, **headers: str):
    sent = {"Content-Type": content_type, **headers}
    if key:
        sent["Authorization"] = f"Bearer {key}"
    async with client.post("/v1/traces", data=body, headers=sent) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.read(), r.headers


def status_of(body: bytes, content_type: str) -> status_pb2.Status:
    if content_type.startswith(JSON):
        return status_pb2.Status(**json.loads(body))
    return status_pb2.Status.FromString(body)


async def test_protobuf_export_is_stored_and_read_back_by_its_org_only(api, client, pipeline):
    owner, other = uid("org"), uid("org")
    key, other_key = await api.org_key(owner), await api.org_key(other)
    tid = trace_id()
    status, ctype, body, _ = await post(client, key, request_of([tid], spans_each=3))
    assert (status, ctype) == (200, PROTOBUF)
    assert ExportTraceServiceResponse.FromString(body) == ExportTraceServiceResponse()  # no partial_success
    await pipeline.flush()
    status, trace = await api.get(f"/v1/traces/{tid}", key)
    assert status == 200 and [e["name"] for e in trace["events"]] == ["span-0", "span-1", "span-2"]
    first = trace["events"][0]
    assert (first["type"], first["class"], first["model"], first["metadata"]["service.name"]) == \
        ("GENERATION", "llm", "gpt-4o", "checkout")
    assert first["occurred_at"] == "2025-11-24T16:00:00.000Z" and first["end_time"] == "2025-11-24T16:00:00.000Z"
    status, _ = await api.get(f"/v1/traces/{tid}", other_key)
    assert status == 404
    status, page = await api.get("/v1/traces", other_key)
    assert status == 200 and page["events"] == []


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
async def test_compressed_bodies_are_accepted(api, client, pipeline, encoding, compress):
    key = await api.org_key(uid("org"))
    tid = trace_id()
    status, _, _, _ = await post(client, key, compress(request_of([tid])), **{"Content-Encoding": encoding})
    assert status == 200
    await pipeline.flush()
    status, trace = await api.get(f"/v1/traces/{tid}", key)
    assert status == 200 and len(trace["events"]) == 1


async def test_json_export_answers_in_json_with_partial_success_for_invalid_spans(api, client, producer, pipeline):
    owner = uid("org")
    key = await api.org_key(owner)
    body = json.loads(json.dumps(SPEC_JSON))
    tid = trace_id()
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["traceId"] = tid
    spans.append(dict(spans[0], traceId="00" * 16, spanId="AA" * 8))  # an all-zero trace id is invalid
    spans.append(dict(spans[0], spanId="BB" * 8, startTimeUnixNano="5"))  # 1970: outside the stored range
    status, ctype, reply, _ = await post(client, key, json.dumps(body).encode(), JSON)
    assert (status, ctype) == (200, JSON)
    partial = json.loads(reply)["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "span 1: trace_id:" in partial["errorMessage"] and "span 2: occurred_at:" in partial["errorMessage"]
    assert [(r["index"], r["field"]) for r in producer.invalid_reports(owner)] == [(1, "trace_id"), (2, "occurred_at")]
    await pipeline.flush()
    status, trace = await api.get(f"/v1/traces/{tid}", key)
    assert status == 200 and [e["event_id"] for e in trace["events"]] == ["eee19b7ec3c1b174"]


async def test_an_empty_request_is_a_success_with_nothing_stored(api, client):
    key = await api.org_key(uid("org"))
    status, _, body, _ = await post(client, key, b"")
    assert status == 200 and ExportTraceServiceResponse.FromString(body) == ExportTraceServiceResponse()
    status, _, body, _ = await post(client, key, b"{}", JSON)
    assert status == 200 and json.loads(body) == {}


@pytest.mark.parametrize("body, content_type, headers, expected, code", [
    (request_of(["ab" * 16])[:-3], PROTOBUF, {}, 400, 3),  # truncated protobuf
    (b'{"resourceSpans": [', JSON, {}, 400, 3),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "00" * 16, "spanId": "01" * 8, "startTimeUnixNano": "1764000000000000000"}]}]}]}).encode(),
     JSON, {}, 400, 3),  # every span invalid
    (b"not gzip at all", PROTOBUF, {"Content-Encoding": "gzip"}, 400, 3),
    (b"{}", "text/plain", {}, 415, 3),
    (gzip.compress(b"\x00" * (11 * 1024 * 1024)), PROTOBUF, {"Content-Encoding": "gzip"}, 413, 8),
])
async def test_bad_bodies_get_a_status_in_the_request_encoding(api, client, body, content_type, headers, expected,
                                                               code):
    key = await api.org_key(uid("org"))
    status, ctype, reply, _ = await post(client, key, body, content_type, **headers)
    assert status == expected, reply
    assert ctype == (content_type if content_type in (PROTOBUF, JSON) else JSON)
    decoded = status_of(reply, ctype)
    assert decoded.code == code and decoded.message


async def test_five_thousand_spans_are_accepted_and_one_more_is_413(api, client, pipeline):
    key = await api.org_key(uid("org"))
    tids = [trace_id() for _ in range(5)]
    status, _, _, _ = await post(client, key, request_of(tids, spans_each=1000))
    assert status == 200
    await pipeline.flush()
    for tid in tids:
        status, trace = await api.get(f"/v1/traces/{tid}", key)
        assert status == 200 and len(trace["events"]) == 1000
    status, _, reply, _ = await post(client, key, request_of([trace_id()], spans_each=5001))
    assert status == 413 and "5001 spans" in status_pb2.Status.FromString(reply).message


async def test_keys_and_scopes_answer_401_and_403_as_statuses(api, client):
    status, ctype, reply, _ = await post(client, None, request_of([trace_id()]))
    assert (status, ctype, status_pb2.Status.FromString(reply).code) == (401, PROTOBUF, 16)
    status, ctype, reply, _ = await post(client, "th_nope_nope", b"{}", JSON)
    assert (status, ctype, json.loads(reply)["code"]) == (401, JSON, 16)
    reader = await api.org_key(uid("org"), scopes=["traces:read"])
    status, _, reply, _ = await post(client, reader, request_of([trace_id()]))
    assert status == 403 and "traces:write" in status_pb2.Status.FromString(reply).message


async def test_a_body_that_does_not_decompress_is_400_on_the_json_routes_too(api, client):
    key = await api.org_key(uid("org"))
    async with client.post("/v1/events", data=b"not gzip", headers={
            "Authorization": f"Bearer {key}", "Content-Encoding": "gzip", "Content-Type": JSON}) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_body"


def nested_value(depth: int) -> ExportTraceServiceRequest:
    """A request whose one span holds an attribute nested ``depth`` kvlists deep."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=bytes.fromhex(trace_id()), span_id=b"\x01" * 8, start_time_unix_nano=1_764_000_000_000_000_000)
    value = span.attributes.add(key="deep").value
    for _ in range(depth):
        value = value.kvlist_value.values.add(key="k").value
    value.string_value = "bottom"
    return request


async def test_hostile_protobuf_is_refused_or_kept_as_text_never_a_500(api, client, pipeline):
    key = await api.org_key(uid("org"))
    # deeper than protobuf's own decoder goes: the request does not decode
    status, _, reply, _ = await post(client, key, nested_value(200).SerializeToString())
    assert status == 400 and status_pb2.Status.FromString(reply).code == 3
    # as deep as it goes: the span is stored, the attribute as JSON text in metadata
    request = nested_value(20)
    tid = request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    status, _, reply, _ = await post(client, key, request.SerializeToString())
    assert status == 200, status_pb2.Status.FromString(reply)
    # a string that is not UTF-8 (protobuf strings must be): the request does not decode
    valid = nested_value(0)
    valid.resource_spans[0].scope_spans[0].spans[0].name = "NAME"
    raw = valid.SerializeToString().replace(b"NAME", b"\xff\xfe\xfd\xfc")
    status, _, reply, _ = await post(client, key, raw)
    assert status == 400 and status_pb2.Status.FromString(reply).code == 3
    # ten thousand attributes on one span
    many = nested_value(0)
    span = many.resource_spans[0].scope_spans[0].spans[0]
    span.span_id = b"\x02" * 8
    for i in range(10_000):
        span.attributes.add(key=f"a{i}").value.int_value = i
    status, _, _, _ = await post(client, key, many.SerializeToString())
    assert status == 200
    await pipeline.flush()
    status, trace = await api.get(f"/v1/traces/{tid}", key)
    assert status == 200 and {e["event_id"] for e in trace["events"]} == {"01" * 8}
    assert json.loads(trace["events"][0]["metadata"]["deep"]).keys() == {"k"}
