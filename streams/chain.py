"""The chain agents: raw event topics -> ``sealed-events``, one sealed record per record in.

Each agent is the single writer of its chains (a trace's events, an org's audit log).
Chain state lives in two changelog-backed Faust tables (``streams.chaining.ChainStore``).
Under ``exactly_once`` the sealed record, the table writes and the input offset commit
in one Kafka transaction. Under ``at_least_once``:

- a head is written only after its sealed record is acknowledged, so a crash can never
  advance a head past a lost record (which would drop the replayed events as retries);
- a crash after the acknowledgement but before the head write reached the changelog
  leaves the head one record behind. Before an agent seals anything from a partition
  after a rebalance, ``SealedTail`` replays the ``sealed-events`` records written after
  the last offset the heads are known to reflect, so the replayed input is recognised
  as already linked instead of being sealed a second time.
"""

from __future__ import annotations

import asyncio
import logging

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from schemas.codec import DecodeError
from streams.chaining import ChainKind, ChainStore, replay_sealed, seal
from streams.invalid import invalid_report

log = logging.getLogger(__name__)


def chain_tables(app: faust.App, partitions: int) -> ChainStore:
    """The worker's chain state: heads and archived id digests, as Faust tables."""
    options = dict(key_type=bytes, value_type=bytes, partitions=partitions)  # bytes: raw serializer
    heads = app.Table("chain-heads", **options)
    archive = app.Table("chain-ids", **options)
    return ChainStore(heads, archive)


class SealedTail:
    """Brings the heads of a partition up to the end of ``sealed-events`` (see module doc)."""

    def __init__(self, bootstrap: str, topic: str, store: ChainStore) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.store = store
        self._current: set[int] = set()
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        """After a rebalance every partition must be caught up again."""
        self._current.clear()

    async def catch_up(self, partition: int) -> int:
        """Replay what the heads of ``partition`` miss (once per rebalance); returns the
        number of heads moved. Call it while processing a record of that partition: the
        table writes go to the changelog partition of the current event."""
        if partition in self._current:
            return 0
        async with self._lock:
            if partition in self._current:
                return 0
            moved = await self._replay(partition)
            self._current.add(partition)
        if moved:
            log.info("sealed-events[%d]: %d heads caught up with records their writes missed", partition, moved)
        return moved

    async def _replay(self, partition: int) -> int:
        tp = TopicPartition(self.topic, partition)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    isolation_level="read_committed", client_id="tracehouse-chain-tail")
        await consumer.start()
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            start = (await consumer.beginning_offsets([tp]))[tp]
            known = self.store.sealed_offset(partition)
            if known is not None:
                start = max(start, known + 1)
            if start >= end:
                return 0
            consumer.seek(tp, start)
            moved, last = 0, None
            while last is None or last < end - 1:
                got = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
                if not got and await consumer.position(tp) >= end:
                    break
                for msg in got:
                    if msg.offset >= end:
                        break
                    try:
                        replayed = replay_sealed(msg.value or b"", self.store)
                    except DecodeError as exc:
                        log.warning("sealed-events[%d]@%d: %s", partition, msg.offset, exc)
                        replayed = None
                    if replayed is not None:
                        self.store.save(*replayed)
                        moved += 1
                    last = msg.offset
            if last is not None:
                self.store.set_sealed_offset(partition, last)
            return moved
        finally:
            await consumer.stop()


def add_chain_agent(app: faust.App, kind: ChainKind, source: faust.TopicT, sealed: faust.TopicT,
                    invalid: faust.TopicT, store: ChainStore, tail: SealedTail, settled: asyncio.Event,
                    partitions: int) -> None:
    """Register the agent that seals every record of ``source`` onto ``sealed``.

    ``settled`` is set while no rebalance is in progress (``streams.app.TracehouseApp``):
    a record delivered during one waits, then is dropped unacked if its partition went
    to another worker (the new owner reads it from the committed offset)."""
    partitioner = DefaultPartitioner()
    all_partitions = list(range(partitions))

    def partition_of(key: bytes) -> int:
        return partitioner(key, all_partitions, all_partitions)

    async def chain(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg, value = event.message, event.value or b""
            if not settled.is_set():
                await settled.wait()
                if msg.tp not in app.consumer.assignment():
                    msg.incref()  # never acked here: its offset stays uncommitted
                    continue
            if not app.in_transaction:
                await tail.catch_up(msg.partition)
            try:
                out = seal(kind, value, store, lambda key, p=msg.partition: partition_of(key) == p)
            except DecodeError as exc:
                log.warning("unchainable record %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
                await invalid.send(value=invalid_report(msg.topic, msg.partition, msg.offset, str(exc), value))
                continue
            if out.misrouted:  # keyed by something else: send it where its chain lives
                await source.send(key=out.key, value=value, partition=partition_of(out.key))
            elif out.value is not None:
                sent = await sealed.send(key=out.key, value=out.value, partition=msg.partition)
                if app.in_transaction:
                    store.save(out.chain, out.head)
                else:
                    metadata = await sent  # durable first: a head must never get ahead of its record
                    store.save(out.chain, out.head)
                    store.set_sealed_offset(msg.partition, metadata.offset)

    app.agent(source, name=f"chain-{kind.name}")(chain)
