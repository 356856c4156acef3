"""The embedded broker's trimmer: which consumer groups read which topic, and the task
that deletes what they all consumed every ``trim_interval_seconds`` (``streams.embedded.trim``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import TopicPartition

from schemas.topics import AUDIT_EVENTS, COMMAND_VERDICTS, TRACE_EVENTS
from streams.app import APP_ID, sink_topics
from streams.embedded.trim import log_extents, trim_consumed, trim_to
from streams.sink import SINK_GROUP
from tracehouse.settings import Settings

log = logging.getLogger(__name__)


def topic_readers(settings: Settings) -> dict[str, list[str]]:
    """Which consumer groups read which topic: what the embedded broker may trim."""
    readers: dict[str, list[str]] = {topic: [SINK_GROUP] for topic in sink_topics(settings)}
    if settings.chain_events:
        for topic in (TRACE_EVENTS, AUDIT_EVENTS):
            readers.setdefault(topic, []).append(APP_ID)
    return readers


async def trim_forever(settings: Settings, cap: Callable[[TopicPartition], int | None] | None = None) -> None:
    """Delete consumed records from the embedded broker so its snapshot stays small.

    ``command-verdicts`` has no consumer group (every API process reads it from its end,
    waiting at most ``command_timeout_seconds``): each round deletes what the previous
    round saw, records at least one interval old."""
    seen_verdicts: dict[TopicPartition, int] = {}
    while True:
        await asyncio.sleep(settings.trim_interval_seconds)
        try:
            await trim_consumed(settings.bootstrap_servers, topic_readers(settings), cap)
            if settings.trim_interval_seconds > settings.command_timeout_seconds:
                await trim_to(settings.bootstrap_servers, seen_verdicts)
                extents = await log_extents(settings.bootstrap_servers, [COMMAND_VERDICTS])
                seen_verdicts = {tp: end for tp, (_, end) in extents.items()}
        except Exception as exc:  # the next round tries again
            log.warning("trimming the embedded broker failed: %s", exc)
