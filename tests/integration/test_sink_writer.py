"""The sink writer against real ClickHouse: Avro straight into ClickHouse, exactly once by
source offsets, corrupt records rejected without blocking the rest, retry on failure."""

import asyncio

from schemas.codec import encode
from sinks.writer import AUDIT_EVENTS_SINK, TRACE_EVENTS_SINK, SinkRecord, SinkWriter, Source

T0 = 1_795_428_000_000


def event(eid: str, offset: int, **kw) -> dict:
    return {"event_id": eid, "org_id": "o", "trace_id": "t", "type": "SPAN", "occurred_at": T0 + offset,
            "scores": {}, "tags": [], "metadata": {}} | kw


def records(offsets_and_ids, partition=0):
    """One batch record per offset, holding the events listed for it."""
    by_offset: dict[int, list[str]] = {}
    for offset, eid in offsets_and_ids:
        by_offset.setdefault(offset, []).append(eid)
    return [SinkRecord(Source("trace-events", partition, offset),
                       encode("TraceEventBatch", {"org_id": "o", "trace_id": "t",
                                                  "events": [event(e, offset) for e in eids]}))
            for offset, eids in by_offset.items()]


def writer(ch) -> SinkWriter:
    return SinkWriter(ch, TRACE_EVENTS_SINK)


async def stored_ids(ch):
    r = await ch.query(f"SELECT event_id FROM {ch.database}.events ORDER BY event_id")
    return [x[0] for x in r.rows]


async def test_every_field_and_the_source_arrive(clickhouse):
    full = event("e1", 3, parent_id="p", end_time=T0 + 1500, input_tokens=7, cost=0.25, tags=["a", "ü"],
                 metadata={"k": "v"}, scores={"q": 0.5}, input='"hi"', model="m")
    rec = SinkRecord(Source("trace-events", 2, 41),
                     encode("TraceEventBatch", {"org_id": "o", "trace_id": "t", "events": [full]}))
    assert await writer(clickhouse).write([rec]) == []
    r = await clickhouse.query(
        "SELECT event_id, parent_id, toUnixTimestamp64Milli(occurred_at), toUnixTimestamp64Milli(end_time), "
        "input_tokens, cost, tags, metadata, scores, input, model, class, _topic, _partition, _offset "
        f"FROM {clickhouse.database}.events")
    assert r.rows == [("e1", "p", T0 + 3, T0 + 1500, 7, 0.25, ["a", "ü"], {"k": "v"}, {"q": 0.5}, '"hi"', "m",
                       None, "trace-events", 2, 41)]


async def test_single_event_records_are_stored_too(clickhouse):
    rec = SinkRecord(Source("trace-events", 0, 0), encode("TraceEvent", event("solo", 0)))
    assert await writer(clickhouse).write([rec]) == []
    assert await stored_ids(clickhouse) == ["solo"]


async def test_replayed_batch_is_not_stored_twice(clickhouse):
    batch = records([(0, "a"), (0, "b"), (1, "c")])
    await writer(clickhouse).write(batch)
    restarted = writer(clickhouse)  # a new process after a crash
    await restarted.write(batch + records([(2, "d")]))
    assert await stored_ids(clickhouse) == ["a", "b", "c", "d"]
    assert restarted.rows_skipped == 3


async def test_partially_stored_replay_fills_only_the_gap(clickhouse):
    # offset 5 stored in full, offset 6 not at all, offset 7 only half (a crash between two
    # parts of one insert)
    await writer(clickhouse).write(records([(5, "x5"), (7, "x7a")]))
    replay = writer(clickhouse)
    await replay.write(records([(5, "x5"), (6, "x6"), (7, "x7a"), (7, "x7b"), (8, "x8")]))
    assert await stored_ids(clickhouse) == ["x5", "x6", "x7a", "x7b", "x8"]
    assert replay.rows_skipped == 2


async def test_partitions_are_independent(clickhouse):
    await writer(clickhouse).write(records([(0, "p0")], partition=0))
    replay = writer(clickhouse)
    await replay.write(records([(0, "p0")], partition=0) + records([(0, "p1")], partition=1))
    assert await stored_ids(clickhouse) == ["p0", "p1"]


async def test_corrupt_and_foreign_records_are_rejected_and_the_rest_stored(clickhouse):
    good = records([(0, "ok1"), (3, "ok2")])
    truncated = SinkRecord(Source("trace-events", 0, 1), records([(1, "bad")])[0].value[:-7])
    audit = SinkRecord(Source("trace-events", 0, 2),
                       encode("AuditEvent", {"id": "a", "org_id": "o", "actor": "x", "action": "y",
                                             "target": "z", "metadata": {}, "occurred_at": T0}))
    not_avro = SinkRecord(Source("trace-events", 0, 4), b'{"json": true}')
    rejected = await writer(clickhouse).write([good[0], truncated, audit, good[1], not_avro])
    assert {r.record.source.offset: r.reason.split(" ")[0] for r in rejected} == {
        1: "corrupt", 2: "AuditEvent", 4: "not"}
    assert await stored_ids(clickhouse) == ["ok1", "ok2"]


async def test_audit_records_go_to_their_table(clickhouse):
    rec = SinkRecord(Source("audit-events", 0, 0), encode("AuditEventBatch", {"org_id": "o", "events": [
        {"id": "a1", "org_id": "o", "actor": "ann", "action": "key.create", "target": "k",
         "metadata": {"ip": "::1"}, "occurred_at": T0}]}))
    assert await SinkWriter(clickhouse, AUDIT_EVENTS_SINK).write([rec]) == []
    r = await clickhouse.query(f"SELECT id, actor, action, metadata, _offset FROM {clickhouse.database}.audit_events")
    assert r.rows == [("a1", "ann", "key.create", {"ip": "::1"}, 0)]


async def test_insert_retries_until_clickhouse_takes_it(clickhouse):
    db = clickhouse.database
    await clickhouse.command(f"RENAME TABLE {db}.events TO {db}.events_away")
    task = asyncio.create_task(writer(clickhouse).write(records([(0, "late")])))
    await asyncio.sleep(1.0)
    assert not task.done()  # still retrying, nothing lost, nothing raised
    await clickhouse.command(f"RENAME TABLE {db}.events_away TO {db}.events")
    assert await asyncio.wait_for(task, 30) == []
    assert await stored_ids(clickhouse) == ["late"]
