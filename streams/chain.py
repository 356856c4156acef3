"""The chain agents: raw event topics -> ``sealed-events``, one sealed record per record in.

Each agent is the single writer of its chains (a trace's events, an org's audit log).
Chain state lives in two changelog-backed Faust tables (``streams.chaining.ChainStore``).
Under ``exactly_once`` the sealed record, the table writes and the input offset commit
in one Kafka transaction. Under ``at_least_once``:

- a head reaches the changelog only after its sealed record is acknowledged
  (``streams.changelog``), so a crash can never advance a head past a lost record
  (which would drop the replayed events as retries);
- a crash after the acknowledgement but before the head write reached the changelog
  leaves the head some records behind. Before an agent seals anything from a partition
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
from typing import Any, Protocol

import faust
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from schemas import kafka_clients
from schemas.codec import DecodeError, decode, encode, schema_of
from schemas.lifecycle import approval_notice, completion_notice, expiry_commands
from schemas.retry import CLICKHOUSE, retrying
from schemas.topics import PADDING, is_padding
from streams.chaining import (
    Advance,
    ChainKind,
    ChainStore,
    Sealed,
    apply_command,
    kind_of,
    replay_sealed,
    restore_sealed,
    seal,
)
from streams.changelog import DeferredChangelog, WriteBatch
from streams.invalid import invalid_report
from streams.ordered_acks import InOrderAcks

log = logging.getLogger(__name__)


#: The client id of the ``SealedTail``'s reader and writer.
TAIL_CLIENT = "tracehouse-chain-tail"

#: The Faust table behind each ``ChainStore`` mapping.
TABLE_NAMES = {"heads": "chain-heads", "archive": "chain-ids", "states": "chain-states", "pending": "chain-pending"}


@dataclass(frozen=True)
class ChainTables:
    """The worker's chain state: the store the agents use, the changelog writes its saves
    leave to send (``streams.changelog``), and the Faust tables behind both."""

    store: ChainStore
    changelog: DeferredChangelog
    tables: dict[str, faust.types.TableT]  # by ChainStore attribute (TABLE_NAMES)


def chain_tables(app: faust.App, partitions: int, approval_ttl_ms: int) -> ChainTables:
    """Create the chain tables of ``app``."""
    options = dict(key_type=bytes, value_type=bytes, partitions=partitions)  # bytes: raw serializer
    tables = {attr: app.Table(name, **options) for attr, name in TABLE_NAMES.items()}
    changelog = DeferredChangelog()
    # an archived bucket is durable before the head that counts it (ChainStore.save writes both)
    store = ChainStore(**{attr: changelog.wrap(t, first=attr == "archive") for attr, t in tables.items()},
                       approval_ttl_ms=approval_ttl_ms)
    return ChainTables(store, changelog, tables)


def partitioner(partitions: int) -> Callable[[bytes], int]:
    """The partition the default (murmur2) partitioner gives a key: where its chain lives."""
    choose, every = DefaultPartitioner(), list(range(partitions))
    return lambda key: choose(key, every, every)


class StoredLinks(Protocol):
    """Where the sink stored the links (``sinks.repositories.chains.ChainRepository``)."""

    async def stored_after(self, topic: str, partition: int, offset: int) -> dict[str, list[dict]]: ...


class SealedTail:
    """Brings the heads of a partition up to the end of ``sealed-events`` (see module doc),
    and ``sealed-events`` back up to what the sink stored.

    A broker that dies itself (the embedded one writes its state to disk once a second) can
    lose sealed records the sink had already stored, and the heads then end before links
    ClickHouse holds: the next event would fork the chain. The stored links are the truth
    then. Before the partition seals anything, each lost record is rebuilt from its stored
    links and published again at its old offset (a record that left nothing stored becomes
    an empty padding record), and the heads replay them as any other tail. The offsets the
    sink keys its exactly-once marks on thus keep naming one record each, and the sink's
    replay of the rebuilt records adds whatever read-model rows a cut-short insert missed."""

    def __init__(self, bootstrap: str, topic: str, store: ChainStore, changelog: DeferredChangelog,
                 stored: StoredLinks | None = None, max_record_bytes: int = 1_048_576) -> None:
        """``max_record_bytes``: the largest record it reads back or publishes again."""
        self.bootstrap = bootstrap
        self.max_record_bytes = max_record_bytes
        self.topic = topic
        self.store = store
        self.changelog = changelog
        self.stored = stored
        self._current: set[int] = set()
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        """After a rebalance every partition must be caught up again."""
        self._current.clear()

    async def catch_up(self, partition: int) -> list[Advance]:
        """Replay what the heads of ``partition`` miss and restore what the broker lost (once
        per rebalance); returns the heads moved, already saved and sent to the changelog."""
        if partition in self._current:
            return []
        async with self._lock:
            if partition in self._current:
                return []
            records, end = await self._missed(partition)
            moved = self._apply(partition, records)
            self.changelog.take().send(partition)
            restored = await self._restore(partition, end)
            self._current.add(partition)
        if moved:
            log.info("sealed-events[%d]: %d heads caught up with records their writes missed", partition, len(moved))
        return moved + restored

    async def _missed(self, partition: int) -> tuple[list[tuple[int, bytes | None]], int]:
        """(offset, value) of the records after the last one the heads are known to reflect
        (value None for padding), and the partition's end offset."""
        tp = TopicPartition(self.topic, partition)
        consumer = kafka_clients.consumer(self.bootstrap, TAIL_CLIENT, max_record_bytes=self.max_record_bytes)
        await consumer.start()
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            start = (await consumer.beginning_offsets([tp]))[tp]
            known = self.store.sealed_offset(partition)
            if known is not None:
                start = max(start, known + 1)
            records: list[tuple[int, bytes | None]] = []
            if start >= end:
                return records, end
            consumer.seek(tp, start)
            while await consumer.position(tp) < end:
                for msg in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if msg.offset < end:
                        records.append((msg.offset, None if is_padding(msg.headers) else msg.value or b""))
            return records, end
        finally:
            await consumer.stop()

    def _apply(self, partition: int, records: list[tuple[int, bytes | None]]) -> list[Advance]:
        """Replay ``records`` onto the heads; no await in here, so the changelog writes
        taken after it are exactly this partition's."""
        moved: list[Advance] = []
        for offset, value in records:
            if value is None:
                continue
            try:
                replayed = replay_sealed(value, self.store)
            except DecodeError as exc:
                log.warning("sealed-events[%d]@%d: %s", partition, offset, exc)
                replayed = None
            if replayed is not None:
                replayed.save(self.store)
                moved.append(replayed)
        if records:
            self.store.set_sealed_offset(partition, records[-1][0])
        return moved

    async def _restore(self, partition: int, end: int) -> list[Advance]:
        """Publish again, at their old offsets from ``end`` on, the records ClickHouse stored
        and the broker lost; their heads are saved once they are durable again."""
        by_offset: dict[int, tuple[ChainKind, list[dict]]] = {}
        for schema_name, rows in (await self._stored_after(partition, end)).items():
            for row in rows:
                by_offset.setdefault(row["_offset"], (kind_of(schema_name), []))[1].append(row)
        if not by_offset:
            return []
        last = max(by_offset)
        values: list[bytes | None] = []
        restored: list[Advance] = []
        for offset in range(end, last + 1):
            rebuilt = restore_sealed(*by_offset[offset], self.store) if offset in by_offset else None
            if offset in by_offset and (rebuilt is None or rebuilt[1].head.seq < max(
                    row["seq"] for row in by_offset[offset][1])):
                log.error("sealed-events[%d]@%d: stored links do not follow their chain's head; verify reports "
                          "the chain", partition, offset)
            if rebuilt is not None:
                rebuilt[1].save(self.store)
                restored.append(rebuilt[1])
            values.append(rebuilt[0] if rebuilt is not None else None)
        self.store.set_sealed_offset(partition, last)
        writes = self.changelog.take()  # sent once the records they describe are durable
        await self._publish_at(partition, end, values)
        await writes.send_durably(partition)
        log.warning("sealed-events[%d]: the broker had lost offsets %d-%d, which the sink had stored; published "
                    "them again from the stored links (%d heads moved)", partition, end, last, len(restored))
        return restored

    async def _stored_after(self, partition: int, end: int) -> dict[str, list[dict]]:
        """The links ClickHouse holds from offsets the partition no longer has (retried until
        ClickHouse answers: sealing before knowing could fork a chain)."""
        if self.stored is None:
            return {}
        stored = self.stored
        return await retrying(lambda: stored.stored_after(self.topic, partition, end), CLICKHOUSE,
                              f"sealed-events[{partition}]: reading stored links")

    async def _publish_at(self, partition: int, first: int, values: list[bytes | None]) -> None:
        """Append ``values`` (None: a padding record) to the partition, the first at offset ``first``."""
        producer = kafka_clients.producer(self.bootstrap, TAIL_CLIENT, self.max_record_bytes)
        await producer.start()
        try:
            sent = [await (producer.send(self.topic, value=b"", partition=partition, headers=PADDING) if value is None
                           else producer.send(self.topic, value=value, partition=partition)) for value in values]
            offsets = [(await s).offset for s in sent]
        finally:
            await producer.stop()
        if offsets != list(range(first, first + len(values))):
            raise RuntimeError(f"sealed-events[{partition}]: restored records landed at {offsets[0]}-{offsets[-1]}, "
                               f"not {first}-{first + len(values) - 1}: another writer appended meanwhile")


