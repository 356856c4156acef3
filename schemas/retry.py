"""Retry schedules (delays as data) and the one loop that retries an async operation with them.

It lives in ``schemas`` because that is the lowest package every retrying caller may import:
``api`` and ``streams`` depend on ``schemas`` and ``sinks``, and ``sinks`` (whose writer retries
ClickHouse inserts) may import ``schemas`` but never ``streams``. Like ``schemas.producer``, it is
shared plumbing rather than a record layout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Unrecoverable(Exception):
    """A failure retrying cannot fix: ``retrying`` lets it through, and the process stops."""


@dataclass(frozen=True)
class RetrySchedule:
    """Seconds to wait after each failure: ``first``, then each delay times ``factor``, at most ``max``."""

    first: float
    factor: float
    max: float

    def __post_init__(self) -> None:
        if self.first < 0 or self.factor < 1 or self.max < self.first:
            raise ValueError(f"invalid retry schedule {self}: need 0 <= first <= max and factor >= 1")

    def delays(self) -> Iterator[float]:
        """The delays after the first, second, ... failure (endless)."""
        delay = self.first
        while True:
            yield delay
            delay = min(delay * self.factor, self.max)


#: Inserts into and reads from ClickHouse (the sink writer, the sealed tail's stored links).
CLICKHOUSE = RetrySchedule(0.2, 2.0, 30.0)
#: A worker part that failed is started again after 1 s, then 2, 4, at most 8 s while it keeps failing
#: (``streams.worker``): a broker or ClickHouse that is away is not hammered, and one back is used soon.
SUPERVISION = RetrySchedule(1.0, 2.0, 8.0)
#: The API's verdict reader while the broker is away.
BROKER_READS = RetrySchedule(1.0, 1.0, 1.0)


async def retrying(op: Callable[[], Awaitable[T]], schedule: RetrySchedule, what: str, *,
                   traceback: bool = False,
                   sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> T:
    """Await ``op()`` until it returns, and return its result; after each failure (an ``Exception``)
    log ``"<what> failed (<error>); retrying in <delay> s"`` (with the traceback if ``traceback``) and
    wait the schedule's next delay. The cancellation of the task awaiting it and ``Unrecoverable``
    are never retried: they propagate. A ``CancelledError`` while nobody cancelled that task is a
    failure like any other: aiokafka raised one out of a consumer after Apache Kafka restarted
    (measured 2026-12-05 on Kafka 4.1.1), and the checkpointer's task then ended without a word."""
    delays = schedule.delays()
    while True:
        try:
            return await op()
        except Unrecoverable:
            raise
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            failure: BaseException = exc
        except Exception as exc:
            failure = exc
        delay = next(delays)
        log.warning("%s failed (%s); retrying in %.1f s", what, str(failure) or repr(failure), delay,
                    exc_info=failure if traceback else None)
        await sleep(delay)
