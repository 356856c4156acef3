"""One member per group holds everything (streams.election), against a real broker."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.election import ELECTED


async def held(consumer: AIOKafkaConsumer) -> set[int]:
    await consumer.getmany(timeout_ms=100)
    return {tp.partition for tp in consumer.assignment()}


async def until(probe, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, "timed out"


async def test_one_member_holds_every_partition_and_a_survivor_takes_over(broker) -> None:
    topic, group = f"elect-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    await admin.close()
    first, second = (AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                                      enable_auto_commit=False, **ELECTED) for _ in range(2))
    await first.start()
    await second.start()
    try:
        async def one_holds_all() -> bool:
            got = await asyncio.gather(held(first), held(second))
            return sorted(map(len, got)) == [0, 4]
        await until(one_holds_all)
        leader, follower = (first, second) if first.assignment() else (second, first)
        await leader.stop()  # leaves the group

        async def follower_holds_all() -> bool:
            return await held(follower) == {0, 1, 2, 3}
        await until(follower_holds_all)
    finally:
        await first.stop()
        await second.stop()
