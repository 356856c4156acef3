"""OTLP requests to trace events (``schemas.otlp``): spans recorded by the OpenTelemetry SDK and
encoded by its OTLP encoder, OTLP JSON as the specification writes it, the GenAI, OpenLLMetry and
OpenInference conventions, and malformed ids."""

from __future__ import annotations

import json

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from api.preparation import prepare_otlp
from schemas import otlp, otlp_spans
from schemas.model import ValidationError, validate_trace_event


def recorded(build) -> ExportTraceServiceRequest:
    """What the SDK's OTLP encoder sends for the spans ``build(tracer)`` records, read back as a receiver."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"deployment.environment": "prod", "service.name": "bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("agent-lib", "1.2"))
    raw = encode_spans(exporter.get_finished_spans()).SerializeToString()
    return otlp.decode(raw, otlp.PROTOBUF)


def events_of(request: ExportTraceServiceRequest) -> list[dict]:
    return [otlp_spans.span_event(context, span) for context, span in otlp.spans(request)]


def by_name(events: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in events}


def agent_chat_tool(tracer) -> None:
    with tracer.start_as_current_span("invoke_agent planner", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": "ag-7", "gen_ai.agent.name": "planner",
            "gen_ai.conversation.id": "conv-1", "user.id": "u-1"}):
        with tracer.start_as_current_span("chat gpt-4o", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 200,
                "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 7,
                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "tool_call", "parts": [
                    {"type": "tool_call", "id": "call-1", "name": "weather", "arguments": {"city": "Paris"}}]}]),
                "http.route": "/chat", "retry.count": 2}) as chat:
            chat.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("execute_tool weather", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "weather",
                "gen_ai.tool.call.arguments": '{"city": "Paris"}', "gen_ai.tool.call.result": '{"temp": 21}'}) as tool:
            tool.set_status(Status(StatusCode.ERROR, "upstream timeout"))


def test_an_sdk_trace_of_agent_chat_and_tool_maps_to_events_that_validate():
    request = recorded(agent_chat_tool)
    events = by_name(events_of(request))
    agent, chat, tool = events["invoke_agent planner"], events["chat gpt-4o"], events["execute_tool weather"]
    assert {e["trace_id"] for e in events.values()} == {agent["trace_id"]} and len(agent["trace_id"]) == 32
    assert chat["parent_id"] == tool["parent_id"] == agent["event_id"] and "parent_id" not in agent
    assert (agent["type"], agent["class"], agent["agent_id"], agent["agent_name"], agent["session_id"],
            agent["user_id"]) == ("SPAN", "agent", "ag-7", "planner", "conv-1", "u-1")
    assert (chat["type"], chat["class"], chat["model"], chat["status"]) == \
        ("GENERATION", "llm", "gpt-4o-2024-08-06", "STATUS_CODE_OK")
    assert (chat["input_tokens"], chat["output_tokens"], chat["total_tokens"]) == (12, 7, 19)
    assert chat["model_config"] == {"provider": "openai", "temperature": 0.2, "max_tokens": 200}
    assert chat["messages"] == [{"role": "user", "content": "hi"}]
    assert chat["output"] == [{"role": "assistant", "finish_reason": "tool_call", "content": None, "tool_calls": [
        {"id": "call-1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]}]
    assert (tool["type"], tool["class"], tool["status"]) == ("tool.executed", "tool", "STATUS_CODE_ERROR")
    assert tool["input"] == {"city": "Paris"} and tool["output"] == {"temp": 21}
    # what no field took is metadata, the resource's first with service.name foremost
    assert list(chat["metadata"])[0] == "service.name" and chat["metadata"]["service.name"] == "bot"
    assert chat["metadata"]["deployment.environment"] == "prod"
    assert chat["metadata"]["http.route"] == "/chat"
    assert chat["metadata"]["retry.count"] == "2" and chat["metadata"]["otel.scope.name"] == "agent-lib"
    assert tool["metadata"]["otel.status.message"] == "upstream timeout"
    assert tool["metadata"]["gen_ai.tool.name"] == "weather"
    assert not any(k.startswith(("gen_ai.usage", "gen_ai.request", "gen_ai.input")) for k in chat["metadata"])
    for event in events.values():
        validate_trace_event(event, org_id="o", now=0)  # every mapped event is one POST /v1/events accepts
        assert event["end_time"] >= event["occurred_at"] > 1_700_000_000_000


#: The OTLP specification's JSON example (opentelemetry-proto examples/trace.json), as another
#: language's exporter writes it: upper-case hex ids, 64-bit integers as strings, enums as integers.
SPEC_JSON = {"resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeSpans": [{
        "scope": {"name": "my.library", "version": "1.0.0",
                  "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
        "spans": [{
            "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
            "parentSpanId": "EEE19B7EC3C1B173", "name": "I'm a server span",
            "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000", "kind": 2,
            "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}},
                           {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                           {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "30"}},
                           {"key": "gen_ai.request.top_p", "value": {"doubleValue": 0.9}},
                           {"key": "gen_ai.request.stop_sequences",
                            "value": {"arrayValue": {"values": [{"stringValue": "END"}]}}},
                           {"key": "labels", "value": {"kvlistValue": {"values": [
                               {"key": "a", "value": {"boolValue": True}}]}}}],
            "status": {"code": 2, "message": "rate limited"},
            "events": [{"timeUnixNano": "1544712660500000000", "name": "exception",
                        "attributes": [{"key": "exception.type", "value": {"stringValue": "RateLimit"}}]}],
            "unknownFutureField": {"x": 1}}]}]}]}


def spec_as_protobuf() -> ExportTraceServiceRequest:
    """The same request built with the protobuf classes."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "my.service"
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "my.library", "1.0.0"
    ss.scope.attributes.add(key="my.scope.attribute").value.string_value = "some scope attribute"
    span = ss.spans.add(trace_id=bytes.fromhex("5B8EFFF798038103D269B633813FC60C"),
                        span_id=bytes.fromhex("EEE19B7EC3C1B174"), parent_span_id=bytes.fromhex("EEE19B7EC3C1B173"),
                        name="I'm a server span", start_time_unix_nano=1544712660000000000,
                        end_time_unix_nano=1544712661000000000, kind=2)
    span.attributes.add(key="my.span.attr").value.string_value = "some value"
    span.attributes.add(key="gen_ai.operation.name").value.string_value = "chat"
    span.attributes.add(key="gen_ai.usage.input_tokens").value.int_value = 30
    span.attributes.add(key="gen_ai.request.top_p").value.double_value = 0.9
    span.attributes.add(key="gen_ai.request.stop_sequences").value.array_value.values.add().string_value = "END"
    span.attributes.add(key="labels").value.kvlist_value.values.add(key="a").value.bool_value = True
    span.status.code, span.status.message = 2, "rate limited"
    ev = span.events.add(time_unix_nano=1544712660500000000, name="exception")
    ev.attributes.add(key="exception.type").value.string_value = "RateLimit"
    return request