@dataclass(frozen=True)
class AgentTopics:
    """Where a chain agent reads and writes."""

    source: faust.TopicT  # raw records (and, for traces, commands)
    sealed: faust.TopicT
    invalid: faust.TopicT
    verdicts: faust.TopicT  # answers to commands, keyed by request id
    notices: faust.TopicT  # webhook events (trace.completed)


#: Completed records per partition between two sealed-offset markers (under load).
MARK_EVERY = 50

#: A message to send once the sealed record before it is durable: (topic, key, value).
Followup = tuple[faust.TopicT, bytes, bytes]


@dataclass
class _InFlight:
    """What waits for a sealed record's acknowledgement (or, with nothing sealed, for those before it)."""

    message: Any  # the source message: held unacked (its offset uncommitted) until then
    writes: WriteBatch
    followups: list[Followup]


class ChainAgent:
    """Seals every record of one raw topic onto ``sealed-events`` and decides the commands
    on its chains (``schemas.lifecycle``).

    Records are pipelined: a record is sealed against the in-memory heads and sent, and
    the next one is sealed without waiting for the broker. A drainer takes the sends in
    order and, once each is acknowledged, sends its head writes to the changelog, its
    followups (verdicts, webhook notices), and releases its source offset for commit.
    A send that fails stops the worker (``TracehouseApp.fail``): the in-memory heads are
    then ahead of what is durable, and only a restart from the changelog is safe.

    ``settled`` is cleared while a rebalance reassigns partitions (``streams.app.TracehouseApp``):
    a record delivered then waits, then is dropped unacked if its partition went to another
    worker (the new owner reads it from the committed offset)."""

    def __init__(self, app: Any, kind: ChainKind, topics: AgentTopics, store: ChainStore,
                 changelog: DeferredChangelog, tail: SealedTail, partitions: int, in_flight: int = 1_000) -> None:
        self.app, self.kind, self.topics, self.store, self.tail = app, kind, topics, store, tail
        self.changelog = changelog
        self.partition_of = partitioner(partitions)
        self._acks: InOrderAcks[_InFlight] = InOrderAcks(self._completed, self._fail, in_flight)
        self._since_mark: dict[int, int] = {}  # records completed since each partition's sealed-offset marker
        self._failed = False

    def register(self) -> None:
        self.app.agent(self.topics.source, name=f"chain-{self.kind.name}")(self.process)

    async def process(self, stream: faust.StreamT) -> None:
        drainer = asyncio.ensure_future(self._drain())
        try:
            async for event in stream.events():
                await self._process(event.message, event.value or b"")
        finally:
            await self._acks.join(10.0)  # a clean stop commits all
            drainer.cancel()

    async def _process(self, msg: Any, value: bytes) -> None:
        if self._failed:
            await asyncio.Event().wait()  # the worker is stopping; seal nothing more
        if not self.app.settled.is_set():
            await self.app.settled.wait()
            if msg.tp not in self.app.consumer.assignment():
                msg.incref()  # never acked here: its offset stays uncommitted
                return
        if not self.app.in_transaction:
            try:
                caught_up = await self.tail.catch_up(msg.partition)
            except Exception as exc:  # heads may be ahead of what is durable: only a restart is safe
                self._fail(exc)
                raise
            for advance in caught_up:
                await self._send(self._notices(advance))  # their records are durable already
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

    async def _publish(self, msg: Any, out: Sealed | None, followups: list[Followup] | None = None) -> None:
        """Save ``out``'s head in memory and send its sealed record; what depends on the
        record being durable (``_InFlight``) follows once it is."""
        followups = followups or []
        sealing = out is not None and out.value is not None and out.advance is not None
        if sealing:
            out.advance.save(self.store)
            followups = self._notices(out.advance) + followups
        writes = self.changelog.take()  # this record's table writes (none when nothing is sealed)
        sent = None
        if sealing:
            try:
                sent = await self.topics.sealed.send(key=out.key, value=out.value, partition=msg.partition)
            except Exception as exc:
                self._fail(exc)
                raise
        elif not followups:
            return  # nothing waits: every event was a retry
        item = _InFlight(msg, writes, followups)
        if self.app.in_transaction:  # the transaction orders it all: no waiting
            await self._complete(item, None)
        else:
            msg.incref()
            await self._acks.put(item, sent)

    async def _drain(self) -> None:
        await self._acks.run()

    async def _completed(self, item: _InFlight, sent: Any) -> None:
        """The sealed record before ``item``'s writes is acknowledged (``sent`` its metadata)."""
        await self._complete(item, sent.offset if sent is not None else None)
        item.message.ack(self.app.consumer)

    async def _complete(self, item: _InFlight, offset: int | None) -> None:
        partition = item.message.partition
        if offset is not None and self._marks(partition):
            self.store.set_sealed_offset(partition, offset)
        marker = self.changelog.take()  # taken before anything awaits: no other record's writes mix in
        await item.writes.send_in_order(partition)
        marker.send(partition)
        await self._send(item.followups)

    def _marks(self, partition: int) -> bool:
        """Whether this completion records the partition's sealed offset: once every
        ``MARK_EVERY`` records, and whenever the pipeline has drained. A marker behind the
        heads only makes ``SealedTail`` replay a few more records after a crash (a replay
        of a record whose head is saved changes nothing); one per record was a third of
        the agent's writes."""
        since = self._since_mark[partition] = self._since_mark.get(partition, 0) + 1
        if since < MARK_EVERY and self._acks.waiting():
            return False
        self._since_mark[partition] = 0
        return True

    @staticmethod
    async def _send(followups: list[Followup]) -> None:
        for topic, key, value in followups:
            await topic.send(key=key, value=value)

    def _fail(self, exc: BaseException) -> None:
        if not self._failed:
            self._failed = True
            log.critical("chain-%s: heads may be ahead of what is durable; stopping the worker: %r",
                         self.kind.name, exc)
            self.app.fail(exc)

    def _notices(self, advance: Advance) -> list[Followup]:
        """Tell webhook subscribers about approvals requested and a trace that closed (at least once:
        ids are stable)."""
        notices = [approval_notice(advance.chain, event) for event in advance.requested]
        if advance.closed and advance.state is not None:
            notices.append(completion_notice(advance.chain, advance.state))
        return [(self.topics.notices, n["org_id"].encode(), encode("WebhookEvent", n)) for n in notices]

    async def _command(self, msg: Any, value: bytes) -> None:
        command = decode(value).datum
        key = command["trace_id"].encode()
        if not self._owns(msg.partition)(key):
            await self._forward(key, value)
            return
        applied = apply_command(self.kind, command, self.store)
        followups: list[Followup] = []
        if applied.verdict is not None:
            followups.append((self.topics.verdicts, command["request_id"].encode(), applied.verdict))
        await self._publish(msg, applied.sealed, followups)


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
