"""Faust tables whose writes reach their changelog only when the caller says so.

A chain agent must never let a head reach the changelog before the sealed record it
describes is durable, yet it wants to seal the next record of the chain right away
(one broker round trip per record would cap throughput at a few hundred records/s).
Wrapped tables apply every write to the table's in-memory data at once, so the next
record sees the new head, and keep the changelog write until ``DeferredChangelog.take``
hands it to the caller, which sends it once the record is acknowledged.

A crash loses only the in-memory data; the worker then recovers the tables from their
changelogs, which hold nothing a durable record does not back.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass

import faust


@dataclass(frozen=True)
class Write:
    """One table write still to be sent: ``value`` None deletes the key."""

    table: faust.types.TableT
    key: bytes
    value: bytes | None

    def send(self, partition: int) -> None:
        """To the changelog partition of the source partition the write came from (as
        Faust's own ``Table.on_key_set``/``on_key_del`` do, with the partition given)."""
        if self.value is None:
            self.table.send_changelog(partition, self.key, None, value_serializer="raw")
        else:
            self.table.send_changelog(partition, self.key, self.value)


class DeferredChangelog:
    """Collects the changelog writes of the tables it wrapped, in order."""

    def __init__(self) -> None:
        self._writes: list[Write] = []

    def wrap(self, table: faust.types.TableT) -> MutableMapping[bytes, bytes]:
        return _DeferredTable(table, self._writes)

    def take(self) -> list[Write]:
        """The writes made since the last call, oldest first."""
        writes, self._writes[:] = list(self._writes), []
        return writes


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
