"""The official OpenTelemetry SDK and OTLP/HTTP exporter against a running service (broker, chdb,
worker, API): configured the way a user configures it, by ``OTEL_EXPORTER_OTLP_ENDPOINT`` and
``OTEL_EXPORTER_OTLP_HEADERS``, gzip on and off, a nested agent → chat → tool trace arrives,
reads back through the gateway, governance and tenant surfaces with the mapped fields, and
verifies. The receiver's answers to bad bodies: tests/api/test_otlp_ingest.py."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode

from tests.support.service import Api, Service, eventually, uid, wait_event_count

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(noida_stack: Service) -> Service:
    """OTLP is the API's: the broker behind it is the same as for every ingest route."""
    return noida_stack


def record_agent_trace(provider: TracerProvider, agent_id: str) -> str:
    """An agent invocation holding a model call and a tool call, as a GenAI-instrumented app records it;
    its trace id in hex."""
    tracer = provider.get_tracer("support-agent", "0.3.1")
    with tracer.start_as_current_span("invoke_agent support", attributes={
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": agent_id, "gen_ai.agent.name": "support",
            "gen_ai.conversation.id": "conv-42", "user.id": "user-7"}) as agent:
        with tracer.start_as_current_span("chat claude-sonnet", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-sonnet", "gen_ai.request.temperature": 0.3,
                "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30,
                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                    {"type": "text", "content": "Where is my order?"}]}]),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                    {"type": "text", "content": "Let me look it up."}]}])}) as chat:
            chat.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("execute_tool lookup_order", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
                "gen_ai.tool.call.arguments": '{"order": "A-1"}', "gen_ai.tool.call.result": '{"status": "shipped"}'}):
            pass
        return format(agent.get_span_context().trace_id, "032x")


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
async def test_an_sdk_exporter_configured_by_environment_sends_a_trace_that_reads_back_and_verifies(
        stack, monkeypatch, compression):
    org = uid("org")
    async with Api(stack.url) as api:
        key = await api.org_key(org)
        other = await api.org_key(uid("org"))
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", stack.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer {key}")
        exporter = OTLPSpanExporter(compression=compression)
        results: list[SpanExportResult] = []

        class Recording(SpanExporter):  # the exporter, keeping what each of its export calls returned
            def export(self, spans):
                results.append(result := exporter.export(spans))
                return result

            def shutdown(self):
                exporter.shutdown()

        provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
        provider.add_span_processor(BatchSpanProcessor(Recording()))
        agent_id = uid("agent")
        trace = record_agent_trace(provider, agent_id)
        await asyncio.to_thread(provider.force_flush)
        await asyncio.to_thread(provider.shutdown)
        assert results == [SpanExportResult.SUCCESS]

        verdict = await wait_event_count(api, key, f"/api/v1/traces/{trace}/verify", 3)
        assert verdict["valid"] is True and verdict["event_count"] == 3

        status, detail = await api.get(f"/v1/traces/{trace}", key)
        assert status == 200
        events = {e["name"]: e for e in detail["events"]}
        agent, chat, tool = (events["invoke_agent support"], events["chat claude-sonnet"],
                             events["execute_tool lookup_order"])
        assert chat["parent_id"] == tool["parent_id"] == agent["event_id"] and agent["parent_id"] is None
        assert (agent["type"], agent["agent_id"], agent["session_id"], agent["user_id"]) == \
            ("SPAN", agent_id, "conv-42", "user-7")
        assert (chat["type"], chat["class"], chat["model"], chat["input_tokens"], chat["output_tokens"]) == \
            ("GENERATION", "llm", "claude-sonnet", 120, 30)
        assert chat["messages"] == [{"role": "user", "content": "Where is my order?"}]
        assert (tool["type"], tool["input"], tool["output"]) == ("tool.executed", {"order": "A-1"},
                                                                 {"status": "shipped"})
        assert chat["metadata"]["service.name"] == "support-bot"

        status, page = await api.get("/v1/traces", key, type="tool.executed")
        assert status == 200 and [e["event_id"] for e in page["events"]] == [tool["event_id"]]
        status, governance = await api.get("/api/v1/traces", key, agent_id=agent_id)
        assert status == 200 and [t["id"] for t in governance["data"]] == [trace]
        status, tenant = await api.get(f"/tenants/{org}/traces", key)
        assert status == 200
        (item,) = tenant["data"]
        assert (item["traceId"], item["inputTokens"], item["outputTokens"]) == (trace, 120, 30)
        assert item["modelConfig"] == {"provider": "anthropic", "temperature": 0.3, "model": "claude-sonnet"}
        for path in (f"/v1/traces/{trace}", f"/api/v1/traces/{trace}", f"/tenants/{org}/traces/{trace}"):
            assert (await api.get(path, other))[0] == 404, path


async def test_spans_of_one_trace_exported_in_several_requests_chain_into_one_trace(stack):
    """A BatchSpanProcessor exports spans as they end: a long trace reaches tracehouse over many requests,
    and a retried request (same span ids) adds nothing."""
    async with Api(stack.url) as api:
        key = await api.org_key(uid("org"))
        exporter = OTLPSpanExporter(endpoint=f"{stack.url}/v1/traces", headers={"Authorization": f"Bearer {key}"})
        provider = TracerProvider()
        tracer = provider.get_tracer("steps")
        finished = []
        with tracer.start_as_current_span("run") as root:
            for i in range(5):
                with tracer.start_as_current_span(f"step-{i}") as step:
                    pass
                finished.append(step)
        finished.append(root)
        for span in finished:  # one request per span, then the first again, as an exporter retry sends it
            assert await asyncio.to_thread(exporter.export, [span]) == SpanExportResult.SUCCESS
        assert await asyncio.to_thread(exporter.export, [finished[0]]) == SpanExportResult.SUCCESS
        trace = format(root.get_span_context().trace_id, "032x")
        verdict = await wait_event_count(api, key, f"/api/v1/traces/{trace}/verify", 6)
        assert verdict["valid"] is True

        async def count():
            return (await api.get(f"/v1/traces/{trace}", key))[1]
        detail = await eventually(count, lambda d: len(d["events"]) >= 6)
        assert sorted(e["name"] for e in detail["events"]) == ["run", *(f"step-{i}" for i in range(5))]
        await asyncio.sleep(2)  # a duplicate would be stored by now
        status, again = await api.get(f"/api/v1/traces/{trace}/verify", key)
        assert status == 200 and again["event_count"] == 6 and again["valid"] is True
