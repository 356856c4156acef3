"""Fan-out: each webhook event becomes one delivery per subscription it goes to.

A plain aiokafka consumer in group ``tracehouse-webhooks`` reads ``webhook-events`` in batches
(the sink's batch, flush, commit): it writes a ``WebhookDelivery`` per matching subscription to
``webhook-deliveries`` (keyed by subscription id, so one endpoint's deliveries keep their order),
waits until the broker acknowledged them all, then commits. A crash in between fans the batch out
again: the deliveries keep their ids (``schemas.webhooks.delivery_id``), so a receiver sees the
same ``webhook-id`` and can drop the repeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiokafka import ConsumerRecord

from schemas import kafka_clients
from schemas.codec import DecodeError, decode, encode
from schemas.subscriptions import SubscriptionView
from schemas.timefmt import now_ms
from schemas.webhooks import delivery_id, payload

log = logging.getLogger(__name__)

FANOUT_GROUP = "tracehouse-webhooks"


def deliveries_of(event: dict[str, Any], view: SubscriptionView, now: int) -> list[tuple[bytes, bytes]]:
    """(key, WebhookDelivery record) for every subscription ``event`` (a WebhookEvent datum) goes to."""
    data = json.loads(event["data"])
    attributes = {name: data[name] for name in ("type", "class", "agent_id") if name in data}
    body = payload(event["type"], event["occurred_at"], data)
    return [(sub["id"].encode(), encode("WebhookDelivery", {
        "id": delivery_id(event["id"], sub["id"]), "subscription_id": sub["id"], "org_id": event["org_id"],
        "event_id": event["id"], "type": event["type"], "payload": body, "attempts": 0, "due_at": now,
        "created_at": now, "last_error": ""}))
        for sub in view.matching(event["org_id"], event["type"], attributes)]


class Fanout:
    """``events_topic`` -> ``deliveries_topic``, through the subscriptions of ``view``."""

    def __init__(self, bootstrap: str, events_topic: str, deliveries_topic: str, view: SubscriptionView,
                 max_record_bytes: int = 1_048_576, batch_records: int = 500) -> None:
        self.bootstrap, self.events_topic, self.deliveries_topic = bootstrap, events_topic, deliveries_topic
        self.view, self.max_record_bytes, self.batch_records = view, max_record_bytes, batch_records

    async def run(self) -> None:
        """Fan out until cancelled or until the broker fails (the worker starts it again)."""
        consumer = kafka_clients.consumer(self.bootstrap, FANOUT_GROUP, self.events_topic, group=FANOUT_GROUP,
                                          max_poll_records=self.batch_records,
                                          max_record_bytes=self.max_record_bytes)
        producer = kafka_clients.producer(self.bootstrap, FANOUT_GROUP, self.max_record_bytes, linger_ms=5)
        async with kafka_clients.started(producer, consumer):
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                records = [r for batch in batches.values() for r in batch]
                if records:
                    await self._fan_out(records, producer)
                    await kafka_clients.commit_batch(consumer, records)

    async def _fan_out(self, records: list[ConsumerRecord], producer: Any) -> None:
        sent = []
        now = now_ms()
        for record in records:
            try:
                event = decode(record.value or b"").datum
                deliveries = deliveries_of(event, self.view, now)
            except (DecodeError, KeyError, ValueError) as exc:
                log.warning("unreadable webhook event %s[%d]@%d: %s", record.topic, record.partition, record.offset,
                            exc)
                continue
            for key, value in deliveries:
                sent.append(await producer.send(self.deliveries_topic, value, key=key))
        await asyncio.gather(*sent)  # acknowledged before the commit
