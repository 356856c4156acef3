"""The chain agents as a worker part: the Faust worker, started and stopped by ``streams.worker``."""

from __future__ import annotations

import asyncio
import logging

import faust

from schemas.retry import Unrecoverable
from schemas.topics import SEALED_EVENTS
from sinks.clickhouse import ClickHouse
from sinks.repositories.chains import ChainRepository
from streams.app import HEADS_CHANGELOG, create_faust_app
from streams.chain import StoredLinks
from streams.parts import Part, Run, readers_of
from streams.stored_links import HttpStoredLinks
from tracehouse.settings import Settings

log = logging.getLogger(__name__)


def stored_links(settings: Settings, clickhouse: ClickHouse | None) -> StoredLinks:
    """Where the chain agents read the links the sink stored: ClickHouse, or, in a process beside the
    one that owns embedded chdb, that process's API (``streams.stored_links``)."""
    if clickhouse is not None:
        return ChainRepository(clickhouse)

    def admin_key() -> str:
        return settings.admin_key or (settings.data_dir / "admin_key").read_text().strip()

    return HttpStoredLinks(f"http://127.0.0.1:{settings.http_port}", admin_key)


def build_chain_agents(settings: Settings, clickhouse: ClickHouse | None, parts: list[Part]) -> Run:
    """``run()`` of the chain agents. It ends only by cancellation or by raising ``Unrecoverable``:
    a chain agent that fails may hold heads ahead of what is durable, and only a new process,
    which recovers from the changelogs, is safe (``streams.chain.ChainAgent``)."""

    async def run() -> None:
        app = create_faust_app(settings, stored_links(settings, clickhouse))
        loop = asyncio.get_running_loop()
        app.failure = loop.create_future()
        if settings.embedded_kafka:
            from streams.embedded.compaction import add_chain_upkeep

            add_chain_upkeep(app, settings, readers_of(parts, HEADS_CHANGELOG), readers_of(parts, SEALED_EVENTS))
        else:
            log.info("the chain tables' changelogs are compacted by the broker (cleanup.policy=compact, "
                     "see the topic lines above); every other topic is bounded by its retention")
        worker = faust.Worker(app, loglevel=settings.log_level, daemon=False, override_logging=False, loop=loop,
                              redirect_stdouts=False)
        worker.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        try:
            await worker.start()
            await app.failure
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise Unrecoverable(f"the chain agents stopped: {exc!r}") from exc
        finally:
            await worker.stop()

    return run
