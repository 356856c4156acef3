"""Faust tables whose writes reach their changelog only when the caller says so.

A chain agent must never let a head reach the changelog before the sealed record it
describes is durable, yet it wants to seal the next record of the chain right away
(one broker round trip per record would cap throughput at a few hundred records/s).
Wrapped tables apply every write to the table's in-memory data at once, so the next
record sees the new head, and keep the changelog write until ``DeferredChangelog.take``
hands it to the caller as a ``WriteBatch``, which it sends once the record is
acknowledged.

A crash loses only the in-memory data; the worker then recovers the tables from their
changelogs, which hold nothing a durable record does not back. The batches taken but
not yet sent are what ``streams.embedded.compaction`` must not overtake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import faust

#: Header of the records a changelog compaction republishes (``streams.embedded.compaction``).
COMPACTION_HEADER = "tracehouse-compaction"


@dataclass(frozen=True)
class Write:
    """One table write still to be sent: ``value`` None deletes the key."""

    table: faust.types.TableT
    key: bytes
    value: bytes | None

    def send(self, partition: int) -> Any:
        """To the changelog partition of the source partition the write came from (as
        Faust's own ``Table.on_key_set``/``on_key_del`` do, with the partition given)."""
        if self.value is None:
            return self.table.send_changelog(partition, self.key, None, value_serializer="raw")
        return self.table.send_changelog(partition, self.key, self.value)


class WriteBatch:
    """The writes of one saved record, sent together to one changelog partition."""

    def __init__(self, writes: list[Write], owner: DeferredChangelog) -> None:
        self.writes = writes
        self._owner = owner
        self._sent = asyncio.Event()
        self._futures: list[Any] = []

    def send(self, partition: int) -> None:
        self._futures = [write.send(partition) for write in self.writes]
        self._sent.set()
        self._owner._outstanding.discard(self)

    async def send_durably(self, partition: int) -> None:
        """``send``, then wait until the broker acknowledged every write."""
        self.send(partition)
        await self.durable()

    async def send_in_order(self, partition: int) -> None:
        """``send``, but the writes of tables wrapped ``first`` are acknowledged before any other
        is sent: a head that counts an archived bucket never reaches its changelog without the
        bucket (two changelogs are two topics, and a kill between their sends kept one of them)."""
        first = [w for w in self.writes if w.table in self._owner.first]
        if first:
            await asyncio.gather(*(w.send(partition) for w in first))
        rest = [w for w in self.writes if w.table not in self._owner.first]
        self._futures = [write.send(partition) for write in rest]
        self._sent.set()
        self._owner._outstanding.discard(self)

    async def durable(self) -> None:
        """Wait until the batch was sent and the broker acknowledged every write."""
        await self._sent.wait()
        await asyncio.gather(*self._futures)


class DeferredChangelog:
    """Collects the changelog writes of the tables it wrapped, in order."""

    def __init__(self) -> None:
        self._writes: list[Write] = []
        self._outstanding: set[WriteBatch] = set()
        self.first: set[faust.types.TableT] = set()  # see WriteBatch.send_in_order

    def wrap(self, table: faust.types.TableT, *, first: bool = False) -> MutableMapping[bytes, bytes]:
        """``table`` whose writes go through this changelog; ``first``: acknowledged before the
        other writes of a batch are sent (``WriteBatch.send_in_order``)."""
        if first:
            self.first.add(table)
        return _DeferredTable(table, self._writes)

    def take(self) -> WriteBatch:
        """The writes made since the last call, oldest first, to send later."""
        batch = WriteBatch(list(self._writes), self)
        self._writes.clear()
        if batch.writes:
            self._outstanding.add(batch)
        return batch

    def outstanding(self) -> list[WriteBatch]:
        """Batches taken and not sent yet."""
        return list(self._outstanding)

    def unsent_keys(self, table: faust.types.TableT) -> set[bytes]:
        """Keys of ``table`` whose latest write has not been sent to its changelog."""
        batches = [b.writes for b in self._outstanding] + [self._writes]
        return {w.key for writes in batches for w in writes if w.table is table}


class _DeferredTable(MutableMapping[bytes, bytes]):
    def __init__(self, table: faust.types.TableT, writes: list[Write]) -> None:
        self._table = table
        self._writes = writes

    def __getitem__(self, key: bytes) -> bytes:
        return self._table.data[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._table.data[key] = value
        self._writes.append(Write(self._table, key, value))

    def __delitem__(self, key: bytes) -> None:
        del self._table.data[key]
        self._writes.append(Write(self._table, key, None))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._table.data)

    def __len__(self) -> int:
        return len(self._table.data)
