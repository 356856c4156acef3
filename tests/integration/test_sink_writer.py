"""The sink writer against real ClickHouse: exactly-once by source offsets, retry on failure."""

import asyncio

from sinks.rows import Source, row_line
from sinks.writer import PendingRow, SinkWriter

T0 = 1_795_428_000_000


def rows(offsets_and_ids, partition=0, month_offset_ms=0):
    out = []
    for offset, eid in offsets_and_ids:
        datum = {"event_id": eid, "org_id": "o", "trace_id": "t", "type": "SPAN",
                 "occurred_at": T0 + month_offset_ms + offset, "scores": {}, "tags": [], "metadata": {}}
        src = Source("trace-events", partition, offset)
        out.append(PendingRow(src, eid, row_line(datum, src)))
    return out


async def stored_ids(ch):
    r = await ch.query(f"SELECT event_id FROM {ch.database}.events ORDER BY event_id")
    return [x[0] for x in r.rows]


async def test_replayed_batch_is_not_stored_twice(clickhouse):
    batch = rows([(0, "a"), (0, "b"), (1, "c")])
    assert await SinkWriter(clickhouse, "events", "event_id").write(batch) == 3
    restarted = SinkWriter(clickhouse, "events", "event_id")  # a new process after a crash
    assert await restarted.write(batch + rows([(2, "d")])) == 1
    assert await stored_ids(clickhouse) == ["a", "b", "c", "d"]
    assert restarted.rows_skipped == 3


async def test_partially_stored_replay_fills_only_the_gap(clickhouse):
    writer = SinkWriter(clickhouse, "events", "event_id")
    # offsets 5 and 7 landed, 6 did not (e.g. a crash between two parts of one insert)
    await writer.write(rows([(5, "x5"), (7, "x7")]))
    replay = SinkWriter(clickhouse, "events", "event_id")
    assert await replay.write(rows([(5, "x5"), (6, "x6"), (7, "x7"), (8, "x8")])) == 2
    assert await stored_ids(clickhouse) == ["x5", "x6", "x7", "x8"]


async def test_partitions_are_independent(clickhouse):
    writer = SinkWriter(clickhouse, "events", "event_id")
    await writer.write(rows([(0, "p0")], partition=0))
    replay = SinkWriter(clickhouse, "events", "event_id")
    assert await replay.write(rows([(0, "p0")], partition=0) + rows([(0, "p1")], partition=1)) == 1


async def test_insert_retries_until_clickhouse_takes_it(clickhouse):
    db = clickhouse.database
    await clickhouse.command(f"RENAME TABLE {db}.events TO {db}.events_away")
    writer = SinkWriter(clickhouse, "events", "event_id")
    task = asyncio.create_task(writer.write(rows([(0, "late")])))
    await asyncio.sleep(1.0)
    assert not task.done()  # still retrying, nothing lost, nothing raised
    await clickhouse.command(f"RENAME TABLE {db}.events_away TO {db}.events")
    assert await asyncio.wait_for(task, 30) == 1
    assert await stored_ids(clickhouse) == ["late"]
