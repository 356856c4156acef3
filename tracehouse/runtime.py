"""Wiring: start the embedded parts, the Faust worker and the API in one process, stop cleanly.

The order matters (DESIGN.md "Recipe"): broker, topics, ClickHouse migrations, worker
(table recovery done), then HTTP. Shutdown runs it backwards: HTTP first so no new
writes arrive, then the agents (their last batches commit), then ClickHouse, then the
broker if this process started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
from typing import Any

import faust
from aiohttp import web

from api.app import create_app
from schemas.topics import AUDIT_EVENTS, SEALED_EVENTS, TRACE_EVENTS
from sinks.clickhouse import ClickHouse
from sinks.migrate import migrate
from streams.app import APP_ID, create_faust_app
from streams.embedded import fetch_throttle
from streams.embedded.broker import EmbeddedBroker
from streams.embedded.groups import evict_stale_members
from streams.embedded.trim import trim_consumed
from streams.topics import ensure_topics
from tracehouse.settings import Settings

log = logging.getLogger("tracehouse")

#: Which consumer groups read which topic: what the embedded broker may trim.
TOPIC_READERS = {TRACE_EVENTS: [APP_ID], AUDIT_EVENTS: [APP_ID], SEALED_EVENTS: [APP_ID]}


def ensure_admin_key(settings: Settings) -> Settings:
    """Embedded convenience: without TRACEHOUSE_ADMIN_KEY, keep a generated one in the data dir."""
    if settings.admin_key:
        return settings
    path = settings.data_dir / "admin_key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("thadmin_" + secrets.token_urlsafe(32))
    return dataclasses.replace(settings, admin_key=path.read_text().strip())


async def trim_forever(settings: Settings) -> None:
    """Delete consumed records from the embedded broker so its snapshot stays small."""
    while True:
        await asyncio.sleep(settings.trim_interval_seconds)
        try:
            await trim_consumed(settings.bootstrap_servers, TOPIC_READERS)
        except Exception as exc:  # the next round tries again
            log.warning("trimming the embedded broker failed: %s", exc)


async def serve(settings: Settings, *, worker: bool = True, api: bool = True,
                stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM arrives)."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        if settings.embedded_kafka:
            broker = EmbeddedBroker(settings.broker_dir, "127.0.0.1", settings.kafka_port)
            if await asyncio.to_thread(broker.start):
                stack.callback(broker.stop)
            fetch_throttle.install()
            log.info("embedded Kafka broker (noida-db) on %s", broker.bootstrap)
        await ensure_topics(settings.bootstrap_servers, settings.topic_partitions,
                            settings.topic_replication_factor)

        clickhouse = ClickHouse.from_settings(settings)
        stack.push_async_callback(clickhouse.close)
        applied = await migrate(clickhouse)
        if applied:
            log.info("applied ClickHouse migrations: %s", ", ".join(applied))

        if worker:
            await _start_worker(settings, clickhouse, stack, loop)
        if api:
            runner = web.AppRunner(create_app(settings, clickhouse), handle_signals=False)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, settings.http_host, settings.http_port).start()
            _announce(settings)
        await stop.wait()
        log.info("stopping")


async def _start_worker(settings: Settings, clickhouse: ClickHouse,
                        stack: contextlib.AsyncExitStack, loop: asyncio.AbstractEventLoop) -> None:
    if settings.embedded_kafka:
        evicted = await evict_stale_members(settings.bootstrap_servers, [APP_ID])
        if any(evicted.values()):
            log.info("evicted stale group members: %s", evicted)
        trimmer = asyncio.create_task(trim_forever(settings))
        stack.callback(trimmer.cancel)
    app = create_faust_app(settings, clickhouse)
    faust_worker = faust.Worker(app, loglevel=settings.log_level, daemon=False,
                                override_logging=False, loop=loop, redirect_stdouts=False)
    faust_worker.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    await faust_worker.start()
    stack.push_async_callback(faust_worker.stop)


def _announce(settings: Settings) -> None:
    url = f"http://{settings.http_host}:{settings.http_port}"
    key_hint = ("$TRACEHOUSE_ADMIN_KEY" if os.environ.get("TRACEHOUSE_ADMIN_KEY")
                else f"$(cat {settings.data_dir / 'admin_key'})")
    print(
        f"tracehouse is ready: {url}\n"
        f"  create an org key:  curl -s -X POST {url}/v1/admin/keys "
        f"-H \"Authorization: Bearer {key_hint}\" "
        "-d '{\"org_id\": \"acme\", \"scopes\": [\"traces:read\", \"traces:write\"], \"name\": \"dev\"}'\n"
        "  stop: Ctrl-C",
        flush=True,
    )


def run(settings: Settings, **kwargs: Any) -> None:
    """Blocking entry point for the CLI."""
    asyncio.run(serve(settings, **kwargs))
