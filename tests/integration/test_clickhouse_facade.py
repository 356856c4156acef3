"""The ClickHouse facade runs calls side by side (embedded chdb included): a slow call
does not hold up the ones made after it."""

from __future__ import annotations

import asyncio

from sinks.clickhouse import ClickHouse


async def test_a_slow_query_does_not_queue_the_next(clickhouse: ClickHouse) -> None:
    slow = asyncio.create_task(clickhouse.query("SELECT sleep(2)"))
    await asyncio.sleep(0.05)  # the slow query is on its thread
    assert (await clickhouse.query("SELECT 41 + 1")).rows == [(42,)]
    assert not slow.done()  # the second answered while the first still ran
    await slow


async def test_writes_are_seen_by_every_client(clickhouse: ClickHouse) -> None:
    table = f"{clickhouse.database}.facade_check"
    await clickhouse.command(f"CREATE TABLE {table} (n UInt32) ENGINE = MergeTree ORDER BY n")
    # several at once, so they land on different threads' clients
    await asyncio.gather(*(clickhouse.command(f"INSERT INTO {table} VALUES ({n})") for n in range(8)))
    counts = await asyncio.gather(*(clickhouse.query(f"SELECT count(), sum(n) FROM {table}") for _ in range(8)))
    assert {c.rows[0] for c in counts} == {(8, 28)}
