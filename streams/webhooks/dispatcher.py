"""The dispatcher: attempts every delivery when it is due, retries it through one topic per tier,
and dead-letters it after the last.

One plain aiokafka consumer (group ``tracehouse-webhook-dispatch``) reads ``webhook-deliveries``
(first attempts) and every ``webhook-retry-<n>`` topic. A partition whose next delivery is not due
yet is sought back to it and paused until it is, so it never holds up another partition or tier.
Due deliveries are attempted concurrently (at most ``per_endpoint`` at a time per subscription, and
not while the endpoint's circuit breaker is open), signed per Standard Webhooks
(``schemas.webhooks``). After each attempt the dispatcher writes a ``WebhookAttempt`` and, if it
failed, the delivery to the next tier (due after the schedule's delay) or to
``webhook-dead-letter``; a 410 disables the subscription. A partition's offsets are committed only
up to the first delivery whose writes are not all acknowledged, so a crash repeats attempts (with
the same ``webhook-id``) but never skips one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas import kafka_clients
from schemas.codec import DecodeError, decode, encode
from schemas.ssrf import guarded_connector
from schemas.subscriptions import Subscription, SubscriptionView
from schemas.timefmt import now_ms
from schemas.topics import WEBHOOK_ATTEMPTS, WEBHOOK_DEAD_LETTER, WEBHOOK_DELIVERIES, webhook_retry_topic
from schemas.webhooks import Breaker, headers, unexpired

log = logging.getLogger(__name__)

DISPATCH_GROUP = "tracehouse-webhook-dispatch"
#: Deliveries attempted at once, all endpoints together; beyond it the dispatcher stops fetching.
IN_FLIGHT = 1_000
#: How long a delivery waits for a subscription the view has not read yet, before it is put back.
UNKNOWN_SUBSCRIPTION_WAIT = 5.0


@dataclass(frozen=True)
class DispatchSettings:
    """How the dispatcher delivers."""

    schedule: tuple[float, ...]  # seconds before each retry tier
    timeout: float = 10.0
    per_endpoint: int = 4
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    allow_private: bool = False


def tier_topics(schedule: Sequence[float]) -> list[str]:
    """The topics the dispatcher reads: first attempts, then one per retry tier."""
    return [WEBHOOK_DELIVERIES, *(webhook_retry_topic(n) for n in range(1, len(schedule) + 1))]


def tier_of(topic: str) -> int:
    """0 for first attempts, n for ``webhook-retry-<n>``."""
    return 0 if topic == WEBHOOK_DELIVERIES else int(topic.rsplit("-", 1)[1])


@dataclass
class _Endpoint:
    """One subscription's concurrency limit and circuit breaker."""

    slots: asyncio.Semaphore
    breaker: Breaker


@dataclass
class _Partition:
    """Deliveries of one partition in flight, in offset order."""

    inflight: collections.deque[tuple[int, asyncio.Task[None]]] = field(default_factory=collections.deque)


