"""The embedded broker's trimming tasks (``streams.embedded.trim`` does the deleting).

The worker's trimmer deletes, every ``trim_interval_seconds``, what every consumer group that
reads a topic has committed; which groups read which topic comes from the worker parts'
declarations (``streams.parts``). A chain worker trims the ``sealed-events`` partitions it
holds itself: its own restart may read them back (``streams.chain.SealedTail``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import TopicPartition

from schemas.topics import COMMAND_VERDICTS
from streams.embedded.trim import log_extents, trim_consumed, trim_to

log = logging.getLogger(__name__)


async def trim_forever(bootstrap: str, readers: dict[str, list[str]], interval: float,
                       command_timeout: float) -> None:
    """Delete consumed records from the embedded broker so its snapshot stays small.

    ``readers``: topic -> the consumer groups that read it. ``command-verdicts`` has no
    consumer group (every API process reads it from its end, waiting at most
    ``command_timeout``): each round deletes what the previous round saw, records at least
    one interval old."""
    seen_verdicts: dict[TopicPartition, int] = {}
    while True:
        await asyncio.sleep(interval)
        try:
            await trim_consumed(bootstrap, readers)
            if interval > command_timeout:
                await trim_to(bootstrap, seen_verdicts)
                extents = await log_extents(bootstrap, [COMMAND_VERDICTS])
                seen_verdicts = {tp: end for tp, (_, end) in extents.items()}
        except Exception as exc:  # the next round tries again
            log.warning("trimming the embedded broker failed: %s", exc)


async def trim_held(bootstrap: str, topic: str, held: set[int], cap: Callable[[int], int | None],
                    readers: list[str]) -> dict[tuple[str, int], int]:
    """Trim the partitions ``held`` of ``topic`` below ``cap(partition)`` (None: leave it), never past
    what ``readers`` committed."""
    targets = {TopicPartition(topic, p): limit for p in held if (limit := cap(p)) is not None}
    return await trim_to(bootstrap, targets, readers) if targets else {}
