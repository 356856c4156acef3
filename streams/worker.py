"""The worker: start the chosen parts (``streams.parts``), keep them running, stop them.

Each part's ``run()`` is started again after a failure (``schemas.retry.SUPERVISION``); a part that
raises ``Unrecoverable`` stops the worker, and the process exits with its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from schemas.retry import SUPERVISION, Unrecoverable, retrying
from schemas.topics import SOURCE_TOPICS, TOPIC_CONFIGS
from sinks.clickhouse import ClickHouse
from streams.parts import Part, Run, declared_parts, topics_of
from streams.topics import ensure_topics
from tracehouse.settings import Settings

log = logging.getLogger(__name__)


def chosen_parts(settings: Settings, names: Sequence[str] | None = None) -> list[Part]:
    """The declared parts named in ``names`` (all of them when None); raises ValueError on an unknown name."""
    parts = declared_parts(settings)
    if names is None:
        return parts
    known = {part.name for part in parts}
    unknown = sorted(set(names) - known)
    if unknown:
        raise ValueError(f"unknown worker part(s) {', '.join(unknown)}; this deployment has {', '.join(sorted(known))}")
    return [part for part in parts if part.name in names]


#: The chain tables' changelogs on Apache Kafka: compacted by Kafka, as Faust creates them.
KAFKA_CHANGELOG_CONFIG = {"cleanup.policy": "compact"}


async def ensure_worker_topics(settings: Settings, changelog_config: dict[str, str] | None = None) -> None:
    """Create every topic the declared parts read or write, those holding state with their configs
    (``schemas.topics.TOPIC_CONFIGS``: set in the same request, so no start-up resets them meanwhile),
    and the parts' tables' changelogs with ``changelog_config`` (the embedded broker's), else
    ``KAFKA_CHANGELOG_CONFIG``. Faust would create the changelogs itself, but on Apache Kafka its
    producer then sent to a changelog before the broker's metadata listed the new topic's partitions
    (aiokafka's "Unrecognized partition", which stopped the chain agents; measured 2026-12-05 on
    Kafka 4.1.1): created here, they are described with all their partitions before Faust starts."""
    parts = declared_parts(settings)
    create = dict(partitions=settings.topic_partitions, replication_factor=settings.topic_replication_factor,
                  max_message_bytes=settings.max_record_bytes)
    topics = tuple(t for t in dict.fromkeys((*SOURCE_TOPICS, *topics_of(parts))) if t not in TOPIC_CONFIGS)
    await ensure_topics(settings.bootstrap_servers, topics=topics, **create)
    for topic, configs in TOPIC_CONFIGS.items():
        await ensure_topics(settings.bootstrap_servers, topics=(topic,), configs=configs, **create)
    changelogs = tuple(t for part in parts for t in part.changelogs)
    if changelogs:
        await ensure_topics(settings.bootstrap_servers, topics=changelogs,
                            configs=KAFKA_CHANGELOG_CONFIG if changelog_config is None else changelog_config, **create)


def start_parts(parts: list[Part], clickhouse: ClickHouse | None,
                stack: contextlib.AsyncExitStack) -> asyncio.Future[None]:
    """Start ``parts`` (stopped in reverse order when ``stack`` closes); returns what fails when
    one of them cannot go on."""
    failure: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    for part in parts:
        if part.needs_clickhouse and clickhouse is None:
            raise ValueError(f"the {part.name} part needs ClickHouse")
        task = asyncio.create_task(_supervised(part, clickhouse, failure), name=part.name)
        stack.push_async_callback(cancel_and_wait, task)
        log.info("started the %s part", part.name)
    return failure


async def keep_running(run: Run, what: str) -> None:
    """Await ``run()`` until cancelled; when it fails, log it (with its traceback) and start it again
    after ``SUPERVISION``'s delay; when it returns, start it again at once. ``Unrecoverable`` propagates."""
    while True:
        await retrying(run, SUPERVISION, what, traceback=True)


async def _supervised(part: Part, clickhouse: ClickHouse | None, failure: asyncio.Future[None]) -> None:
    try:
        await keep_running(part.build(clickhouse), f"the {part.name} part")
    except Unrecoverable as exc:
        log.critical("the %s part cannot go on: %s", part.name, exc)
        if not failure.done():
            failure.set_exception(exc)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it; re-raise what it died of, if not the cancel."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
