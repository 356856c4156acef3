"""Hourly rollups against real ClickHouse (and a real broker for the publisher): the sink's
view sums every stored event once, replays included; the publisher's marks find exactly the
hours that changed, and it sends each of them whole."""

import asyncio
import contextlib
import uuid

from aiokafka import AIOKafkaProducer

from schemas.codec import decode, encode
from sinks.migrate import migrate
from sinks.repositories.rollups import HOUR_MS, RollupRepository
from sinks.writer import TRACE_EVENTS_SINK, SinkRecord, SinkWriter, Source
from streams.embedded.trim import log_extents
from streams.rollups import RollupPublisher
from streams.topics import ensure_topics
from tests.integration.test_producer import read_all

H0 = 1_795_428_000_000 // HOUR_MS * HOUR_MS  # an hour's start


def event(eid: str, at: int, org: str = "o", **kw) -> dict:
    return {"event_id": eid, "org_id": org, "trace_id": "t", "type": "SPAN", "occurred_at": at,
            "scores": {}, "tags": [], "metadata": {}} | kw


def record(offset: int, *events: dict, partition: int = 0) -> SinkRecord:
    org = events[0]["org_id"]
    return SinkRecord(Source("trace-events", partition, offset),
                      encode("TraceEventBatch", {"org_id": org, "trace_id": "t", "events": list(events)}))


async def test_buckets_sum_counts_errors_tokens_and_cost_per_hour_type_and_outcome(clickhouse):
    await SinkWriter(clickhouse, TRACE_EVENTS_SINK).write([
        record(0, event("a", H0 + 5, type="GENERATION", input_tokens=3, output_tokens=4, cost=0.5),
               event("b", H0 + 10, type="GENERATION", total_tokens=10, status="STATUS_CODE_ERROR")),
        record(1, event("c", H0 + HOUR_MS - 1, type="tool.executed", outcome="ok")),
        record(2, event("d", H0 + HOUR_MS, type="tool.executed", outcome="ok")),
        record(3, event("x", H0, org="other")),
    ])
    got = [b.to_json() for b in await RollupRepository(clickhouse).buckets("o", H0, None)]
    assert got == [
        {"hour": "2026-11-23T10:00:00.000Z", "type": "GENERATION", "outcome": None, "count": 2, "errors": 1,
         "input_tokens": 3, "output_tokens": 4, "total_tokens": 17, "cost": 0.5},
        {"hour": "2026-11-23T10:00:00.000Z", "type": "tool.executed", "outcome": "ok", "count": 1, "errors": 0,
         "input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cost": 0.0},
        {"hour": "2026-11-23T11:00:00.000Z", "type": "tool.executed", "outcome": "ok", "count": 1, "errors": 0,
         "input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cost": 0.0},
    ]
    # hours are whole: since inside an hour includes it, until inside an hour includes it
    repo = RollupRepository(clickhouse)
    assert [b.hour for b in await repo.buckets("o", H0 + HOUR_MS + 1, None)] == [H0 + HOUR_MS]
    assert [b.hour for b in await repo.buckets("o", H0, H0 + 1)] == [H0, H0]
    assert await repo.buckets("nobody", H0, None) == []


async def test_a_replay_after_a_crash_counts_nothing_twice(clickhouse):
    batch = [record(0, event("a", H0), event("b", H0)), record(1, event("c", H0))]
    await SinkWriter(clickhouse, TRACE_EVENTS_SINK).write(batch[:1])
    restarted = SinkWriter(clickhouse, TRACE_EVENTS_SINK)  # a new process replays both records
    await restarted.write(batch + [record(2, event("d", H0))])
    [bucket] = await RollupRepository(clickhouse).buckets("o", H0, None)
    assert bucket.events == 4 and restarted.rows_skipped == 2


async def lose(ch, table: str, offset: int) -> None:
    """As if a crash had cut the insert of ``offset``'s record before ``table``'s part."""
    await ch.command(f"ALTER TABLE {ch.database}.{table} DELETE WHERE _offset = {offset} SETTINGS mutations_sync = 2")


async def test_a_crash_between_the_events_part_and_the_rollups_part_counts_each_event_once(clickhouse):
    records = [record(0, event("a", H0)), record(1, event("b", H0), event("c", H0))]
    writer = SinkWriter(clickhouse, TRACE_EVENTS_SINK)
    await writer.write(records[:1])
    await writer.write(records[1:])
    await lose(clickhouse, "rollups_hourly", 1)  # events of offset 1 stored, their rollup not
    await SinkWriter(clickhouse, TRACE_EVENTS_SINK).write(records)
    [bucket] = await RollupRepository(clickhouse).buckets("o", H0, None)
    assert bucket.events == 3

    await lose(clickhouse, "events", 1)  # the other way round: the rollup stored, the events not
    replay = SinkWriter(clickhouse, TRACE_EVENTS_SINK)
    await replay.write(records)
    [bucket] = await RollupRepository(clickhouse).buckets("o", H0, None)
    assert bucket.events == 3 and replay.rows_skipped == 1
    rows = await clickhouse.query(f"SELECT event_id FROM {clickhouse.database}.events ORDER BY event_id")
    assert [r[0] for r in rows.rows] == ["a", "b", "c"]


