"""Hourly rollups end to end: what GET /v1/metrics answers is what rollups-hourly carries,
each org sees only its own hours, and a late event republishes its hour."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from schemas.codec import decode
from schemas.timefmt import format_ms
from schemas.topics import ROLLUPS_HOURLY
from tests.support.service import Api, Service, eventually

pytestmark = pytest.mark.slow
MEASURES = ("errors", "input_tokens", "output_tokens", "total_tokens", "cost")


async def latest_rollups(service: Service, org_id: str) -> dict[str, list[dict]]:
    """The newest HourlyRollup of each of ``org_id``'s hours on rollups-hourly: hour (ISO) -> buckets,
    as GET /v1/metrics shows them."""
    consumer = AIOKafkaConsumer(ROLLUPS_HOURLY, bootstrap_servers=service.bootstrap,
                                group_id=f"t-{uuid.uuid4().hex}", auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        newest: dict[int, dict] = {}
        while batches := await consumer.getmany(timeout_ms=1000):
            for records in batches.values():
                for r in records:
                    if r.key == org_id.encode():
                        datum = decode(r.value).datum
                        newest[datum["hour"]] = datum
    finally:
        await consumer.stop()
    return {format_ms(hour): [{"hour": format_ms(hour), "type": b["type"], "outcome": b["outcome"],
                               "count": b["events"]} | {k: b[k] for k in MEASURES} for b in d["buckets"]]
            for hour, d in sorted(newest.items())}


def by_hour(buckets: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for b in buckets:
        out.setdefault(b["hour"], []).append(b)
    return out


async def test_metrics_and_the_rollups_topic_agree_and_a_late_event_republishes_its_hour(stack):
    org_a, org_b = f"roll-{uuid.uuid4().hex[:6]}", f"roll-{uuid.uuid4().hex[:6]}"
    async with Api(stack.url) as api:
        key_a, key_b = await api.org_key(org_a), await api.org_key(org_b)
        events = [{"trace_id": "r1", "type": "GENERATION", "occurred_at": "2026-06-01T09:10:00Z",
                   "input_tokens": 5, "output_tokens": 7, "cost": 0.5},
                  {"trace_id": "r1", "type": "GENERATION", "occurred_at": "2026-06-01T09:20:00Z",
                   "status": "STATUS_CODE_ERROR"},
                  {"trace_id": "r2", "type": "tool.executed", "outcome": "ok", "occurred_at": "2026-06-01T10:00:00Z"}]
        assert (await api.post("/v1/events", key_a, events))[0] == 202
        assert (await api.post("/v1/events", key_b, events[:1]))[0] == 202
        since = {"since": "2026-06-01T00:00:00Z"}
        _, a = await eventually(lambda: api.get("/v1/metrics", key_a, **since), lambda r: r[1].get("total") == 3)
        assert [(b["hour"][11:13], b["type"], b["count"], b["errors"], b["total_tokens"], b["cost"])
                for b in a["buckets"]] == [("09", "GENERATION", 2, 1, 12, 0.5), ("10", "tool.executed", 1, 0, 0, 0.0)]
        _, b = await eventually(lambda: api.get("/v1/metrics", key_b, **since), lambda r: r[1].get("total") == 1)
        assert [x["count"] for x in b["buckets"]] == [1]  # org b sees its one event, never org a's

        await eventually(lambda: latest_rollups(stack, org_a), lambda got: got == by_hour(a["buckets"]), timeout=30)

        late = {"trace_id": "r1", "type": "GENERATION", "occurred_at": "2026-06-01T09:59:00Z"}
        assert (await api.post("/v1/events", key_a, [late]))[0] == 202
        _, a = await eventually(lambda: api.get("/v1/metrics", key_a, **since), lambda r: r[1].get("total") == 4)
        got = await eventually(lambda: latest_rollups(stack, org_a), lambda got: got == by_hour(a["buckets"]),
                               timeout=30)
        assert got["2026-06-01T09:00:00.000Z"][0]["count"] == 3
        assert org_b not in str(await latest_rollups(stack, org_a))
