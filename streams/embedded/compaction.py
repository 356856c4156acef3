"""Changelog compaction for the embedded broker, which has no log compaction.

Faust creates its table changelogs with ``cleanup.policy=compact``; a real Kafka
keeps only each key's latest record. noida-db keeps every record, so the chain
tables' changelogs would grow with every sealed record. Each worker, the single
writer of the changelog partitions of the chains it holds, compacts those partitions itself once
they hold more than twice as many records as its table has live keys there (plus ``min_records``):

1. Republish the current value of every live key to its changelog partition. A key
   whose latest write is still waiting for its sealed record (``streams.changelog``)
   is skipped: that write follows later, at a higher offset.
2. Wait until the republished records and every write that was outstanding at any
   point of step 1 are acknowledged: from then on, each key's latest value sits at or
   after the first republished offset of its partition.
3. Delete the records below that offset (never past what the checkpointer has read of
   the chain-heads changelog).

Republished records carry the ``COMPACTION_HEADER``, so the checkpointer does not
count them as changed heads. The cost is at most one extra write per write, and the
changelogs stay within about three times the live table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import faust
from aiokafka import TopicPartition

from schemas.topics import SEALED_EVENTS
from streams.app import TracehouseApp
from streams.chain import ChainTables, partitioner
from streams.chaining import kafka_key_of
from streams.changelog import COMPACTION_HEADER, WriteBatch
from streams.embedded.trim import log_extents, trim_to
from streams.embedded.trimmer import trim_held
from tracehouse.settings import Settings

log = logging.getLogger(__name__)

#: Keys republished between two yields to the event loop.
CHUNK = 2_000
#: Config of the chain tables' changelog topics on the embedded broker: compacting them here
#: needs DeleteRecords, which noida-db refuses on a compact-only topic. Nothing expires.
CHANGELOG_CONFIG = {"cleanup.policy": "compact,delete", "retention.ms": "-1", "retention.bytes": "-1"}


class ChangelogCompactor:
    """Keeps the chain tables' changelogs short on the embedded broker (see module doc)."""

    def __init__(self, bootstrap: str, chains: ChainTables, partition_of: Callable[[bytes], int],
                 min_records: int, heads_readers: list[str], active: Callable[[], set[int]],
                 ack_timeout: float = 60.0) -> None:
        """``active()``: the partitions this worker writes now; only they are compacted (a table
        may still hold keys of partitions another worker took over)."""
        self.bootstrap = bootstrap
        self.chains = chains
        self.active = active
        self.partition_of = partition_of
        self.min_records = min_records
        self.heads_readers = heads_readers  # consumer groups that read the chain-heads changelog
        self.ack_timeout = ack_timeout

    async def run_once(self) -> dict[tuple[str, int], int]:
        """Compact every changelog that outgrew its table; returns the new low watermarks."""
        names = {attr: table.changelog_topic.get_topic_name() for attr, table in self.chains.tables.items()}
        extents = await log_extents(self.bootstrap, list(names.values()))
        trimmed: dict[tuple[str, int], int] = {}
        for attr, table in self.chains.tables.items():
            active = self.active()
            records = sum(latest - earliest for tp, (earliest, latest) in extents.items()
                          if tp.topic == names[attr] and tp.partition in active)
            if active and records > 2 * len(self._keys(attr, table, active)) + self.min_records:
                trimmed |= await self.compact(attr, table)
        return trimmed

    def _keys(self, attr: str, table: faust.types.TableT, partitions: set[int]) -> list[bytes]:
        """The table's keys that live in ``partitions``."""
        return [key for key in list(table.data.keys()) if self._partition(key, attr) in partitions]

    def _partition(self, key: bytes, attr: str) -> int:
        where = kafka_key_of(key, attr)
        return where if isinstance(where, int) else self.partition_of(where)

    async def compact(self, attr: str, table: faust.types.TableT) -> dict[tuple[str, int], int]:
        """Republish ``table``'s live keys of the active partitions, then trim those changelog
        partitions below them."""
        topic = table.changelog_topic
        active = self.active()
        keys = self._keys(attr, table, active)
        first: dict[int, asyncio.Future] = {}
        republished: list[asyncio.Future] = []
        barrier: set[WriteBatch] = set()
        for start in range(0, len(keys), CHUNK):
            unsent = self.chains.changelog.unsent_keys(table)
            barrier.update(self.chains.changelog.outstanding())
            for key in keys[start:start + CHUNK]:
                value = table.data.get(key)
                if value is None or key in unsent:
                    continue
                partition = self._partition(key, attr)
                sent = topic.send_soon(key=key, value=value, partition=partition, headers={COMPACTION_HEADER: b"1"},
                                       key_serializer=table.key_serializer, value_serializer=table.value_serializer,
                                       eager_partitioning=True)
                first.setdefault(partition, sent)
                republished.append(sent)
            await asyncio.sleep(0)
        try:
            acked = asyncio.gather(*republished, *(batch.durable() for batch in barrier))
            await asyncio.wait_for(acked, self.ack_timeout)
            offsets = {p: sent.result().offset for p, sent in first.items()}
        except Exception as exc:  # the next round starts over
            log.warning("compacting %s: writes not acknowledged, nothing trimmed: %r", topic.get_topic_name(), exc)
            return {}
        if self.active() != active:  # a rebalance meanwhile: another worker may write these partitions now
            return {}
        targets = {TopicPartition(topic.get_topic_name(), p): offset for p, offset in offsets.items()}
        readers = self.heads_readers if attr == "heads" else None
        trimmed = await trim_to(self.bootstrap, targets, readers)
        if trimmed:
            log.info("compacted %s: %d live keys republished, %d partitions trimmed",
                     topic.get_topic_name(), len(keys), len(trimmed))
        return trimmed


def add_chain_upkeep(app: TracehouseApp, settings: Settings, heads_readers: list[str],
                     sealed_readers: list[str]) -> None:
    """Every ``trim_interval_seconds`` while no rebalance is in progress, compact the changelog
    partitions of the chains ``app`` holds, and trim the ``sealed-events`` partitions it holds below
    what its heads reflect (``TracehouseApp.sealed_trim_cap``) and ``sealed_readers`` committed.
    ``heads_readers``: the groups that read the chain-heads changelog (never trimmed past them)."""
    if app.chain_tables is None:
        raise ValueError("the app has no chain tables")
    compactor = ChangelogCompactor(settings.bootstrap_servers, app.chain_tables, partitioner(settings.topic_partitions),
                                   settings.compact_min_records, heads_readers, app.active_partitions)

    async def upkeep() -> None:
        held = app.active_partitions()
        if not held:
            return
        try:
            await compactor.run_once()
            await trim_held(settings.bootstrap_servers, SEALED_EVENTS, held, app.sealed_trim_cap, sealed_readers)
        except Exception as exc:  # the next round tries again
            log.warning("changelog compaction or sealed-events trimming failed: %r", exc)

    app.timer(settings.trim_interval_seconds, name="chain-upkeep")(upkeep)
