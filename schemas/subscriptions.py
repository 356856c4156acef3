"""A view of the webhook subscriptions: every record of ``webhook-subscriptions``, read into memory
from the topic's beginning (the newest version of each id, secrets included). Each API process
keeps one; so can the dispatcher.

The API's routes answer from this view and write through the topic: a change is published, then
the route waits until this process's reader has read it back, so a GET right after a POST or
PATCH sees the change, in the order every other reader of the topic (the sink, the
dispatcher) sees it. Waiting for ClickHouse instead would add the sink's flush interval
(~1 s) to every write and fail while the sink is away. A subscription is a few hundred bytes:
every org's fit in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition

from schemas import kafka_clients
from schemas.codec import DecodeError, decode
from schemas.retry import BROKER_READS, retrying
from schemas.webhooks import Filter

log = logging.getLogger(__name__)

Subscription = dict[str, Any]  # a ``WebhookSubscription`` datum


class SubscriptionView:
    """The newest version of every subscription (deleted ones too, which ``get`` hides).

    ``ready`` is set once the records that were on the topic when the reader started are read;
    ``lock`` serializes this process's writes (each computes its version from the view)."""

    def __init__(self) -> None:
        self._by_org: dict[str, dict[str, Subscription]] = defaultdict(dict)
        self._org_of: dict[str, str] = {}
        self._wanted: dict[str, int] = {}  # event type -> active subscriptions taking it
        self._filters: dict[str, tuple[int, Filter]] = {}  # id -> (version, its filter parsed)
        self._waiting: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self.ready = asyncio.Event()
        self.lock = asyncio.Lock()

    def apply(self, datum: Subscription) -> None:
        """Take a record read from the topic; an older version than the one held is ignored."""
        sub_id = datum["id"]
        org_id = self._org_of.get(sub_id)
        held = self._by_org[org_id].get(sub_id) if org_id is not None else None
        if held is not None and (held["org_id"] != datum["org_id"] or held["version"] > datum["version"]):
            if held["org_id"] != datum["org_id"]:
                log.warning("subscription %s: a record of org %r ignored, it belongs to %r",
                            sub_id, datum["org_id"], held["org_id"])
            return
        self._org_of[sub_id] = datum["org_id"]
        for sub, step in ((held, -1), (datum, 1)):
            if sub is not None and sub["status"] == "active":
                for event_type in sub["event_types"]:
                    self._wanted[event_type] = self._wanted.get(event_type, 0) + step
        self._by_org[datum["org_id"]][sub_id] = datum
        waiting = self._waiting.pop(sub_id, [])
        still = [(v, f) for v, f in waiting if v > datum["version"]]
        for version, future in waiting:
            if version <= datum["version"] and not future.done():
                future.set_result(None)
        if still:
            self._waiting[sub_id] = still

    def apply_record(self, value: bytes) -> None:
        """Take a Kafka record's value; one that is not a subscription is logged and skipped."""
        try:
            decoded = decode(value)
        except DecodeError as exc:
            log.warning("unreadable webhook subscription record: %s", exc)
            return
        if decoded.schema != "WebhookSubscription":
            log.warning("a %s record on the webhook subscriptions topic skipped", decoded.schema)
            return
        self.apply(decoded.datum)

    def get(self, org_id: str, sub_id: str) -> Subscription | None:
        """The org's subscription, None when there is none (another org's) or it was deleted."""
        found = self._by_org.get(org_id, {}).get(sub_id)
        return None if found is None or found["status"] == "deleted" else found

    def deleted(self, org_id: str, sub_id: str) -> bool:
        """Whether the org's subscription ``sub_id`` is known and deleted."""
        found = self._by_org.get(org_id, {}).get(sub_id)
        return found is not None and found["status"] == "deleted"

    def of_org(self, org_id: str) -> list[Subscription]:
        """The org's subscriptions that are not deleted, newest first by (created_at, id)."""
        subs = [s for s in self._by_org.get(org_id, {}).values() if s["status"] != "deleted"]
        return sorted(subs, key=lambda s: (s["created_at"], s["id"]), reverse=True)

    def matching(self, org_id: str, event_type: str, attributes: Mapping[str, Any]) -> list[Subscription]:
        """The org's active subscriptions to ``event_type`` whose filter lets an event with ``attributes``
        (its type, class and agent_id, those it has) through."""
        return [s for s in self._by_org.get(org_id, {}).values()
                if s["status"] == "active" and event_type in s["event_types"] and self.passes(s, attributes)]

    def passes(self, subscription: Subscription, attributes: Mapping[str, Any]) -> bool:
        """Whether ``subscription``'s filter lets an event with ``attributes`` through (the filter is
        parsed once per version: the fan-out asks for every event of a trace batch)."""
        if not subscription["filter"]:
            return True
        version, parsed = self._filters.get(subscription["id"], (None, None))
        if parsed is None or version != subscription["version"]:
            parsed = Filter.from_json(subscription["filter"])
            self._filters[subscription["id"]] = (subscription["version"], parsed)
        return parsed.matches(attributes)

    def wanted(self, event_type: str) -> bool:
        """Whether any active subscription, of any org, takes ``event_type``."""
        return self._wanted.get(event_type, 0) > 0

    async def read_back(self, sub_id: str, version: int, timeout: float) -> bool:
        """Wait until ``version`` (or a later one) of ``sub_id`` was applied; False after ``timeout``."""
        org_id = self._org_of.get(sub_id)
        held = self._by_org[org_id].get(sub_id) if org_id is not None else None
        if held is not None and held["version"] >= version:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(sub_id, []).append((version, future))
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiting = [(v, f) for v, f in self._waiting.get(sub_id, []) if f is not future]
            if waiting:
                self._waiting[sub_id] = waiting
            else:
                self._waiting.pop(sub_id, None)


