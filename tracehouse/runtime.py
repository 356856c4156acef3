"""Start the worker and the API in one process, stop them cleanly.

The order matters (each step needs the ones before it): broker (embedded), topics, ClickHouse
migrations, the worker's parts, then HTTP. Shutdown runs it backwards: HTTP first so no new writes
arrive, then the parts (their last batches commit), then ClickHouse, then the broker if this
process started it.
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
from collections.abc import Sequence
from typing import Any, NoReturn

from aiohttp import web

from api.app import create_app
from schemas.checkpoints import load_signing_key
from sinks.clickhouse import ClickHouse
from sinks.migrate import migrate
from streams.parts import CHECKPOINTER, declared_parts, groups_of, trimmable
from streams.worker import cancel_and_wait, chosen_parts, ensure_worker_topics, start_parts
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


async def serve(settings: Settings, *, worker: bool = True, api: bool = True, parts: Sequence[str] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM arrives). ``parts`` names the worker parts to
    run (all when None). A process that runs only parts which need no ClickHouse is a guest beside
    the process that owns the data dir: with the embedded broker it waits for that process's
    broker instead of starting one, and it opens no embedded chdb (its chain agents ask the owner's
    API for stored links, ``streams.stored_links``)."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    chosen = chosen_parts(settings, parts) if worker else []
    owner = api or parts is None or any(part.needs_clickhouse for part in chosen)

    async with contextlib.AsyncExitStack() as stack:
        changelog_config = None
        if settings.embedded_kafka:
            changelog_config = await _embedded_broker(settings, stack, starts=owner, worker=worker)
        await ensure_worker_topics(settings, changelog_config)

        clickhouse = None
        if owner or not settings.embedded_clickhouse:  # embedded chdb opens in one process only
            clickhouse = ClickHouse.from_settings(settings)
            stack.push_async_callback(clickhouse.close)
            applied = await migrate(clickhouse)
            if applied:
                log.info("applied ClickHouse migrations: %s", ", ".join(applied))

        if any(part.name == CHECKPOINTER for part in chosen):
            # the key exists before the API answers: GET /v1/checkpoints shows it from the first start
            load_signing_key(settings.checkpoint_key_path, settings.checkpoint_key)
        failure = start_parts(chosen, clickhouse, stack) if chosen else None
        if settings.embedded_kafka and worker and owner:
            from streams.embedded.trimmer import trim_forever

            trimmer = asyncio.create_task(trim_forever(
                settings.bootstrap_servers, trimmable(declared_parts(settings)), settings.trim_interval_seconds,
                settings.command_timeout_seconds), name="trim")
            stack.push_async_callback(cancel_and_wait, trimmer)
        if api:
            runner = web.AppRunner(create_app(settings, clickhouse), handle_signals=False)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, settings.http_host, settings.http_port).start()
            _announce(settings)
        await _until_stopped(stop, failure)
        log.info("stopping")
        if failure is not None and failure.done():
            failure.result()  # a part failed: stop everything and exit with its error


async def _embedded_broker(settings: Settings, stack: contextlib.AsyncExitStack, *, starts: bool,
                           worker: bool) -> dict[str, str]:
    """Start (``starts``) or wait for the embedded broker, keep it supervised, patch the Kafka
    clients for it; returns the config its changelog topics need."""
    from streams.embedded import fetch_throttle, group_generation
    from streams.embedded.broker import EmbeddedBroker
    from streams.embedded.compaction import CHANGELOG_CONFIG
    from streams.embedded.groups import evict_dead_members, register
    from streams.embedded.supervisor import supervise_broker

    registry = settings.data_dir / "processes"
    register(registry)  # before any client of this process joins a group
    broker = EmbeddedBroker(settings.broker_dir, "127.0.0.1", settings.kafka_port)
    if starts:
        if await asyncio.to_thread(broker.start):
            stack.callback(broker.stop)
    else:
        while not await asyncio.to_thread(broker.answers):
            log.info("waiting for the embedded broker on %s (started by the process that owns %s)",
                     broker.bootstrap, settings.data_dir)
            await asyncio.sleep(settings.broker_supervise_seconds)
    groups = groups_of(declared_parts(settings))
    evicted = await evict_dead_members(broker.bootstrap, groups, registry)
    if any(evicted.values()):
        log.info("evicted the group members of processes that are gone: %s", evicted)
    # supervised whoever started it: the data dir and port are this deployment's
    supervisor = asyncio.create_task(supervise_broker(broker, settings.broker_supervise_seconds, groups, registry,
                                                      restart_process if worker else None, starts=starts),
                                     name="broker-supervisor")
    stack.push_async_callback(cancel_and_wait, supervisor)
    fetch_throttle.install()
    group_generation.install()
    log.info("embedded Kafka broker on %s", broker.bootstrap)
    return CHANGELOG_CONFIG


async def _until_stopped(stop: asyncio.Event, failure: asyncio.Future[None] | None) -> None:
    waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(stop.wait())}
    if failure is not None:
        waits.add(failure)
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for waiting in pending - {failure}:
        waiting.cancel()


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
