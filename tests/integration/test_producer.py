"""The producer client against a real broker: lingering ``add`` groups events per trace."""

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.codec import decode
from schemas.model import validate_trace_event
from schemas.producer import BrokerUnavailable, EventProducer
from schemas.timefmt import now_ms
from streams.embedded.broker import free_port


async def read_all(bootstrap: str, topic: str, n: int) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"g-{uuid.uuid4().hex}")
    await consumer.start()
    try:
        out = []
        async with asyncio.timeout(20):
            while len(out) < n:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    out += batch
        return out
    finally:
        await consumer.stop()


async def test_lingering_add_sends_one_record_per_trace(broker, monkeypatch):
    topic = f"trace-events-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 2, 1)])
    await admin.close()
    monkeypatch.setattr("schemas.producer.TRACE_EVENTS", topic)
    now = now_ms()
    events = [validate_trace_event({"trace_id": f"tr-{i % 2}", "name": f"s{i}"}, org_id="acme", now=now)
              for i in range(40)]
    async with EventProducer(broker.bootstrap, linger_ms=50) as producer:
        acks = [producer.add(e) for e in events]
        await asyncio.gather(*acks)
    records = await read_all(broker.bootstrap, topic, 2)
    batches = {r.key.decode(): decode(r.value) for r in records}
    assert sorted(batches) == ["tr-0", "tr-1"]
    assert all(b.schema == "TraceEventBatch" for b in batches.values())
    assert [e["name"] for e in batches["tr-1"].datum["events"]] == [f"s{i}" for i in range(1, 40, 2)]


async def test_a_failed_send_replaces_the_poisoned_idempotent_producer(broker):
    """A record the topic refuses used to leave that partition answering OutOfOrderSequenceNumber
    to every later send of the same idempotent producer (measured: 5 of 20 small sends)."""
    topic = f"capped-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1, topic_configs={"max.message.bytes": "1048588"})])
    await admin.close()
    async with EventProducer(broker.bootstrap, linger_ms=0, send_timeout=10) as producer:
        with pytest.raises(BrokerUnavailable):
            await producer.send_records(topic, [(b"k", b"x" * 1_500_000)])
        assert producer.replaced == 1
        for i in range(40):  # every partition, one record each time
            assert await producer.send_records(topic, [(f"k{i}".encode(), b"y" * 100)]) == 1
        assert producer.replaced == 1
    records = await read_all(broker.bootstrap, topic, 40)
    assert sorted(r.value for r in records) == [b"y" * 100] * 40


async def test_no_broker_is_broker_unavailable_within_the_send_timeout():
    producer = EventProducer(f"127.0.0.1:{free_port()}", linger_ms=0, send_timeout=1.5)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await producer.send_records("trace-events", [(b"k", b"v")])
    assert time.monotonic() - started < 3
    assert not await producer.ping()
    await producer.stop()
