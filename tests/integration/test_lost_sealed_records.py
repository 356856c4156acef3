"""A broker that dies itself can lose sealed records the sink had already stored. Against a real
broker and real ClickHouse: before sealing, the chain agents publish those records again at their
old offsets, rebuilt from the stored links, so the heads continue where the stored chains end (no
fork), retries of the lost events stay retries, and the sink's replay of the rebuilt records stores
nothing twice and completes what a cut-short insert left out of the read models."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.codec import decode, encode
from schemas.integrity import verify
from schemas.topics import is_padding
from sinks.repositories.chains import ChainRepository
from sinks.repositories.rollups import RollupRepository
from sinks.writer import AUDIT_EVENTS_SINK, TRACE_EVENTS_SINK, SinkRecord, SinkWriter, Source
from streams.chain import SealedTail
from streams.chaining import AUDIT_CHAIN, TRACE_CHAIN, ChainStore
from streams.changelog import DeferredChangelog
from tests.integration.test_embedded_broker import create_topic, unique
from tests.integration.test_rollups import H0
from tests.unit.test_chaining import seal


def trace_batch(trace: str, first: int, n: int, **kw) -> bytes:
    events = [{"event_id": f"{trace}-e{i}", "org_id": "o", "trace_id": trace, "type": "SPAN",
               "occurred_at": H0 + i, "scores": {"q": 0.5}, "tags": ["x"], "metadata": {"i": str(i)}} | kw
              for i in range(first, first + n)]
    return encode("TraceEventBatch", {"org_id": "o", "trace_id": trace, "events": events})


def audit_batch(first: int, n: int) -> bytes:
    entries = [{"id": f"a{i}", "org_id": "o", "occurred_at": H0 + i, "actor": "u", "action": "read",
                "target": "t", "metadata": {}} for i in range(first, first + n)]
    return encode("AuditEventBatch", {"org_id": "o", "events": entries})


def sealed_records(store: ChainStore) -> list[tuple[object, bytes]]:
    """Six sealed records over two traces and an org's audit log; the last closes trace t2."""
    raw = [(TRACE_CHAIN, trace_batch("t1", 1, 3)), (TRACE_CHAIN, trace_batch("t2", 1, 2)),
           (AUDIT_CHAIN, audit_batch(1, 2)), (TRACE_CHAIN, trace_batch("t1", 4, 2)),
           (AUDIT_CHAIN, audit_batch(3, 1)),
           (TRACE_CHAIN, trace_batch("t2", 3, 1, type="trace_closed", outcome="executed", **{"class": "governance"}))]
    return [(kind, seal(kind, value, store).value) for kind, value in raw]


async def publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value, partition=0)
        await producer.flush()
    finally:
        await producer.stop()


