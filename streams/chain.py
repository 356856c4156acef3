"""The chain agents: raw event topics -> ``sealed-events``, one sealed record per record in.

Each agent is the single writer of its chains (a trace's events, an org's audit log).
Chain state lives in two changelog-backed Faust tables (``streams.chaining.ChainStore``).
Under ``exactly_once`` the sealed record, the table writes and the input offset commit
in one Kafka transaction. Under ``at_least_once`` the head is written only after its
sealed record is acknowledged, so a crash can never advance a head past a lost record
(which would drop the replayed events as retries).
"""

from __future__ import annotations

import logging

import faust
from aiokafka.partitioner import DefaultPartitioner

from schemas.codec import DecodeError
from streams.chaining import ChainKind, ChainStore, seal
from streams.invalid import invalid_report

log = logging.getLogger(__name__)


def chain_tables(app: faust.App, partitions: int) -> ChainStore:
    """The worker's chain state: heads and archived id digests, as Faust tables."""
    options = dict(key_type=bytes, value_type=bytes, partitions=partitions)  # bytes: raw serializer
    heads = app.Table("chain-heads", **options)
    archive = app.Table("chain-ids", **options)
    return ChainStore(heads, archive)


def add_chain_agent(app: faust.App, kind: ChainKind, source: faust.TopicT, sealed: faust.TopicT,
                    invalid: faust.TopicT, store: ChainStore, partitions: int) -> None:
    """Register the agent that seals every record of ``source`` onto ``sealed``."""
    partitioner = DefaultPartitioner()
    all_partitions = list(range(partitions))

    def partition_of(key: bytes) -> int:
        return partitioner(key, all_partitions, all_partitions)

    async def chain(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg, value = event.message, event.value or b""
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
                if not app.in_transaction:
                    await sent  # durable first: a head must never get ahead of its sealed record
                store.save(out.chain, out.head)

    app.agent(source, name=f"chain-{kind.name}")(chain)
