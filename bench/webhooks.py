"""Webhook deliveries on this machine: deliveries/s to a local receiver subscribed to ``trace.events``
and ``trace.completed`` while events are ingested over HTTP, and ingest -> delivery latency.

The receiver (aiohttp, in the bench process) answers 204 at once. Throughput: ``BENCH_WEBHOOK_EVENTS``
events of one event per trace (200 per request, posted by 8 clients) are ingested, each trace record
one ``trace.events`` delivery, and the clock stops when the receiver has them all. Latency: one
1-event trace posted at a time; from the
202 to the delivery of its ``trace.events``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from bench.stats import pct
from schemas.timefmt import format_ms, now_ms
from streams.embedded.broker import EmbeddedBroker, free_port
from tests.support.service import Api, Service, eventually

EVENTS = int(os.environ.get("BENCH_WEBHOOK_EVENTS", "20000"))
#: Notices written straight to ``webhook-events`` for the dispatch-alone figure.
NOTICES = int(os.environ.get("BENCH_WEBHOOK_NOTICES", "10000"))


class Receiver:
    def __init__(self) -> None:
        self.deliveries = 0
        self.events = 0
        self.arrived: dict[str, float] = {}  # trace_id -> when its first trace.events delivery arrived

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.deliveries += 1
        if body["type"] == "trace.events":
            self.events += len(body["data"]["events"])
            self.arrived.setdefault(body["data"]["trace_id"], time.monotonic())
        return web.Response(status=204)


async def serve(receiver: Receiver) -> tuple[web.AppRunner, int]:
    """``receiver`` at ``http://127.0.0.1:<port>/hook``; the runner to clean up, and the port."""
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def run(work: Path, report: Callable[[str], None], env: dict[str, str]) -> None:
    """Report deliveries/s and ingest -> delivery latency."""
    receiver = Receiver()
    runner, port = await serve(receiver)
    broker = EmbeddedBroker(work / "broker", "127.0.0.1", free_port())
    broker.start()
    service = Service(work, broker.port, TRACEHOUSE_CHAIN_EVENTS="true",
                      TRACEHOUSE_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true", **env)
    service.start()
    try:
        async with Api(service.url) as api:
            key = await api.org_key("bench-webhooks", ["webhooks:manage", "traces:write", "traces:read"])
            status, body = await api.post("/v1/webhooks", key, {"url": f"http://127.0.0.1:{port}/hook",
                                                                "event_types": ["trace.events", "trace.completed"]})
            assert status == 201, body
            base = now_ms() - 3_600_000
            bodies = [json.dumps([{"trace_id": f"wt{t}", "event_id": f"we{t}", "type": "SPAN",
                                   "occurred_at": format_ms(base + t)} for t in range(s, s + 200)]).encode()
                      for s in range(0, EVENTS, 200)]
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            for b in bodies:
                queue.put_nowait(b)

            async def poster() -> None:
                while not queue.empty():
                    status, reply = await api.request("POST", "/v1/events", key, data=queue.get_nowait())
                    assert status == 202, reply

            t0 = time.monotonic()
            await asyncio.gather(*(poster() for _ in range(8)))
            await eventually(lambda: asyncio.sleep(0, receiver.events), lambda n: n >= EVENTS, timeout=600,
                             interval=0.05)
            elapsed = time.monotonic() - t0
            rate = receiver.deliveries / elapsed
            report(f"webhook trace.events, {EVENTS:,} 1-event traces over HTTP  {rate:8,.0f} deliveries/s "
                   "(ingest, chaining and the sink included)")
            latencies = []
            for n in range(40):
                trace = f"lat{n}"
                sent = time.monotonic()
                status, _ = await api.post("/v1/events", key, [{"trace_id": trace, "type": "SPAN"}])
                assert status == 202
                await eventually(lambda trace=trace: asyncio.sleep(0, trace in receiver.arrived), bool, timeout=30,
                                 interval=0.005)
                latencies.append((receiver.arrived[trace] - sent) * 1000)
            report(f"ingest -> webhook delivery latency      p50 {pct(latencies, 50):6.0f} ms   "
                   f"p99 {pct(latencies, 99):6.0f} ms")
    finally:
        service.stop()
        broker.stop()
        await runner.cleanup()


async def dispatch_alone(work: Path, report: Callable[[str], None]) -> None:
    """The fan-out and the dispatcher alone, in this process, on their own broker: ``NOTICES``
    ``trace.completed`` notices already on ``webhook-events``, one subscription, timed until the
    receiver has them all (what the dispatch path can do when ingest is not the limit)."""
    from aiokafka import AIOKafkaProducer

    from schemas.codec import encode
    from schemas.subscriptions import SubscriptionReader, SubscriptionView
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

    fetch_throttle.install()
    group_generation.install()
    receiver = Receiver()
    runner, port = await serve(receiver)
    broker = EmbeddedBroker(work / "broker", "127.0.0.1", free_port())
    broker.start()
    tasks: list[asyncio.Task[None]] = []
    reader = None
    try:
        await ensure_topics(broker.bootstrap, 4, topics=(WEBHOOK_SUBSCRIPTIONS, WEBHOOK_EVENTS, WEBHOOK_DELIVERIES,
                                                          WEBHOOK_ATTEMPTS, WEBHOOK_DEAD_LETTER,
                                                          webhook_retry_topic(1)))
        now = now_ms()
        sub = {"id": "wh_bench", "org_id": "bench", "url": f"http://127.0.0.1:{port}/hook",
               "event_types": ["trace.completed"], "description": "", "filter": {},
               "secrets": [{"secret": new_secret(), "expires_at": None}], "status": "active", "disabled_reason": "",
               "created_at": now, "updated_at": now, "version": 1}
        async with AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5) as producer:
            await producer.send_and_wait(WEBHOOK_SUBSCRIPTIONS, encode("WebhookSubscription", sub), key=b"wh_bench")
            sent = [await producer.send(WEBHOOK_EVENTS, encode("WebhookEvent", {
                "id": f"n{i}", "type": "trace.completed", "org_id": "bench", "occurred_at": now,
                "data": json.dumps({"trace_id": f"t{i}"})}), key=b"bench") for i in range(NOTICES)]
            await asyncio.gather(*sent)
        view = SubscriptionView()
        reader = SubscriptionReader(broker.bootstrap, WEBHOOK_SUBSCRIPTIONS, 4, view)
        await reader.start()
        await view.ready.wait()
        t0 = time.monotonic()
        tasks = [asyncio.create_task(Fanout(broker.bootstrap, [WEBHOOK_EVENTS], WEBHOOK_DELIVERIES, view).run()),
                 asyncio.create_task(Dispatcher(broker.bootstrap, view, DispatchSettings((60.0,), allow_private=True),
                                                WEBHOOK_SUBSCRIPTIONS).run())]
        await eventually(lambda: asyncio.sleep(0, receiver.deliveries), lambda n: n >= NOTICES, timeout=600,
                         interval=0.05)
        rate = NOTICES / (time.monotonic() - t0)
        report(f"webhook dispatch alone, {NOTICES:,} notices to 1 endpoint  {rate:8,.0f} deliveries/s "
               "(fan-out, signing, POST, attempt records; 4 at a time per endpoint)")
    finally:
        for task in tasks:
            task.cancel()
        if reader is not None:
            await reader.stop()
        broker.stop()
        await runner.cleanup()
