"""Changelog compaction for the embedded broker, which has no log compaction.

Faust creates its table changelogs with ``cleanup.policy=compact``; a real Kafka
keeps only each key's latest record. noida-db keeps every record, so the chain
tables' changelogs would grow with every sealed record. The worker, the single
writer of its changelogs, compacts them itself once a changelog holds more than
twice as many records as its table has live keys (plus ``min_records``):

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

from streams.chain import ChainTables
from streams.chaining import kafka_key_of
from streams.changelog import COMPACTION_HEADER, WriteBatch
from streams.embedded.trim import log_extents, trim_to

log = logging.getLogger(__name__)

#: Keys republished between two yields to the event loop.
CHUNK = 2_000
#: Config of the chain tables' changelog topics on the embedded broker: compacting them here
#: needs DeleteRecords, which noida-db refuses on a compact-only topic. Nothing expires.
CHANGELOG_CONFIG = {"cleanup.policy": "compact,delete", "retention.ms": "-1", "retention.bytes": "-1"}


class ChangelogCompactor:
    """Keeps the chain tables' changelogs short on the embedded broker (see module doc)."""

    def __init__(self, bootstrap: str, chains: ChainTables, partition_of: Callable[[bytes], int],
                 min_records: int, heads_readers: list[str], ack_timeout: float = 60.0) -> None:
        self.bootstrap = bootstrap
        self.chains = chains
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
            records = sum(latest - earliest for tp, (earliest, latest) in extents.items() if tp.topic == names[attr])
            if records > 2 * len(table.data) + self.min_records:
                trimmed |= await self.compact(attr, table)
        return trimmed

    async def compact(self, attr: str, table: faust.types.TableT) -> dict[tuple[str, int], int]:
        """Republish ``table``'s live keys, then trim its changelog below them."""
        topic = table.changelog_topic
        keys = list(table.data.keys())
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
                where = kafka_key_of(key, attr)
                partition = where if isinstance(where, int) else self.partition_of(where)
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
        targets = {TopicPartition(topic.get_topic_name(), p): offset for p, offset in offsets.items()}
        readers = self.heads_readers if attr == "heads" else None
        trimmed = await trim_to(self.bootstrap, targets, readers)
        if trimmed:
            log.info("compacted %s: %d live keys republished, %d partitions trimmed",
                     topic.get_topic_name(), len(keys), len(trimmed))
        return trimmed


def add_compaction_timer(app: faust.App, compactor: ChangelogCompactor, interval: float) -> None:
    """Run ``compactor`` every ``interval`` seconds while no rebalance is in progress."""

    async def compact_changelogs() -> None:
        if not app.settled.is_set():
            return
        try:
            await compactor.run_once()
        except Exception as exc:  # the next round tries again
            log.warning("changelog compaction failed: %r", exc)

    app.timer(interval, name="compact-changelogs")(compact_changelogs)