class Dispatcher:
    """Delivers what ``tier_topics(settings.schedule)`` hold to the subscriptions of ``view``."""

    def __init__(self, bootstrap: str, view: SubscriptionView, settings: DispatchSettings,
                 subscriptions_topic: str, max_record_bytes: int = 1_048_576,
                 clock: Callable[[], float] = time.time) -> None:
        self.bootstrap, self.view, self.settings = bootstrap, view, settings
        self.subscriptions_topic = subscriptions_topic
        self.max_record_bytes = max_record_bytes
        self.clock = clock
        self.topics = tier_topics(settings.schedule)
        self._endpoints: dict[str, _Endpoint] = {}

    async def run(self) -> None:
        """Deliver until cancelled, or until the broker fails (the worker starts it again)."""
        consumer = kafka_clients.consumer(self.bootstrap, DISPATCH_GROUP, *self.topics, group=DISPATCH_GROUP,
                                          max_record_bytes=self.max_record_bytes, max_poll_records=200)
        producer = kafka_clients.producer(self.bootstrap, DISPATCH_GROUP, self.max_record_bytes, linger_ms=5)
        connector = guarded_connector(self.settings.allow_private, limit=0)  # every address checked at connect
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.settings.timeout))
        partitions: dict[TopicPartition, _Partition] = collections.defaultdict(_Partition)
        try:
            async with kafka_clients.started(producer, consumer):
                while True:
                    await self._fetch(consumer, producer, session, partitions)
                    await self._commit(consumer, partitions)
        finally:
            for state in partitions.values():
                for _, task in state.inflight:
                    task.cancel()
            await session.close()

    async def _fetch(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, session: aiohttp.ClientSession,
                     partitions: dict[TopicPartition, _Partition]) -> None:
        if sum(len(p.inflight) for p in partitions.values()) >= IN_FLIGHT:
            await asyncio.sleep(0.05)
            return
        batches = await consumer.getmany(timeout_ms=200)
        now = now_ms()
        for tp, records in batches.items():
            for record in records:
                try:
                    delivery = decode(record.value or b"").datum
                except DecodeError as exc:
                    log.warning("unreadable delivery %s[%d]@%d: %s", tp.topic, tp.partition, record.offset, exc)
                    continue
                if delivery["due_at"] > now:  # this partition waits; the others go on
                    consumer.seek(tp, record.offset)
                    consumer.pause(tp)
                    asyncio.get_running_loop().call_later((delivery["due_at"] - now) / 1000, _resume, consumer, tp)
                    break
                task = asyncio.create_task(self._deliver(delivery, tier_of(tp.topic), producer, session))
                partitions[tp].inflight.append((record.offset, task))

    async def _commit(self, consumer: AIOKafkaConsumer, partitions: dict[TopicPartition, _Partition]) -> None:
        """Commit each partition up to its first delivery still in flight; a failed one stops the part."""
        offsets: dict[TopicPartition, int] = {}
        for tp, state in partitions.items():
            while state.inflight and state.inflight[0][1].done():
                offset, task = state.inflight.popleft()
                task.result()  # a write that failed: restart from the committed offsets
                offsets[tp] = offset + 1
        mine = consumer.assignment()
        for tp in [tp for tp in partitions if tp not in mine]:  # revoked: their next owner repeats them
            for _, task in partitions.pop(tp).inflight:
                task.cancel()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in mine}
        if offsets:
            await consumer.commit(offsets)

    async def _deliver(self, delivery: dict[str, Any], tier: int, producer: AIOKafkaProducer,
                       session: aiohttp.ClientSession) -> None:
        subscription = await self._subscription(delivery)
        if subscription is None:
            if self.view.deleted(delivery["org_id"], delivery["subscription_id"]):
                log.info("delivery %s dropped: subscription %s is deleted", delivery["id"],
                         delivery["subscription_id"])
            else:  # the view lags behind the record that created it: try again in a while
                log.warning("delivery %s waits: subscription %s not read yet", delivery["id"],
                            delivery["subscription_id"])
                later = now_ms() + int(UNKNOWN_SUBSCRIPTION_WAIT * 1000)
                await self._send(producer, self.topics[tier], delivery | {"due_at": later}, delivery)
            return
        if subscription["status"] != "active":
            await self._move(delivery, tier, "subscription disabled", producer, retry=False)
            return
        endpoint = self._endpoint(subscription["id"])
        if not endpoint.breaker.allow(self.clock()):  # waits in its tier until the breaker lets one through
            reopen = int((self.clock() + self.settings.breaker_cooldown) * 1000)
            await self._send(producer, self.topics[tier], delivery | {"due_at": reopen}, delivery)
            return
        async with endpoint.slots:
            status, error, latency = await self._attempt(subscription, delivery, session)
        delivered = 200 <= status < 300
        endpoint.breaker.record(delivered, self.clock())
        attempt = delivery["attempts"] + 1
        if delivered:
            outcome = "delivered"
        elif status == 410:
            outcome = "gone"
            await self._disable(subscription, producer)
        else:
            outcome = "retrying" if tier < len(self.settings.schedule) else "dead_lettered"
            await self._move(delivery | {"attempts": attempt}, tier, error or f"HTTP {status}", producer)
        await self._send(producer, WEBHOOK_ATTEMPTS, {
            "delivery_id": delivery["id"], "subscription_id": delivery["subscription_id"],
            "org_id": delivery["org_id"], "event_id": delivery["event_id"], "type": delivery["type"],
            "attempt": attempt, "at": now_ms(), "status_code": status, "error": error[:1000],
            "latency_ms": latency, "outcome": outcome}, delivery, schema="WebhookAttempt")

    async def _subscription(self, delivery: dict[str, Any]) -> Subscription | None:
        """The delivery's subscription; one this view has not read yet (the API created it just before
        enqueuing a test delivery) is waited for up to ``UNKNOWN_SUBSCRIPTION_WAIT`` seconds."""
        org_id, sub_id = delivery["org_id"], delivery["subscription_id"]
        found = self.view.get(org_id, sub_id)
        if found is None and not self.view.deleted(org_id, sub_id):
            await self.view.read_back(sub_id, 1, UNKNOWN_SUBSCRIPTION_WAIT)
            found = self.view.get(org_id, sub_id)
        return found

    async def _attempt(self, subscription: Subscription, delivery: dict[str, Any],
                       session: aiohttp.ClientSession) -> tuple[int, str, int]:
        """POST the delivery once: (status, error, latency ms); status 0 when no answer came."""
        now = self.clock()
        secrets = [s["secret"] for s in unexpired(subscription["secrets"], int(now * 1000))]
        body = delivery["payload"]
        started = time.monotonic()
        try:
            async with session.post(subscription["url"], data=body, allow_redirects=False,
                                    headers=headers(secrets, delivery["id"], int(now), body)) as response:
                await response.read()
                return response.status, "", int((time.monotonic() - started) * 1000)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            return 0, f"{type(exc).__name__}: {exc}", int((time.monotonic() - started) * 1000)

    async def _move(self, delivery: dict[str, Any], tier: int, error: str, producer: AIOKafkaProducer, *,
                    retry: bool = True) -> None:
        """To the next tier (due after its delay), or to the dead letter after the last."""
        moved = delivery | {"last_error": error[:1000]}
        if retry and tier < len(self.settings.schedule):
            due = now_ms() + int(self.settings.schedule[tier] * 1000)
            await self._send(producer, self.topics[tier + 1], moved | {"due_at": due}, delivery)
        else:
            await self._send(producer, WEBHOOK_DEAD_LETTER, moved, delivery)

    async def _disable(self, subscription: Subscription, producer: AIOKafkaProducer) -> None:
        """A 410 Gone: the receiver asks not to be called again."""
        changed = subscription | {"status": "disabled", "disabled_reason": "the endpoint answered 410 Gone",
                                  "version": subscription["version"] + 1, "updated_at": now_ms()}
        self.view.apply(changed)
        await (await producer.send(self.subscriptions_topic, encode("WebhookSubscription", changed),
                                   key=subscription["id"].encode()))

    async def _send(self, producer: AIOKafkaProducer, topic: str, datum: dict[str, Any], delivery: dict[str, Any],
                    schema: str = "WebhookDelivery") -> None:
        await (await producer.send(topic, encode(schema, datum), key=delivery["subscription_id"].encode()))

    def _endpoint(self, subscription_id: str) -> _Endpoint:
        endpoint = self._endpoints.get(subscription_id)
        if endpoint is None:
            endpoint = self._endpoints[subscription_id] = _Endpoint(
                asyncio.Semaphore(self.settings.per_endpoint),
                Breaker(self.settings.breaker_failures, self.settings.breaker_cooldown))
        return endpoint


def _resume(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
    if tp in consumer.assignment():
        consumer.resume(tp)
