"""Commands on a trace: publish one, then await the chain agent's verdict.

The chain agent is the single writer of a trace, so it alone decides whether an
outcome applies; the API publishes the command on
``trace-events`` (keyed by trace_id, in order with the trace's events) and waits for
the verdict on ``command-verdicts``, which every API process reads from its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from aiokafka import TopicPartition

from schemas import kafka_clients
from schemas.codec import DecodeError, decode
from schemas.lifecycle import Verdict
from schemas.retry import BROKER_READS, retrying

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandVerdict:
    """The chain agent's answer to one command."""

    verdict: Verdict
    message: str


class VerdictWaiter:
    """Reads ``topic`` (all ``partitions``, no consumer group, from the end it finds at
    start) and resolves the future of the request each verdict names."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self._consumer = kafka_clients.consumer(bootstrap, "tracehouse-api-verdicts")  # no group: from the end
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self._waiting: dict[str, asyncio.Future[CommandVerdict]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_end(*self._partitions)
        for tp in self._partitions:  # resolve the end offsets now: a verdict after this is seen
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._read(), name="verdicts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def decide(self, request_id: str, publish: Awaitable[object], timeout: float) -> CommandVerdict:
        """Wait up to ``timeout`` seconds for the verdict on ``request_id``; register the
        wait before awaiting ``publish`` (the command's send) so no verdict is missed.
        Raises TimeoutError."""
        future: asyncio.Future[CommandVerdict] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            await publish
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(request_id, None)

    async def _read(self) -> None:
        while True:
            batches = await retrying(lambda: self._consumer.getmany(timeout_ms=1000), BROKER_READS,
                                     "reading verdicts")  # while the broker restarts: the task stays alive
            for records in batches.values():
                for record in records:
                    try:
                        datum = decode(record.value or b"").datum
                    except DecodeError as exc:
                        log.warning("unreadable verdict at offset %d: %s", record.offset, exc)
                        continue
                    future = self._waiting.get(datum["request_id"])
                    if future is not None and not future.done():
                        try:
                            future.set_result(CommandVerdict(Verdict(datum["verdict"]), datum["message"]))
                        except ValueError as exc:  # a verdict this version does not know
                            future.set_exception(exc)