async def test_marks_find_the_hours_changed_since_the_last_round(clickhouse):
    repo = RollupRepository(clickhouse)
    writer = SinkWriter(clickhouse, TRACE_EVENTS_SINK)
    await writer.write([record(0, event("a", H0)), record(0, event("b", H0 + HOUR_MS), partition=1)])
    changed, marks = await repo.changed_since({})
    assert changed == [("o", H0), ("o", H0 + HOUR_MS)]
    assert marks == {("trace-events", 0): 1, ("trace-events", 1): 1}
    assert await repo.changed_since(marks) == ([], marks)

    # a late event changes an old hour again; another org's hour is its own
    await writer.write([record(1, event("late", H0 - 3)), record(1, event("x", H0, org="p"), partition=1)])
    changed, after = await repo.changed_since(marks)
    assert changed == [("o", H0 - HOUR_MS), ("p", H0)]
    assert after == {("trace-events", 0): 2, ("trace-events", 1): 2}
    hours = await repo.hours(changed)
    assert [b.events for b in hours[("o", H0 - HOUR_MS)]] == [1]
    assert set(hours) == set(changed)

    await repo.save_marks(after)
    assert await repo.marks() == after
    await repo.save_marks({("trace-events", 0): 7})
    assert await repo.marks() == {("trace-events", 0): 7, ("trace-events", 1): 2}


async def test_the_migration_counts_the_events_stored_before_it(clickhouse):
    await SinkWriter(clickhouse, TRACE_EVENTS_SINK).write([record(0, event("a", H0)), record(3, event("b", H0))])
    db = clickhouse.database
    await clickhouse.command(f"DROP VIEW {db}.rollups_hourly_mv")  # as before migration 0012
    await clickhouse.command(f"DROP TABLE {db}.rollups_hourly")
    await clickhouse.command(f"ALTER TABLE {db}.schema_migrations DELETE WHERE version = 12 "
                             "SETTINGS mutations_sync = 2")
    assert "0012_rollups_hourly.sql" in await migrate(clickhouse)
    repo = RollupRepository(clickhouse)
    [bucket] = await repo.buckets("o", H0, None)
    assert bucket.events == 2
    assert await repo.changed_since({}) == ([("o", H0)], {("trace-events", 0): 4})


async def published(bootstrap: str, topic: str) -> list[dict]:
    """Every HourlyRollup on ``topic``, in partition then offset order."""
    extents = await log_extents(bootstrap, [topic])
    n = sum(end - start for start, end in extents.values())
    return [decode(r.value).datum | {"key": r.key.decode()} for r in await read_all(bootstrap, topic, n)] if n else []


async def test_the_publisher_sends_each_changed_hour_whole_once_and_again_when_it_changes(clickhouse, broker):
    topic = f"rollups-{uuid.uuid4().hex[:6]}"
    await ensure_topics(broker.bootstrap, 1, topics=(topic,))
    writer, repo = SinkWriter(clickhouse, TRACE_EVENTS_SINK), RollupRepository(clickhouse)
    publisher = RollupPublisher(broker.bootstrap, topic, repo, interval=0.05)
    await writer.write([record(0, event("a", H0), event("b", H0 + 1, type="GENERATION", cost=0.25)),
                        record(1, event("x", H0 + HOUR_MS, org="p"))])
    async with AIOKafkaProducer(bootstrap_servers=broker.bootstrap) as producer:
        marks = await publisher.publish_changed(producer, {})
        assert await publisher.publish_changed(producer, marks) == marks  # nothing changed: nothing sent
        first = await published(broker.bootstrap, topic)
        assert [(r["key"], r["hour"], [(b["type"], b["events"], b["cost"]) for b in r["buckets"]]) for r in first] == [
            ("o", H0, [("GENERATION", 1, 0.25), ("SPAN", 1, 0.0)]), ("p", H0 + HOUR_MS, [("SPAN", 1, 0.0)])]

        await writer.write([record(2, event("late", H0 + 7))])  # a late event changes o's hour: all of it again
        await publisher.publish_changed(producer, marks)
        again = (await published(broker.bootstrap, topic))[len(first):]
        assert [(r["key"], r["hour"], [(b["type"], b["events"]) for b in r["buckets"]]) for r in again] == [
            ("o", H0, [("GENERATION", 1), ("SPAN", 2)])]

    # a restarted publisher starts from the saved marks: nothing is sent twice
    task = asyncio.create_task(RollupPublisher(broker.bootstrap, topic, repo, interval=0.05).run())
    await asyncio.sleep(1)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(await published(broker.bootstrap, topic)) == len(first) + 1


async def test_two_publishers_publish_each_change_once_and_the_survivor_takes_over(clickhouse, broker):

    topic = f"rollups-{uuid.uuid4().hex[:6]}"
    await ensure_topics(broker.bootstrap, 1, topics=(topic,))
    writer, repo = SinkWriter(clickhouse, TRACE_EVENTS_SINK), RollupRepository(clickhouse)
    await writer.write([record(0, event("a", H0)), record(1, event("x", H0 + HOUR_MS, org="p"))])
    publishers = [RollupPublisher(broker.bootstrap, topic, repo, interval=0.05) for _ in range(2)]
    tasks = [asyncio.create_task(p.run()) for p in publishers]

    async def published_settles_at(count: int) -> None:
        for _ in range(300):
            if len(await published(broker.bootstrap, topic)) >= count:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # a second publisher would have sent its copies by now
        assert len(await published(broker.bootstrap, topic)) == count

    try:
        await published_settles_at(2)  # two changed hours, once each
        await writer.write([record(2, event("late", H0 + 7))])
        await published_settles_at(3)
        assert sorted(p.elected for p in publishers) == [False, True]
        leader = tasks[[p.elected for p in publishers].index(True)]
        leader.cancel()  # the other one must take over
        with contextlib.suppress(asyncio.CancelledError):
            await leader
        await writer.write([record(3, event("later", H0 + HOUR_MS + 9, org="p"))])
        await published_settles_at(4)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