def test_otlp_json_from_the_specification_decodes_to_the_same_events_as_protobuf():
    from_json = events_of(otlp.decode(json.dumps(SPEC_JSON).encode(), otlp.JSON))
    from_protobuf = events_of(otlp.decode(spec_as_protobuf().SerializeToString(), otlp.PROTOBUF))
    assert from_json == from_protobuf
    (event,) = from_json
    assert (event["trace_id"], event["event_id"], event["parent_id"]) == \
        ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "eee19b7ec3c1b173")
    assert (event["occurred_at"], event["end_time"]) == (1544712660000, 1544712661000)
    assert (event["type"], event["status"], event["input_tokens"]) == ("GENERATION", "STATUS_CODE_ERROR", 30)
    assert event["model_config"] == {"top_p": 0.9, "stop_sequences": ["END"]}
    meta = event["metadata"]
    assert meta["service.name"] == "my.service" and meta["otel.span.kind"] == "server"
    assert meta["otel.status.message"] == "rate limited" and meta["labels"] == '{"a":true}'
    assert json.loads(meta["otel.events"]) == [
        {"name": "exception", "time_unix_nano": 1544712660500000000, "attributes": {"exception.type": "RateLimit"}}]


def test_openinference_attributes_map_as_a_second_convention():
    def build(tracer):
        with tracer.start_as_current_span("llm", attributes={
                "openinference.span.kind": "LLM", "llm.model_name": "claude-sonnet", "llm.provider": "anthropic",
                "llm.token_count.prompt": 5, "llm.token_count.completion": 9, "llm.token_count.total": 14,
                "llm.invocation_parameters": '{"temperature": 0}',
                "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "be brief",
                "llm.input_messages.1.message.role": "user", "llm.input_messages.1.message.content": "hi",
                "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "hello",
                "input.value": '{"q": "hi"}', "input.mime_type": "application/json", "output.value": "hello",
                "session.id": "s-9", "user.id": "u-9", "tag.tags": ["beta", "eu"]}):
            pass
        with tracer.start_as_current_span("retrieve", attributes={"openinference.span.kind": "RETRIEVER"}):
            pass
    events = by_name(events_of(recorded(build)))
    llm, retriever = events["llm"], events["retrieve"]
    assert (llm["type"], llm["class"], llm["model"]) == ("GENERATION", "llm", "claude-sonnet")
    assert (llm["input_tokens"], llm["output_tokens"], llm["total_tokens"]) == (5, 9, 14)
    assert llm["model_config"] == {"provider": "anthropic", "temperature": 0}
    assert llm["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert llm["output"] == [{"role": "assistant", "content": "hello"}] and llm["input"] == {"q": "hi"}
    assert (llm["session_id"], llm["user_id"], llm["tags"]) == ("s-9", "u-9", ["beta", "eu"])
    assert (retriever["type"], retriever["class"]) == ("SPAN", "retriever")


def test_openllmetry_flattened_prompts_and_the_older_span_events():
    def build(tracer):
        with tracer.start_as_current_span("openai.chat", attributes={
                "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.prompt_tokens": 3, "gen_ai.usage.completion_tokens": 4,
                "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "2+2?",
                "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "4",
                "gen_ai.completion.0.finish_reason": "stop"}):
            pass
        with tracer.start_as_current_span("older") as span:
            span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": '[{"role": "user", "content": "a"}]'})
            span.add_event("gen_ai.content.completion",
                           {"gen_ai.completion": '[{"role": "assistant", "content": "b"}]'})
        with tracer.start_as_current_span("per-message") as span:
            span.add_event("gen_ai.system.message", {"content": "sys"})
            span.add_event("gen_ai.user.message", {"content": "hello"})
            span.add_event("gen_ai.choice", {"index": 0, "finish_reason": "stop", "message": '{"content": "hey"}'})
    events = by_name(events_of(recorded(build)))
    flat = events["openai.chat"]
    assert (flat["model"], flat["input_tokens"], flat["output_tokens"], flat["total_tokens"]) == \
        ("gpt-4o-mini", 3, 4, 7)
    assert flat["messages"] == [{"role": "user", "content": "2+2?"}]
    assert flat["output"] == [{"role": "assistant", "content": "4", "finish_reason": "stop"}]
    assert flat["model_config"] == {"provider": "openai"}
    older = events["older"]
    assert older["messages"] == [{"role": "user", "content": "a"}]
    assert older["output"] == [{"role": "assistant", "content": "b"}] and "otel.events" not in older["metadata"]
    per = events["per-message"]
    assert per["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}]
    assert per["output"] == [{"index": 0, "finish_reason": "stop", "message": {"content": "hey"}}]


@pytest.mark.parametrize("field, change", [
    ("trace_id", {"trace_id": b"\x00" * 16}), ("trace_id", {"trace_id": b"\x01" * 15}),
    ("event_id", {"span_id": b""}), ("parent_id", {"parent_span_id": b"\x01" * 9})])
def test_a_malformed_id_is_a_validation_error_naming_the_event_field(field, change):
    request = spec_as_protobuf()
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for key, value in change.items():
        setattr(span, key, value)
    with pytest.raises(ValidationError) as caught:
        events_of(request)
    assert caught.value.field == field


def test_prepared_requests_count_rejections_by_span_and_keep_a_trace_in_one_record():
    request = spec_as_protobuf()
    spans = request.resource_spans[0].scope_spans[0].spans
    second = spans.add()
    second.CopyFrom(spans[0])
    second.span_id = bytes.fromhex("00000000000000aa")
    bad = spans.add()
    bad.CopyFrom(spans[0])
    bad.trace_id = b"short"
    prepared = prepare_otlp(request.SerializeToString(), otlp.PROTOBUF, "org-1", "test", 5000, 1 << 20)
    assert prepared.error is None and prepared.accepted == ["eee19b7ec3c1b174", "00000000000000aa"]
    assert [(r["index"], r["field"]) for r in prepared.rejected] == [(2, "trace_id")]
    assert len(prepared.records) == 1  # one trace's spans travel as one batch record
    assert prepared.reports[0]["payload"].startswith("{")
    too_many = prepare_otlp(request.SerializeToString(), otlp.PROTOBUF, "org-1", "test", 2, 1 << 20)
    assert too_many.error is not None and too_many.error[0] == 413


@pytest.mark.parametrize("raw, media", [
    (b"\x0a\x05\x0a\x03", otlp.PROTOBUF), (b"\xff\xff\xff", otlp.PROTOBUF), (b"{", otlp.JSON), (b"[1]", otlp.JSON),
    (b'{"resourceSpans": 7}', otlp.JSON),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}', otlp.JSON)])
def test_an_undecodable_body_is_refused_as_a_whole(raw, media):
    with pytest.raises(otlp.UndecodableRequest):
        otlp.decode(raw, media)
    prepared = prepare_otlp(raw, media, "org-1", "test", 5000, 1 << 20)
    assert prepared.error is not None and prepared.error[0] == 400 and prepared.reports[0]["field"] == "(body)"


def test_a_json_id_that_is_not_hex_rejects_only_its_span():
    body = json.loads(json.dumps(SPEC_JSON))
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append(dict(spans[0], traceId="not-hex-at-all", spanId="EEE19B7EC3C1B175"))
    prepared = prepare_otlp(json.dumps(body).encode(), otlp.JSON, "org-1", "test", 5000, 1 << 20)
    assert prepared.accepted == ["eee19b7ec3c1b174"]
    assert [(r["index"], r["field"]) for r in prepared.rejected] == [(1, "trace_id")]


def test_responses_are_encoded_in_the_request_encoding():
    from google.rpc import status_pb2
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
    assert json.loads(otlp.encode_response(otlp.JSON)) == {}
    assert json.loads(otlp.encode_response(otlp.JSON, 2, "span 1: trace_id: bad")) == \
        {"partialSuccess": {"rejectedSpans": "2", "errorMessage": "span 1: trace_id: bad"}}
    reply = ExportTraceServiceResponse.FromString(otlp.encode_response(otlp.PROTOBUF, 1, "why"))
    assert (reply.partial_success.rejected_spans, reply.partial_success.error_message) == (1, "why")
    status = status_pb2.Status.FromString(otlp.encode_status(otlp.PROTOBUF, 3, "bad"))
    assert (status.code, status.message) == (3, "bad")
    assert otlp.media_type("application/json; charset=utf-8") == otlp.JSON
    assert otlp.media_type("Application/X-Protobuf") == otlp.PROTOBUF and otlp.media_type("text/plain") is None
