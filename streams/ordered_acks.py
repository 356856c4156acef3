"""The in-order acknowledgement pipeline: sends go out without waiting, and what depends on
each send happens once it is acknowledged, in the order the sends were made.

A consumer that produces per input record (the chain agents; webhook delivery) cannot wait
for one broker round trip per record (that caps it at a few hundred records/s), yet what
follows a send (a changelog write, a followup message, releasing the input offset for
commit) must never overtake it, nor an earlier send. Items enter with the future of their
send; one drainer awaits the futures in order and completes each item in turn. The first
failure stops the drainer and is reported: whatever depended on it must not happen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class InOrderAcks(Generic[T]):
    """Completes items in the order they were put, each once its send is acknowledged.

    ``complete(item, result)`` gets the send's result (None for an item put without a send);
    ``failed(exc)`` gets the first error (a send or a completion), after which nothing more
    completes. ``put`` waits while ``limit`` items are in flight."""

    def __init__(self, complete: Callable[[T, Any], Awaitable[None]], failed: Callable[[BaseException], None],
                 limit: int = 1_000) -> None:
        self._complete = complete
        self._failed = failed
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[Any] | None]] = asyncio.Queue(maxsize=limit)

    async def put(self, item: T, sent: asyncio.Future[Any] | None) -> None:
        """Queue ``item`` behind every item put before it."""
        await self._queue.put((item, sent))

    def waiting(self) -> int:
        """Items put that wait behind the one completing now."""
        return self._queue.qsize()

    async def run(self) -> None:
        """The drainer: run it as one task for as long as items are put."""
        while True:
            item, sent = await self._queue.get()
            try:
                result = await sent if sent is not None else None
                await self._complete(item, result)
            except Exception as exc:
                self._failed(exc)
                return
            finally:
                self._queue.task_done()

    async def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for every item put to complete (a clean stop)."""
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._queue.join()), timeout)
