"""Webhook fan-out and dispatch against a real broker and real receivers on loopback: retries at the
scheduled delays with a stable webhook-id, dead letters, 410, signatures an independent library
verifies, and a slow endpoint that holds up no other."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks.webhooks import Webhook

from schemas.codec import decode, encode
from schemas.subscriptions import SubscriptionReader, SubscriptionView
from schemas.timefmt import now_ms
from schemas.topics import (
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DEAD_LETTER,
    WEBHOOK_DELIVERIES,
    WEBHOOK_EVENTS,
    WEBHOOK_SUBSCRIPTIONS,
    webhook_retry_topic,
)
from schemas.webhooks import new_secret
from streams.embedded import fetch_throttle, group_generation
from streams.topics import ensure_topics
from streams.webhooks.dispatcher import Dispatcher, DispatchSettings
from streams.webhooks.fanout import Fanout
from tracehouse.settings import Settings

SCHEDULE = (0.2, 0.4)  # seconds before retry 1 and retry 2
PARTITIONS = Settings().topic_partitions  # the topics are shared with the other tests of the session


@dataclass
class Receiver:
    """A loopback endpoint answering with ``statuses`` in turn (then the last one), after ``delay`` s."""

    statuses: list[int]
    delay: float = 0.0
    calls: list[tuple[float, dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((time.monotonic(), dict(request.headers), await request.read()))
        await asyncio.sleep(self.delay)
        status = self.statuses[min(len(self.calls) - 1, len(self.statuses) - 1)]
        return web.Response(status=status)


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with TestServer(app) as server:
        yield str(server.make_url("/hook"))


def subscription(org: str, url: str, secret: str, types: list[str] | None = None) -> dict[str, Any]:
    now = now_ms()
    return {"id": f"wh_{uuid.uuid4().hex[:12]}", "org_id": org, "url": url,
            "event_types": types or ["trace.completed"], "description": "", "filter": {},
            "secrets": [{"secret": secret, "expires_at": None}], "status": "active", "disabled_reason": "",
            "created_at": now, "updated_at": now, "version": 1}


def completed(org: str, trace: str) -> bytes:
    return encode("WebhookEvent", {"id": f"trace.completed:{org}:{trace}", "type": "trace.completed",
                                   "org_id": org, "occurred_at": now_ms(),
                                   "data": json.dumps({"trace_id": trace, "final_outcome": "executed"})})


@pytest.fixture
async def dispatching(broker) -> AsyncIterator[Callable[..., Any]]:
    """Start a view, the fan-out and the dispatcher; returns ``publish(topic, key, value)``."""
    group_generation.install()
    topics = (WEBHOOK_SUBSCRIPTIONS, WEBHOOK_EVENTS, WEBHOOK_DELIVERIES, WEBHOOK_ATTEMPTS, WEBHOOK_DEAD_LETTER,
              *(webhook_retry_topic(n) for n in (1, 2)))
    await ensure_topics(broker.bootstrap, PARTITIONS, topics=topics)
    tasks: list[asyncio.Task[None]] = []
    readers: list[SubscriptionReader] = []

    async def start() -> None:
        for role in ("fanout", "dispatch"):
            view = SubscriptionView()
            reader = SubscriptionReader(broker.bootstrap, WEBHOOK_SUBSCRIPTIONS, PARTITIONS, view)
            await reader.start()
            readers.append(reader)
            await view.ready.wait()
            part = (Fanout(broker.bootstrap, [WEBHOOK_EVENTS], WEBHOOK_DELIVERIES, view, reader.fresh)
                    if role == "fanout" else
                    Dispatcher(broker.bootstrap, view, DispatchSettings(SCHEDULE, timeout=2.0, allow_private=True,
                                                                        breaker_failures=100),
                               WEBHOOK_SUBSCRIPTIONS))
            tasks.append(asyncio.create_task(part.run()))

    yield start
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for reader in readers:
        await reader.stop()


async def publish(bootstrap: str, topic: str, key: str, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    async with AIOKafkaProducer(bootstrap_servers=bootstrap) as producer:
        await producer.send_and_wait(topic, value, key=key.encode())


PUBLISHER = """
import asyncio, sys
from aiokafka import AIOKafkaProducer

async def main(bootstrap, topic, key, value):
    async with AIOKafkaProducer(bootstrap_servers=bootstrap) as producer:
        await producer.send_and_wait(topic, bytes.fromhex(value), key=key.encode())

