"""Wiring: start the embedded parts, the Faust worker and the API in one process, stop cleanly.

The order matters (each step needs the ones before it): broker, topics, ClickHouse migrations, worker
(table recovery done), then HTTP. Shutdown runs it backwards: HTTP first so no new
writes arrive, then the agents (their last batches commit), then ClickHouse, then the
broker if this process started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import multiprocessing
import os
import secrets
import signal
import sys
from typing import Any, NoReturn

import faust
from aiohttp import web

from api.app import create_app
from sinks.clickhouse import ClickHouse
from sinks.migrate import migrate
from streams.app import (
    APP_ID,
    CHANGELOGS,
    create_checkpointer,
    create_faust_app,
    create_rollup_publisher,
    create_sink,
)
from streams.checkpointer import CHECKPOINT_GROUP
from streams.embedded import fetch_throttle
from streams.embedded.broker import EmbeddedBroker
from streams.embedded.compaction import CHANGELOG_CONFIG
from streams.embedded.groups import evict_stale_members
from streams.embedded.supervisor import supervise_broker
from streams.embedded.trimmer import trim_forever
from streams.sink import SINK_GROUP
from streams.topics import ensure_topics
from tracehouse.settings import Settings

log = logging.getLogger("tracehouse")


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


def restart_process() -> NoReturn:
    """Replace this process with a fresh ``tracehouse`` of the same command (same pid, nothing
    flushed or committed on the way: what is durable is the truth, as after a kill -9). A worker
    process does this when the embedded broker died (``streams.embedded.supervisor``)."""
    for child in multiprocessing.active_children():  # the ingest workers would outlive the exec
        child.kill()
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, "-m", "tracehouse.cli", *sys.argv[1:]])


def dump_tasks() -> None:
    """SIGUSR1: log every asyncio task and the await chain it is suspended in."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}", file=out)
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
            if frame is not None:
                print(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}", file=out)
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    log.warning("asyncio tasks (SIGUSR1):\n%s", out.getvalue())


async def serve(settings: Settings, *, worker: bool = True, api: bool = True,
                stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM arrives)."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)

    async with contextlib.AsyncExitStack() as stack:
        if settings.embedded_kafka:
            broker = EmbeddedBroker(settings.broker_dir, "127.0.0.1", settings.kafka_port)
            if await asyncio.to_thread(broker.start):
                stack.callback(broker.stop)
            # supervised whoever started it: the data dir and port are this deployment's
            supervisor = asyncio.create_task(supervise_broker(broker, settings.broker_supervise_seconds,
                                                              restart_process if worker else None),
                                             name="broker-supervisor")
            stack.push_async_callback(_cancel, supervisor)
            fetch_throttle.install()
            log.info("embedded Kafka broker on %s", broker.bootstrap)
        await ensure_topics(settings.bootstrap_servers, settings.topic_partitions,
                            settings.topic_replication_factor, max_message_bytes=settings.max_record_bytes)
        if settings.embedded_kafka and worker and settings.chain_events:
            await ensure_topics(settings.bootstrap_servers, settings.topic_partitions,
                                settings.topic_replication_factor, tuple(CHANGELOGS.values()),
                                CHANGELOG_CONFIG, max_message_bytes=settings.max_record_bytes)

        clickhouse = ClickHouse.from_settings(settings)
        stack.push_async_callback(clickhouse.close)
        applied = await migrate(clickhouse)
        if applied:
            log.info("applied ClickHouse migrations: %s", ", ".join(applied))

        failure = await _start_worker(settings, clickhouse, stack, loop) if worker else None
        if api:
            runner = web.AppRunner(create_app(settings, clickhouse), handle_signals=False)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, settings.http_host, settings.http_port).start()
            _announce(settings)
        await _until_stopped(stop, failure)
        log.info("stopping")
        if failure is not None and failure.done():
            failure.result()  # the worker failed: stop everything and exit with its error


async def _until_stopped(stop: asyncio.Event, failure: asyncio.Future[None] | None) -> None:
    waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
    if failure is not None:
        waits.add(failure)
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for waiting in pending - {failure}:
        waiting.cancel()


async def _start_worker(settings: Settings, clickhouse: ClickHouse, stack: contextlib.AsyncExitStack,
                        loop: asyncio.AbstractEventLoop) -> asyncio.Future[None] | None:
    """Start the sink, the rollup publisher and, with chaining, the Faust worker and the checkpointer; returns
    what fails when the worker can no longer go on (``TracehouseApp.fail``)."""
    if settings.embedded_kafka:
        evicted = await evict_stale_members(settings.bootstrap_servers, [APP_ID, SINK_GROUP, CHECKPOINT_GROUP])
        if any(evicted.values()):
            log.info("evicted stale group members: %s", evicted)
    sink = asyncio.create_task(create_sink(settings, clickhouse).run(), name="sink")
    stack.push_async_callback(_cancel, sink)
    rollups = asyncio.create_task(create_rollup_publisher(settings, clickhouse).run(), name="rollups")
    stack.push_async_callback(_cancel, rollups)
    cap, failure = None, None
    if settings.chain_events:
        app = create_faust_app(settings, clickhouse)
        app.failure = failure = loop.create_future()
        faust_worker = faust.Worker(app, loglevel=settings.log_level, daemon=False,
                                    override_logging=False, loop=loop, redirect_stdouts=False)
        faust_worker.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        await faust_worker.start()
        stack.push_async_callback(faust_worker.stop)
        cap = app.sealed_trim_cap
        checkpointer = asyncio.create_task(create_checkpointer(settings, clickhouse).run(), name="checkpointer")
        stack.push_async_callback(_cancel, checkpointer)
    if settings.embedded_kafka:
        trimmer = asyncio.create_task(trim_forever(settings, cap), name="trim")
        stack.push_async_callback(_cancel, trimmer)
    return failure


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it; re-raise what it died of, if not the cancel."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


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
