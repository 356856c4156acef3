"""Fan-out: each webhook event becomes one delivery per subscription it goes to.

A plain aiokafka consumer in group ``tracehouse-webhooks`` reads ``webhook-events`` (notices:
``trace.completed``, ``approval.requested``) and the event records themselves (``sealed-events``, or
the raw topics when chaining is off) for ``trace.events`` (one delivery per trace record, carrying
its events with seq and hash, so a warehouse loads batches) and ``audit.event.created`` (one per
audit event). It works in batches (the sink's batch, flush, commit): it writes a ``WebhookDelivery``
per matching subscription to ``webhook-deliveries`` (keyed by subscription id, so one endpoint's
deliveries keep their order), waits until the broker acknowledged them all, then commits. A crash in
between fans the batch out again with the same delivery ids (``schemas.webhooks.delivery_id``), so
a receiver sees the same ``webhook-id`` and can drop the repeat. Records are decoded only while some
subscription wants what they carry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRecord

from schemas import kafka_clients
from schemas.codec import DecodeError, decode, encode, schema_of
from schemas.event_json import event_json
from schemas.integrity import as_link
from schemas.subscriptions import SubscriptionView
from schemas.timefmt import now_ms
from schemas.topics import is_padding
from schemas.webhooks import new_delivery

log = logging.getLogger(__name__)

FANOUT_GROUP = "tracehouse-webhooks"
TRACE_EVENTS_TYPE, AUDIT_EVENT_TYPE = "trace.events", "audit.event.created"
#: The schemas of records that carry trace events, and of those that carry audit events.
TRACE_RECORDS = ("SealedTraceEventBatch", "TraceEventBatch", "TraceEvent")
AUDIT_RECORDS = ("SealedAuditEventBatch", "AuditEventBatch", "AuditEvent")

#: A notice or event to deliver: (id, type, org_id, occurred_at ms, data, filter attributes).
Notice = tuple[str, str, str, int, dict[str, Any], dict[str, Any]]


def _attributes(data: dict[str, Any]) -> dict[str, Any]:
    return {name: data[name] for name in ("type", "class", "agent_id") if data.get(name) is not None}


def _linked(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch's events with their links (seq, prev_hash, hash, hex, and hash_version) when it is sealed,
    each as its link holds it (``schemas.integrity.as_link``: no app_id member when it is null)."""
    events = batch["events"] if "events" in batch else [batch]
    if "hashes" not in batch:
        return [as_link(e) for e in events]
    prev = batch["prev_hash"]
    linked = []
    for i, (event, digest) in enumerate(zip(events, batch["hashes"], strict=True)):
        linked.append(as_link(event) | {"seq": batch["first_seq"] + i, "prev_hash": prev.hex(), "hash": digest.hex(),
                                     "hash_version": batch["hash_version"]})
        prev = digest
    return linked


def notices_of(value: bytes, view: SubscriptionView) -> list[Notice]:
    """What record ``value`` (a WebhookEvent, or a trace or audit event record) tells subscribers."""
    name = schema_of(value)
    if name == "WebhookEvent":
        event = decode(value).datum
        data = json.loads(event["data"])
        return [(event["id"], event["type"], event["org_id"], event["occurred_at"], data, _attributes(data))]
    if name in TRACE_RECORDS and view.wanted(TRACE_EVENTS_TYPE):
        batch = decode(value).datum
        events = [event_json("TraceEvent", e) for e in _linked(batch)]
        first = events[0]
        key = f"{TRACE_EVENTS_TYPE}:{first['org_id']}:{first['trace_id']}:{first.get('seq', first['event_id'])}"
        data = {"trace_id": first["trace_id"], "events": events}
        return [(key, TRACE_EVENTS_TYPE, first["org_id"], batch.get("events", [batch])[0]["occurred_at"], data, {})]
    if name in AUDIT_RECORDS and view.wanted(AUDIT_EVENT_TYPE):
        raw = decode(value).datum
        return [(f"{AUDIT_EVENT_TYPE}:{e['org_id']}:{e['id']}", AUDIT_EVENT_TYPE, e["org_id"], e["occurred_at"],
                 event_json("AuditEvent", e), {}) for e in _linked(raw)]
    return []


def deliveries_of(notice: Notice, view: SubscriptionView, now: int) -> list[tuple[bytes, bytes]]:
    """(key, WebhookDelivery record) for every subscription ``notice`` goes to. A ``trace.events``
    delivery carries only the events its subscription's filter lets through (none: no delivery)."""
    event_id, event_type, org_id, occurred_at, data, attributes = notice
    out = []
    for sub in view.matching(org_id, event_type, attributes):
        sent = data
        if event_type == TRACE_EVENTS_TYPE and sub["filter"]:
            kept = [e for e in data["events"] if view.passes(sub, _attributes(e))]
            if not kept:
                continue
            sent = data | {"events": kept}
        out.append((sub["id"].encode(), encode("WebhookDelivery", new_delivery(
            event_id, event_type, org_id, sub["id"], occurred_at, sent, now))))
    return out


class Fanout:
    """``topics`` -> ``deliveries_topic``, through the subscriptions of ``view``; ``fresh`` (the view's
    ``SubscriptionReader.fresh``) is awaited before each batch."""

    def __init__(self, bootstrap: str, topics: list[str], deliveries_topic: str, view: SubscriptionView,
                 fresh: Callable[[], Awaitable[None]], max_record_bytes: int = 1_048_576,
                 batch_records: int = 500) -> None:
        self.bootstrap, self.topics, self.deliveries_topic = bootstrap, topics, deliveries_topic
        self.view, self.fresh = view, fresh
        self.max_record_bytes, self.batch_records = max_record_bytes, batch_records

    async def run(self) -> None:
        """Fan out until cancelled or until the broker fails (the worker starts it again)."""
        consumer = kafka_clients.consumer(self.bootstrap, FANOUT_GROUP, *self.topics, group=FANOUT_GROUP,
                                          max_poll_records=self.batch_records,
                                          max_record_bytes=self.max_record_bytes)
        producer = kafka_clients.producer(self.bootstrap, FANOUT_GROUP, self.max_record_bytes, linger_ms=5)
        async with kafka_clients.started(producer, consumer):
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                records = [r for batch in batches.values() for r in batch]
                if records:
                    await self.fresh()  # a subscription made before these events were accepted applies
                    await self._fan_out(records, producer)
                    await kafka_clients.commit_batch(consumer, records)

    async def _fan_out(self, records: list[ConsumerRecord], producer: Any) -> None:
        sent = []
        now = now_ms()
        for record in records:
            if is_padding(record.headers) or not record.value:
                continue
            try:
                deliveries = [d for n in notices_of(record.value, self.view) for d in deliveries_of(n, self.view, now)]
            except (DecodeError, KeyError, ValueError) as exc:
                log.warning("unreadable record %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
                continue
            for key, value in deliveries:
                sent.append(await producer.send(self.deliveries_topic, value, key=key))
        await asyncio.gather(*sent)  # acknowledged before the commit
