"""Webhook subscriptions through the whole service: create, list, patch, rotate and delete; every
change is one record on the compacted ``webhook-subscriptions`` topic (which the sink consumes and
the trimmer leaves whole, so a restarted reader finds every subscription again) and one entry of
the org's chained audit log."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from schemas.codec import decode
from schemas.subscriptions import SubscriptionReader, SubscriptionView
from schemas.topics import WEBHOOK_SUBSCRIPTIONS
from streams.sink import SINK_GROUP
from tests.support.service import Api, eventually, uid

pytestmark = pytest.mark.slow

URL = "https://93.184.215.14/hooks/e2e"
PARTITIONS = 4  # TRACEHOUSE_TOPIC_PARTITIONS' default, what the stack runs with


async def test_subscriptions_through_the_worker_and_the_audit_log(stack):
    bootstrap = stack.bootstrap
    async with Api(stack.url) as api:
        org = uid("wh-e2e")
        key = await api.org_key(org, ["webhooks:manage", "audit:read"])
        status, created = await api.post("/v1/webhooks", key, {"url": URL, "event_types": ["trace.completed"],
                                                               "filter": {"type": "SPAN"}})
        assert status == 201, created
        status, kept = await api.post("/v1/webhooks", key, {"url": URL, "event_types": ["webhook.test"]})
        assert status == 201, kept
        # read back before the answer: a GET right after sees it
        status, got = await api.get(f"/v1/webhooks/{created['id']}", key)
        assert status == 200 and got["filter"] == {"type": "SPAN"} and "secret" not in got
        status, listed = await api.get("/v1/webhooks", key)
        assert status == 200 and {w["id"] for w in listed["webhooks"]} == {created["id"], kept["id"]}

        status, patched = await api.request("PATCH", f"/v1/webhooks/{created['id']}", key,
                                            json={"status": "disabled", "description": "paused"})
        assert status == 200 and patched["status"] == "disabled"
        assert (await api.get(f"/v1/webhooks/{created['id']}", key))[1]["description"] == "paused"
        status, rotated = await api.post(f"/v1/webhooks/{created['id']}/rotate-secret", key)
        assert status == 200 and rotated["secret"] != created["secret"]
        assert (await api.request("DELETE", f"/v1/webhooks/{created['id']}", key))[0] == 204
        assert (await api.get(f"/v1/webhooks/{created['id']}", key))[0] == 404
        other = await api.org_key(uid("wh-e2e-other"), ["webhooks:manage"])
        assert (await api.get(f"/v1/webhooks/{kept['id']}", other))[0] == 404

        # five changes, five audit entries (after the key's creation), chained by the worker and verifiable
        async def audit() -> tuple[int, dict]:
            return await api.get("/v1/audit/verify", key)
        _, verdict = await eventually(audit, lambda r: r[0] == 200 and r[1]["event_count"] >= 1 + 5)
        assert verdict["valid"] is True and verdict["event_count"] == 1 + 5

    # the sink consumes the topic: its group commits up to the end of every partition
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        tps = [TopicPartition(WEBHOOK_SUBSCRIPTIONS, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ours: list[dict] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                ours += [d for r in records if (d := decode(r.value).datum)["org_id"] == org]
        # two creates, a patch, a rotation, a deletion: each the whole state, one version higher
        assert sorted((d["id"] == created["id"], d["version"], d["status"]) for d in ours) == [
            (False, 1, "active"), (True, 1, "active"), (True, 2, "disabled"), (True, 3, "disabled"),
            (True, 4, "deleted")]

        async def committed() -> dict[TopicPartition, int]:
            offsets = await admin.list_consumer_group_offsets(SINK_GROUP, partitions=tps)
            return {tp: meta.offset for tp, meta in offsets.items()}
        await eventually(committed, lambda c: all(c.get(tp, -1) >= end for tp, end in ends.items() if end))
        await asyncio.sleep(5)  # two rounds of the trimmer (TRACEHOUSE_TRIM_INTERVAL_SECONDS=2): none applies here
        assert set((await consumer.beginning_offsets(tps)).values()) == {0}
        (config,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, WEBHOOK_SUBSCRIPTIONS)])
        entries = {name: value for name, value, *_ in config.resources[0][4]}
        assert entries["cleanup.policy"] == "compact"
    finally:
        await admin.close()
        await consumer.stop()

    # what a restarted API (or the dispatcher) reads from the topic: every subscription, secrets included
    view = SubscriptionView()
    reader = SubscriptionReader(bootstrap, WEBHOOK_SUBSCRIPTIONS, PARTITIONS, view)
    await reader.start()
    try:
        await asyncio.wait_for(view.ready.wait(), 30)
        assert view.get(org, created["id"]) is None  # deleted
        (current,) = view.of_org(org)
        assert current["id"] == kept["id"] and current["version"] == 1
        assert current["secrets"] == [{"secret": kept["secret"], "expires_at": None}]
    finally:
        await reader.stop()