class SubscriptionReader:
    """Reads ``topic`` (all ``partitions``, no consumer group, from the beginning) into ``view``."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, view: SubscriptionView,
                 max_record_bytes: int = 1_048_576, part: str = "tracehouse-api-webhooks") -> None:
        self._consumer = kafka_clients.consumer(bootstrap, part, max_record_bytes=max_record_bytes)
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.view = view
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._progress = asyncio.Event()  # set (and replaced) after every read

    async def start(self) -> None:
        """Start reading in the background (the API starts even while the broker is away: the
        webhook routes answer 503 until the view is read)."""
        self._task = asyncio.create_task(self._read(), name="webhook-subscriptions")

    async def _connect(self) -> dict[TopicPartition, int]:
        """Start the consumer at the beginning of every partition; the end offsets found."""
        if not self._started:
            await self._consumer.start()
            self._started = True
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)
        return await self._consumer.end_offsets(self._partitions)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._started:
            await self._consumer.stop()

    async def _caught_up(self, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return False
        return True

    async def fresh(self) -> None:
        """Return once the view holds every subscription change written before this call: what
        the fan-out awaits before each batch, so that an event accepted after a subscription's 201
        reaches it even in another process."""
        ends = await retrying(lambda: self._consumer.end_offsets(self._partitions), BROKER_READS,
                              "reading the webhook subscriptions' end offsets")
        while True:
            progressed = self._progress
            if await self._caught_up(ends):
                return
            await progressed.wait()

    async def _read(self) -> None:
        ends = await retrying(self._connect, BROKER_READS, "starting the webhook subscriptions' reader")
        while True:
            if not self.view.ready.is_set() and await self._caught_up(ends):
                self.view.ready.set()
                log.info("webhook subscriptions read: %d partitions", len(ends))
            batches = await retrying(lambda: self._consumer.getmany(timeout_ms=1000), BROKER_READS,
                                     "reading webhook subscriptions")
            for records in batches.values():
                for record in records:
                    self.view.apply_record(record.value or b"")
            self._progress.set()
            self._progress = asyncio.Event()