asyncio.run(main(*sys.argv[1:]))
"""


async def publish_elsewhere(bootstrap: str, topic: str, key: str, value: bytes) -> None:
    """``publish`` from another process (whose writes wake none of this process's consumers)."""
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", PUBLISHER, bootstrap, topic, key, value.hex())
    assert await asyncio.wait_for(child.wait(), 60) == 0


async def until(probe: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def records_of(bootstrap: str, topic: str, subscription_id: str) -> list[dict]:
    """Every record of ``topic`` keyed by ``subscription_id``, decoded, in offset order per partition."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                out += [decode(r.value).datum for r in batch if r.key == subscription_id.encode()]
        return out
    finally:
        await consumer.stop()


async def test_a_receiver_failing_twice_gets_one_success_after_two_retries_with_one_id(broker, dispatching):
    org, secret = f"org-{uuid.uuid4().hex[:6]}", new_secret()
    receiver = Receiver([500, 503, 200])
    async with receiving(receiver) as url:
        sub = subscription(org, url, secret)
        await publish(broker.bootstrap, WEBHOOK_SUBSCRIPTIONS, sub["id"], encode("WebhookSubscription", sub))
        await dispatching()
        await publish(broker.bootstrap, WEBHOOK_EVENTS, org, completed(org, "t1"))
        await until(lambda: len(receiver.calls) >= 3)
        await asyncio.sleep(0.5)  # nothing more comes
    assert len(receiver.calls) == 3
    (t0, h0, body), (t1, h1, _), (t2, h2, _) = receiver.calls
    assert h0["webhook-id"] == h1["webhook-id"] == h2["webhook-id"]
    assert t1 - t0 >= SCHEDULE[0] and t2 - t1 >= SCHEDULE[1]  # each retry waited its tier's delay
    for _, h, b in receiver.calls:  # an independent Standard Webhooks implementation verifies every one
        Webhook(secret).verify(b, {k.lower(): v for k, v in h.items()})
    sent = json.loads(body)
    assert sent["type"] == "trace.completed" and sent["data"]["trace_id"] == "t1" and "timestamp" in sent
    attempts = await until(lambda: _attempts(broker.bootstrap, sub["id"], 3))
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in attempts] == [
        (1, 500, "retrying"), (2, 503, "retrying"), (3, 200, "delivered")]
    assert await records_of(broker.bootstrap, WEBHOOK_DEAD_LETTER, sub["id"]) == []


async def _attempts(bootstrap: str, subscription_id: str, n: int) -> list[dict] | None:
    attempts = sorted(await records_of(bootstrap, WEBHOOK_ATTEMPTS, subscription_id), key=lambda a: a["attempt"])
    return attempts if len(attempts) >= n else None


async def test_an_always_failing_receiver_ends_in_the_dead_letter_and_410_disables(broker, dispatching):
    org = f"org-{uuid.uuid4().hex[:6]}"
    failing, gone = Receiver([500]), Receiver([410])
    async with receiving(failing) as failing_url, receiving(gone) as gone_url:
        dead = subscription(org, failing_url, new_secret())
        leaving = subscription(org, gone_url, new_secret())
        for sub in (dead, leaving):
            await publish(broker.bootstrap, WEBHOOK_SUBSCRIPTIONS, sub["id"], encode("WebhookSubscription", sub))
        await dispatching()
        await publish(broker.bootstrap, WEBHOOK_EVENTS, org, completed(org, "t1"))
        letters = await until(lambda: records_of(broker.bootstrap, WEBHOOK_DEAD_LETTER, dead["id"]))
        assert len(failing.calls) == 1 + len(SCHEDULE)
        assert letters[0]["attempts"] == 3 and letters[0]["last_error"] == "HTTP 500"
        assert letters[0]["id"] == failing.calls[0][1]["webhook-id"]
        changes = await until(lambda: _disabled(broker.bootstrap, leaving["id"]))
        assert changes["disabled_reason"] and len(gone.calls) == 1
        await publish(broker.bootstrap, WEBHOOK_EVENTS, org, completed(org, "t2"))
        await until(lambda: len(failing.calls) >= 1 + len(SCHEDULE) + 1)
        await asyncio.sleep(0.3)
        assert len(gone.calls) == 1  # a disabled subscription is not called again


async def _disabled(bootstrap: str, subscription_id: str) -> dict | None:
    changes = await records_of(bootstrap, WEBHOOK_SUBSCRIPTIONS, subscription_id)
    return next((c for c in changes if c["status"] == "disabled"), None)


async def test_a_slow_endpoint_holds_up_no_other(broker, dispatching):
    org = f"org-{uuid.uuid4().hex[:6]}"
    slow, fast = Receiver([200], delay=1.5), Receiver([200])
    async with receiving(slow) as slow_url, receiving(fast) as fast_url:
        subs = [subscription(org, slow_url, new_secret()), subscription(org, fast_url, new_secret())]
        for sub in subs:
            await publish(broker.bootstrap, WEBHOOK_SUBSCRIPTIONS, sub["id"], encode("WebhookSubscription", sub))
        await dispatching()
        for n in range(12):
            await publish(broker.bootstrap, WEBHOOK_EVENTS, org, completed(org, f"t{n}"))
        await until(lambda: len(fast.calls) == 12, timeout=10)
        assert len(slow.calls) < 12  # 4 at a time, 1.5 s each: the fast one finished long before
        await until(lambda: len(slow.calls) == 12, timeout=20)


async def test_a_subscription_written_by_another_process_applies_to_the_next_event(broker, dispatching):
    """Before each batch the fan-out reads the subscriptions up to their end, so an event accepted
    after a subscription was written reaches it, even though the subscription came from another
    process and this process's reader of them idles (here up to 2 s between fetches)."""
    was = fetch_throttle.installed()
    fetch_throttle.install(0.05, 2.0)
    try:
        await dispatching()
        await asyncio.sleep(4)  # every reader has backed off to 2 s between fetches
        org, receiver = f"org-{uuid.uuid4().hex[:6]}", Receiver([200])
        async with receiving(receiver) as url:
            sub = subscription(org, url, new_secret())
            await publish_elsewhere(broker.bootstrap, WEBHOOK_SUBSCRIPTIONS, sub["id"],
                                    encode("WebhookSubscription", sub))
            # written in this process: the fan-out wakes at once, its view of the subscriptions not yet
            await publish(broker.bootstrap, WEBHOOK_EVENTS, org, completed(org, "t1"))
            await until(lambda: receiver.calls)
        assert json.loads(receiver.calls[0][2])["data"]["trace_id"] == "t1"
    finally:
        fetch_throttle.install() if was else fetch_throttle.uninstall()
