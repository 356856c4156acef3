"""POST events to the in-process API, read them back through the gateway list, the trace
detail and the metrics; what ingest publishes (records, rejection reports) as it left the API."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from schemas.codec import decode
from schemas.topics import TRACE_EVENTS
from tests.support.service import all_events, uid

pytestmark = pytest.mark.asyncio(loop_scope="session")


def org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


async def test_envelope_form_and_server_assigned_ids(api, producer, pipeline):
    key = await api.org_key(org())
    trace = uid("tr")
    status, body = await api.post("/v1/events", key, {"events": [{"trace_id": trace, "type": "SPAN"}]})
    assert status == 202 and len(body["accepted"]) == 1 and body["accepted"][0]
    (record,) = [s for s in producer.sent if s.topic == TRACE_EVENTS and s.key == trace.encode()]
    assert [e["event_id"] for e in decode(record.value).datum["events"]] == body["accepted"]
    await pipeline.flush()
    _, t = await api.get(f"/v1/traces/{trace}", key)
    assert t["events"][0]["event_id"] == body["accepted"][0]


async def test_trace_detail_orders_events_by_time(api, pipeline):
    key = await api.org_key(org())
    trace = uid("tr")
    times = ["2026-11-23T10:00:03.000Z", "2026-11-23T10:00:01.000Z", "2026-11-23T10:00:02.000Z"]
    evs = [{"event_id": f"e{i}", "trace_id": trace, "occurred_at": t} for i, t in enumerate(times)]
    assert (await api.post("/v1/events", key, evs))[0] == 202
    await pipeline.flush()
    _, t = await api.get(f"/v1/traces/{trace}", key)
    assert t["event_count"] == 3 and [e["event_id"] for e in t["events"]] == ["e1", "e2", "e0"]


async def test_partial_batch_reports_rejects_and_sends_them_to_invalid_events(api, producer):
    owner = org()
    key = await api.org_key(owner)
    trace = uid("tr")
    status, body = await api.post("/v1/events", key, [
        {"trace_id": trace, "event_id": "good"},
        {"trace_id": trace, "event_id": "bad", "input_tokens": "ten"},
        {"trace_id": trace, "colour": "red"},
    ])
    assert status == 202
    assert body["accepted"] == ["good"]
    assert body["rejected"] == [
        {"index": 1, "field": "input_tokens", "reason": "expected an integer, got string"},
        {"index": 2, "field": "colour", "reason": "unknown field"},
    ]
    status, body = await api.post("/v1/events", key, [{"trace_id": 1}])
    assert status == 400 and body["error"]["details"]["rejected"][0]["field"] == "trace_id"

    reports = producer.invalid_reports(owner)
    assert sorted(r["field"] for r in reports) == ["colour", "input_tokens", "trace_id"]
    assert all(r["reason"] and r["payload"] for r in reports)


async def test_filters_class_type_since_until(api, pipeline):
    key = await api.org_key(org())
    trace = uid("tr")
    evs = [
        {"event_id": "a", "trace_id": trace, "class": "llm", "type": "GENERATION",
         "occurred_at": "2026-05-01T00:00:00Z"},
        {"event_id": "b", "trace_id": trace, "class": "tool", "type": "tool.executed",
         "occurred_at": "2026-05-02T00:00:00Z"},
        {"event_id": "c", "trace_id": trace, "class": "tool", "type": "tool.executed",
         "occurred_at": "2026-04-30T00:00:00Z"},
    ]
    assert (await api.post("/v1/events", key, evs))[0] == 202
    await pipeline.flush()

    async def ids(**params):
        status, body = await api.get("/v1/traces", key, **params)
        assert status == 200, body
        return [e["event_id"] for e in body["events"]]

    assert await ids() == ["c", "a", "b"]
    assert await ids(type="tool.executed", since="2026-05-01T00:00:00Z") == ["b"]
    assert await ids(**{"class": "tool"}) == ["c", "b"]
    assert await ids(until="2026-05-01T00:00:00Z") == ["c", "a"]


async def test_pagination_returns_every_event_exactly_once_while_ingest_continues(api, pipeline):
    key = await api.org_key(org())
    initial = [{"event_id": f"p{i:05d}", "trace_id": f"tr-{i // 20}",
                "occurred_at": f"2026-06-01T00:{(i // 60) % 60:02d}:{i % 60:02d}.000Z"} for i in range(1200)]
    for i in range(0, len(initial), 200):
        assert (await api.post("/v1/events", key, initial[i:i + 200]))[0] == 202
    await pipeline.flush()
    assert len(await all_events(api, key)) == 1200
    stored = asyncio.Event()

    async def keep_ingesting():
        n = 0
        while True:  # newer events keep arriving (and being stored) while the client pages
            batch = [{"event_id": f"live{n}-{j}", "trace_id": f"live-{n}",
                      "occurred_at": f"2026-07-01T00:00:{n % 60:02d}.{j:03d}Z"} for j in range(20)]
            await api.post("/v1/events", key, batch)
            await pipeline.flush()
            stored.set()
            n += 1
            await asyncio.sleep(0.05)

    feeder = asyncio.create_task(keep_ingesting())
    try:
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
            status, body = await api.get("/v1/traces", key, **params)
            assert status == 200
            seen.extend(e["event_id"] for e in body["events"])
            cursor = body["nextCursor"]
            if cursor is None or len(seen) > 5000:
                break
            await asyncio.sleep(0.01)
    finally:
        feeder.cancel()
    assert stored.is_set(), "nothing was stored while the client paged"
    assert len(seen) == len(set(seen)), "an event was returned twice"
    assert [s for s in seen if s.startswith("p")] == [e["event_id"] for e in initial]


async def test_default_and_max_limits(api, pipeline):
    key = await api.org_key(org())
    evs = [{"event_id": f"l{i:03d}", "trace_id": "t", "occurred_at": f"2026-06-01T00:00:00.{i:03d}Z"}
           for i in range(260)]
    assert (await api.post("/v1/events", key, evs))[0] == 202
    await pipeline.flush()
    assert len(await all_events(api, key)) == 260
    status, body = await api.get("/v1/traces", key)
    assert len(body["events"]) == 50 and body["nextCursor"]
    status, body = await api.get("/v1/traces", key, limit=200)
    assert len(body["events"]) == 200
    status, body = await api.get("/v1/traces", key, limit=200, cursor=body["nextCursor"])
    assert len(body["events"]) == 60 and body["nextCursor"] is None


async def test_audit_events_are_accepted_and_validated(api):
    key = await api.org_key(org())
    status, body = await api.post("/v1/audit/events", key, [
        {"id": "a1", "actor": "bob", "action": "key.created", "target": "key/1", "metadata": {"ip": "1.2.3.4"},
         "occurred_at": "2026-11-23T10:00:00.000Z"},
        {"actor": "bob"},
    ])
    assert status == 202 and body["accepted"] == ["a1"]
    assert body["rejected"] == [{"index": 1, "field": "action", "reason": "is required"}]
    read_only = await api.org_key(org(), ["traces:read"])
    assert (await api.post("/v1/audit/events", read_only, [{"actor": "x", "action": "y"}]))[0] == 403


async def test_metrics_count_per_hour_type_and_outcome(api, pipeline):
    key = await api.org_key(org())
    evs = [{"trace_id": "m", "type": "tool.executed", "outcome": "ok", "occurred_at": "2026-05-01T10:05:00Z"},
           {"trace_id": "m", "type": "tool.executed", "outcome": "ok", "occurred_at": "2026-05-01T10:55:00Z"},
           {"trace_id": "m", "type": "GENERATION", "occurred_at": "2026-05-01T11:00:00Z"}]
    assert (await api.post("/v1/events", key, evs))[0] == 202
    await pipeline.flush()
    status, body = await api.get("/v1/metrics", key, since="2026-05-01T00:00:00Z")
    assert status == 200 and body["total"] == 3, body
    zero = {"errors": 0, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cost": 0.0}
    assert body["buckets"] == [
        {"hour": "2026-05-01T10:00:00.000Z", "type": "tool.executed", "outcome": "ok", "count": 2} | zero,
        {"hour": "2026-05-01T11:00:00.000Z", "type": "GENERATION", "outcome": None, "count": 1} | zero,
    ]
    # whole hours: a since inside an hour takes all of it, and says so
    status, part = await api.get("/v1/metrics", key, since="2026-05-01T10:30:00Z", until="2026-05-01T10:59:00Z")
    assert status == 200 and part["since"] == "2026-05-01T10:00:00.000Z" and part["total"] == 2
    other = await api.org_key(org())
    assert (await api.get("/v1/metrics", other, since="2026-05-01T00:00:00Z"))[1]["total"] == 0
    assert (await api.get("/v1/metrics", key, since="nope"))[0] == 400