async def read_partition(bootstrap: str, topic: str) -> list[tuple[int, bytes | None]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        out: list[tuple[int, bytes | None]] = []
        while len(out) < end:
            for msg in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                out.append((msg.offset, None if is_padding(msg.headers) else msg.value))
        return out
    finally:
        await consumer.stop()


async def sink(ch, topic: str, records: list[tuple[int, bytes | None]]) -> None:
    """One restarted sink over ``records``: each to the writer of its kind, padding skipped."""
    by_kind: dict[str, list[SinkRecord]] = {"SealedTraceEventBatch": [], "SealedAuditEventBatch": []}
    for offset, value in records:
        if value is not None:
            by_kind[decode(value).schema].append(SinkRecord(Source(topic, 0, offset), value))
    assert await SinkWriter(ch, TRACE_EVENTS_SINK).write(by_kind["SealedTraceEventBatch"]) == []
    assert await SinkWriter(ch, AUDIT_EVENTS_SINK).write(by_kind["SealedAuditEventBatch"]) == []


async def test_records_the_broker_lost_are_restored_from_what_the_sink_stored(clickhouse, broker):
    topic = unique("sealed")
    await create_topic(broker.bootstrap, topic, 1)
    before_the_crash = ChainStore({}, {})
    records = sealed_records(before_the_crash)
    # the sink stored all six (the last three in an insert whose rollup part a kill cut off) ...
    await sink(clickhouse, topic, [(i, v) for i, (_, v) in enumerate(records[:3])])
    await sink(clickhouse, topic, [(i + 3, v) for i, (_, v) in enumerate(records[3:])])
    await clickhouse.command(f"ALTER TABLE {clickhouse.database}.rollups_hourly DELETE WHERE _offset >= 3 "
                             "SETTINGS mutations_sync = 2")
    # ... but the broker kept only the first three, and the heads only the first record's
    await publish(broker.bootstrap, topic, [v for _, v in records[:3]])
    after_the_crash = ChainStore({}, {})
    seal(TRACE_CHAIN, trace_batch("t1", 1, 3), after_the_crash)

    tail = SealedTail(broker.bootstrap, topic, after_the_crash, DeferredChangelog(), ChainRepository(clickhouse))
    moved = await tail.catch_up(0)

    # the log holds the six records again, the lost ones at their old offsets with the same links
    log = await read_partition(broker.bootstrap, topic)
    assert [offset for offset, _ in log] == list(range(6))
    for (_, original), (_, restored) in zip(records, log, strict=True):
        assert restored is not None and decode(restored).datum == decode(original).datum
    # every head is where it was before the crash, the closed trace's lifecycle included
    for chain in (b"trace\x00o\x00t1", b"trace\x00o\x00t2", b"audit\x00o"):
        assert after_the_crash.head(chain) == before_the_crash.head(chain)
    assert after_the_crash.state(b"trace\x00o\x00t2").final_outcome == "executed"
    assert any(a.closed for a in moved)  # its trace.completed notice goes out again
    assert after_the_crash.sealed_offset(0) == 5
    assert await tail.catch_up(0) == []  # once per assignment

    # a retry of a lost event stays a retry, and the next event continues the chain
    assert seal(TRACE_CHAIN, trace_batch("t1", 4, 1), after_the_crash).value is None
    nxt = seal(TRACE_CHAIN, trace_batch("t1", 6, 1), after_the_crash)
    assert decode(nxt.value).datum["first_seq"] == 6

    # the restarted sink replays the log: nothing stored twice, the rollups complete, chains verify
    await sink(clickhouse, topic, log + [(6, nxt.value)])
    links = await ChainRepository(clickhouse).trace_links("o", "t1")
    assert [r["seq"] for r in links] == [1, 2, 3, 4, 5, 6] and verify(links, "event_id").valid
    assert verify(await ChainRepository(clickhouse).trace_links("o", "t2"), "event_id").valid
    buckets = await RollupRepository(clickhouse).buckets("o", H0, None)
    assert sum(b.events for b in buckets) == 9  # t1's six events and t2's three, once each


async def test_a_lost_tail_that_left_nothing_stored_is_padded(clickhouse, broker):
    """Offsets between restored records whose own records the sink never stored become padding:
    the rebuilt records keep their old offsets all the same."""
    topic = unique("sealed")
    await create_topic(broker.bootstrap, topic, 1)
    store = ChainStore({}, {})
    records = sealed_records(store)
    await sink(clickhouse, topic, [(0, records[0][1]), (2, records[2][1])])  # offset 1 never stored
    fresh = ChainStore({}, {})
    tail = SealedTail(broker.bootstrap, topic, fresh, DeferredChangelog(), ChainRepository(clickhouse))
    await tail.catch_up(0)
    log = await read_partition(broker.bootstrap, topic)
    assert [(o, v is None) for o, v in log] == [(0, False), (1, True), (2, False)]
    assert fresh.head(b"trace\x00o\x00t1").seq == 3 and fresh.head(b"audit\x00o").seq == 2
    assert fresh.head(b"trace\x00o\x00t2").seq == 0  # its record was lost before anything stored it
