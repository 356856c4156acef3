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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from schemas.codec import DecodeError, decode, encode, schema_of
from schemas.lifecycle import completion_notice, decide, expiry_commands
from streams.chaining import Advance, ChainKind, ChainStore, Sealed, replay_sealed, seal
from streams.invalid import invalid_report

log = logging.getLogger(__name__)


def chain_tables(app: faust.App, partitions: int, approval_ttl_ms: int) -> ChainStore:
    """The worker's chain state (``streams.chaining.ChainStore``), as Faust tables."""
    options = dict(key_type=bytes, value_type=bytes, partitions=partitions)  # bytes: raw serializer
    tables = [app.Table(name, **options) for name in ("chain-heads", "chain-ids", "chain-states", "chain-pending")]
    return ChainStore(*tables, approval_ttl_ms=approval_ttl_ms)


def partitioner(partitions: int) -> Callable[[bytes], int]:
    """The partition the default (murmur2) partitioner gives a key: where its chain lives."""
    choose, every = DefaultPartitioner(), list(range(partitions))
    return lambda key: choose(key, every, every)


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

    async def catch_up(self, partition: int) -> list[Advance]:
        """Replay what the heads of ``partition`` miss (once per rebalance); returns the
        heads moved. Call it while processing a record of that partition: the table
        writes go to the changelog partition of the current event."""
        if partition in self._current:
            return []
        async with self._lock:
            if partition in self._current:
                return []
            moved = await self._replay(partition)
            self._current.add(partition)
        if moved:
            log.info("sealed-events[%d]: %d heads caught up with records their writes missed", partition, len(moved))
        return moved

    async def _replay(self, partition: int) -> list[Advance]:
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
                return []
            consumer.seek(tp, start)
            moved: list[Advance] = []
            last = None
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
                        replayed.save(self.store)
                        moved.append(replayed)
                    last = msg.offset
            if last is not None:
                self.store.set_sealed_offset(partition, last)
            return moved
        finally:
            await consumer.stop()


@dataclass(frozen=True)
class AgentTopics:
    """Where a chain agent reads and writes."""

    source: faust.TopicT  # raw records (and, for traces, commands)
    sealed: faust.TopicT
    invalid: faust.TopicT
    verdicts: faust.TopicT  # answers to commands, keyed by request id
    notices: faust.TopicT  # webhook events (trace.completed)


class ChainAgent:
    """Seals every record of one raw topic onto ``sealed-events`` and decides the commands
    on its chains (``schemas.lifecycle``).

    ``settled`` is set while no rebalance is in progress (``streams.app.TracehouseApp``):
    a record delivered during one waits, then is dropped unacked if its partition went
    to another worker (the new owner reads it from the committed offset)."""

    def __init__(self, app: faust.App, kind: ChainKind, topics: AgentTopics, store: ChainStore, tail: SealedTail,
                 settled: asyncio.Event, partitions: int) -> None:
        self.app, self.kind, self.topics, self.store, self.tail = app, kind, topics, store, tail
        self.settled = settled
        self.partition_of = partitioner(partitions)

    def register(self) -> None:
        self.app.agent(self.topics.source, name=f"chain-{self.kind.name}")(self.process)

    async def process(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg, value = event.message, event.value or b""
            if not self.settled.is_set():
                await self.settled.wait()
                if msg.tp not in self.app.consumer.assignment():
                    msg.incref()  # never acked here: its offset stays uncommitted
                    continue
            if not self.app.in_transaction:
                for advance in await self.tail.catch_up(msg.partition):
                    await self._notify(advance)
            try:
                if self.kind.lifecycle and schema_of(value) == "TraceCommand":
                    await self._command(msg, value)
                else:
                    await self._seal(msg, value)
            except DecodeError as exc:
                log.warning("unchainable record %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
                report = invalid_report(msg.topic, msg.partition, msg.offset, str(exc), value)
                await self.topics.invalid.send(value=report)

    def _owns(self, partition: int) -> Callable[[bytes], bool]:
        return lambda key: self.partition_of(key) == partition

    async def _seal(self, msg: Any, value: bytes) -> None:
        out = seal(self.kind, value, self.store, self._owns(msg.partition))
        if out.misrouted:
            await self._forward(out.key, value)
        else:
            await self._publish(msg, out)

    async def _forward(self, key: bytes, value: bytes) -> None:
        """A record keyed by something else than its chain: send it where its chain lives."""
        await self.topics.source.send(key=key, value=value, partition=self.partition_of(key))

    async def _publish(self, msg: Any, out: Sealed) -> None:
        if out.value is None or out.advance is None:
            return
        sent = await self.topics.sealed.send(key=out.key, value=out.value, partition=msg.partition)
        if self.app.in_transaction:
            out.advance.save(self.store)
        else:
            metadata = await sent  # durable first: a head must never get ahead of its record
            out.advance.save(self.store)
            self.store.set_sealed_offset(msg.partition, metadata.offset)
        await self._notify(out.advance)

    async def _notify(self, advance: Advance) -> None:
        """Tell webhook subscribers about a trace that closed (at least once: ids are stable)."""
        if advance.closed and advance.state is not None:
            notice = completion_notice(advance.chain, advance.state)
            await self.topics.notices.send(key=notice["org_id"].encode(), value=encode("WebhookEvent", notice))

    async def _command(self, msg: Any, value: bytes) -> None:
        command = decode(value).datum
        key = command["trace_id"].encode()
        if not self._owns(msg.partition)(key):
            await self._forward(key, value)
            return
        chain = self.kind.chain_key(command)
        decision = decide(command, self.store.head(chain).seq, self.store.state(chain))
        if decision.events:
            batch = {"org_id": command["org_id"], "trace_id": command["trace_id"], "events": decision.events}
            await self._publish(msg, seal(self.kind, encode(self.kind.batch_schema, batch), self.store))
        if decision.verdict is not None and command["request_id"]:
            verdict = {"request_id": command["request_id"], "status": decision.verdict, "message": decision.message}
            await self.topics.verdicts.send(key=command["request_id"].encode(), value=encode("CommandVerdict", verdict))


def add_expiry_timer(app: faust.App, store: ChainStore, source: faust.TopicT, settled: asyncio.Event,
                     interval: float, partitions: int) -> None:
    """Every ``interval`` seconds, send an ``expire`` command for each approval request
    past its deadline in this worker's ``pending`` table; the chain agent decides it (an
    approval decided meanwhile wins). A command is not re-sent for ten intervals."""
    partition_of = partitioner(partitions)
    sent: dict[tuple[str, str, str], float] = {}

    async def expire_approvals() -> None:
        if not settled.is_set():
            return
        now = time.time()
        for key in [k for k, at in sent.items() if now - at > 10 * interval]:
            del sent[key]
        for command in expiry_commands(list(store.pending.items()), int(now * 1000)):
            ref = (command["org_id"], command["trace_id"], command["approval_request_id"])
            if ref in sent:
                continue
            sent[ref] = now
            key = command["trace_id"].encode()
            await source.send(key=key, value=encode("TraceCommand", command), partition=partition_of(key))

    app.timer(interval, name="expire-approvals")(expire_approvals)
