"""Webhook deliveries on this machine: deliveries/s to a local receiver subscribed to ``trace.events``
and ``trace.completed`` while events are ingested over HTTP, ingest -> delivery latency, and the idle
CPU of a chained ``run`` that has subscriptions.

The receiver (aiohttp, in the bench process) answers 204 at once. Throughput: ``BENCH_WEBHOOK_TRACES``
closed traces of two events (``operation_executed``, ``trace_closed``; 100 traces per request, posted
by 8 clients), each one ``trace.events`` and one ``trace.completed`` delivery; the clock stops when the
receiver has them all. The baseline, in the same service and run: the same traces for an org without
subscriptions, timed until they are stored (chained ingest alone). Latency: one 1-event trace posted
at a time; from the 202 to the delivery of its ``trace.events``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from aiohttp import web

from bench.stats import cpu_seconds, idle_cpu, pct, post_all, wait_stored
from schemas.timefmt import format_ms, now_ms
from streams.embedded.broker import EmbeddedBroker, free_port
from tests.support.service import Api, Service, eventually, worker_beside

TRACES = int(os.environ.get("BENCH_WEBHOOK_TRACES", "10000"))
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


def closed_traces(prefix: str, n: int, per_request: int = 100) -> list[bytes]:
    """Request bodies of ``n`` closed two-event traces, ``per_request`` traces each."""
    base = now_ms() - 3_600_000

    def trace(t: int) -> list[dict[str, str]]:
        common = {"trace_id": f"{prefix}{t}", "occurred_at": format_ms(base + t)}
        return [{**common, "event_id": f"{prefix}{t}-x", "type": "operation_executed"},
                {**common, "event_id": f"{prefix}{t}-c", "type": "trace_closed", "outcome": "executed"}]

    return [json.dumps([e for t in range(s, min(s + per_request, n)) for e in trace(t)]).encode()
            for s in range(0, n, per_request)]


async def run(work: Path, report: Callable[[str], None], env: dict[str, str], *,
              webhook_process: bool = False) -> None:
    """Report deliveries/s beside chained ingest alone, ingest -> delivery latency and idle CPU; with
    ``webhook_process``, the fan-out and the dispatcher run in a second process
    (``tracehouse worker --parts webhooks,dispatch``) instead of inside ``run``."""
    receiver = Receiver()
    runner, port = await serve(receiver)
    broker = EmbeddedBroker(work / "broker", "127.0.0.1", free_port())
    broker.start()
    broker_pid = next(p.pid for p in psutil.process_iter(["cmdline"])
                      if p.info["cmdline"] and str(work / "broker") in " ".join(p.info["cmdline"]))
    parts = ("--parts", "chain,sink,checkpointer,rollups") if webhook_process else ()
    service = Service(work, broker.port, "run", *parts, TRACEHOUSE_CHAIN_EVENTS="true",
                      TRACEHOUSE_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true", **env)
    service.start()
    guest = worker_beside(service, "webhooks", "webhooks,dispatch") if webhook_process else None
    assert service.proc is not None
    pids = [service.proc.pid, broker_pid, *([guest.proc.pid] if guest and guest.proc else [])]
    shape = "webhooks in a 2nd process" if webhook_process else "one run process"
    try:
        async with Api(service.url) as api:
            scopes = ["webhooks:manage", "traces:write", "traces:read"]
            plain = await api.org_key("bench-chained", scopes)
            t0 = time.monotonic()
            await post_all(api, plain, closed_traces("c", TRACES))
            chained = TRACES / (await wait_stored(api, plain, 2 * TRACES) - t0)
            report(f"chained ingest alone, {TRACES:,} closed 2-event traces  {chained:8,.0f} traces/s "
                   f"(no subscriptions; until stored; {shape})")

            key = await api.org_key("bench-webhooks", scopes)
            for kind in ("trace.events", "trace.completed"):
                status, body = await api.post("/v1/webhooks", key, {"url": f"http://127.0.0.1:{port}/hook",
                                                                    "event_types": [kind]})
                assert status == 201, body
            cpu0, t0 = cpu_seconds(pids), time.monotonic()
            await post_all(api, key, closed_traces("w", TRACES))
            await eventually(lambda: asyncio.sleep(0, receiver.deliveries), lambda n: n >= 2 * TRACES, timeout=600,
                             interval=0.05)
            elapsed, cpu = time.monotonic() - t0, cpu_seconds(pids) - cpu0
            rate = receiver.deliveries / elapsed
            report(f"webhook deliveries under ingest, {TRACES:,} closed traces  {rate:8,.0f} deliveries/s "
                   f"({shape}; {TRACES / elapsed / chained:.2f}x the chained traces/s alone; "
                   f"{cpu / receiver.deliveries * 1e6:,.0f} us of CPU per delivery incl. its ingest)")
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
                   f"p99 {pct(latencies, 99):6.0f} ms  (one trace at a time; {shape})")
            if not webhook_process:
                await asyncio.sleep(30)  # the sink, the fan-out, the dispatcher and ClickHouse's merges go idle
                report(f"idle CPU with 2 webhook subscriptions, chained run: tracehouse "
                       f"{await asyncio.to_thread(idle_cpu, service.proc.pid):.1f} % of a core, "
                       f"noida-db {await asyncio.to_thread(idle_cpu, broker_pid):.1f} %")
    finally:
        if guest is not None:
            guest.stop()
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
        tasks = [asyncio.create_task(Fanout(broker.bootstrap, [WEBHOOK_EVENTS], WEBHOOK_DELIVERIES, view,
                                                       reader.fresh).run()),
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
