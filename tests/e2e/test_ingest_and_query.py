"""POST events, read them back through the gateway API (real broker, real chdb, real worker);
rejected items reach invalid-events on the broker. Parsing, filters, paging and metrics over
stored events: tests/api/test_ingest_and_query.py."""

from __future__ import annotations

import json
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from tests.support.service import Api, eventually, wait_event_count

pytestmark = pytest.mark.slow

EXAMPLE = {"event_id": "evt-1", "trace_id": "tr-1", "parent_id": None, "class": "llm", "type": "GENERATION",
           "name": "chat", "occurred_at": "2026-11-23T10:00:00.123Z", "end_time": "2026-11-23T10:00:01.500Z",
           "status": "STATUS_CODE_OK", "model": "gpt-4o", "user_id": "u-1", "agent_id": "ag-1",
           "input_tokens": 10, "output_tokens": 20, "cost": 0.0004, "tags": ["prod"],
           "metadata": {"k": "v", "ключ": "значение ✓"}, "input": "...",
           "output": {"message": "done", "success": True}}


def org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


async def wait_trace(api: Api, key: str, trace_id: str, count: int) -> dict:
    return await wait_event_count(api, key, f"/v1/traces/{trace_id}", count)


async def test_posted_event_comes_back_field_for_field_and_rejects_reach_invalid_events(stack):
    owner = org()
    async with Api(stack.url) as api:
        key = await api.org_key(owner)
        status, body = await api.post("/v1/events", key, [{"trace_id": "tr-1", "colour": "red"}])
        assert status == 400 and body["error"]["details"]["rejected"][0]["field"] == "colour", body
        status, body = await api.post("/v1/events", key, [EXAMPLE])
        assert status == 202 and body == {"accepted": ["evt-1"], "rejected": []}
        trace = await wait_trace(api, key, "tr-1", 1)
        (ev,) = trace["events"]
        for field, value in EXAMPLE.items():
            assert ev[field] == value, field
        status, page = await api.get("/v1/traces", key)
        assert status == 200 and page["nextCursor"] is None and [e["event_id"] for e in page["events"]] == ["evt-1"]
    (report,) = await read_invalid_events(stack, owner, expect=1)
    assert report["field"] == "colour" and report["reason"] and report["payload"]


async def read_invalid_events(stack, org_id: str, expect: int) -> list[dict]:
    consumer = AIOKafkaConsumer("invalid-events", bootstrap_servers=stack.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False, group_id=None)
    await consumer.start()
    found: list[dict] = []
    try:
        async def probe():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    report = json.loads(r.value)
                    if report.get("org_id") == org_id:
                        found.append(report)
            return len(found)
        await eventually(probe, lambda n: n >= expect, timeout=20)
    finally:
        await consumer.stop()
    return found
