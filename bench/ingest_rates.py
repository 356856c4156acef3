"""What the ingest benches share: the service's settings, the events they send, the raw produce
baseline, and ingest rates and latency measured through the API until the events are queryable."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.stats import post_all, wait_stored
from schemas.model import validate_trace_event
from schemas.producer import EventProducer
from schemas.timefmt import format_ms, now_ms, parse_ms
from tests.support.service import Api

#: The service runs with the production defaults (the test harness's shorter intervals would send a key
#: lookup and a rollup query to ClickHouse twice a second) but a 5 s trim interval and warnings-only logs
BENCH_ENV = {"TRACEHOUSE_SINK_BATCH_SECONDS": "1.0", "TRACEHOUSE_TRIM_INTERVAL_SECONDS": "5",
             "TRACEHOUSE_LOG_LEVEL": "WARNING", "TRACEHOUSE_KEY_CACHE_SECONDS": "30",
             "TRACEHOUSE_ROLLUP_INTERVAL_SECONDS": "5", "TRACEHOUSE_COMMIT_INTERVAL_SECONDS": "1"}
PAYLOAD = "x" * 120  # ~380-byte Avro events, as measured on the development machine


def event(i: int, per_trace: int, prefix: str, base_ms: int) -> dict:
    return {"event_id": f"{prefix}{i}", "trace_id": f"{prefix}t{i // per_trace}", "type": "SPAN",
            "name": "step", "model": "gpt-4o", "occurred_at": format_ms(base_ms + i),
            "input_tokens": 10, "output_tokens": 20, "cost": 0.0004, "tags": ["bench"],
            "metadata": {"k": "v"}, "input": PAYLOAD}


async def raw_produce_rate(bootstrap: str, n: int = 50_000) -> float:
    payload = os.urandom(380)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                                linger_ms=10, max_batch_size=512 * 1024)
    await producer.start()
    try:
        t0 = time.monotonic()
        futures = [await producer.send("bench-raw", payload, key=str(i % 64).encode()) for i in range(n)]
        await asyncio.gather(*futures)
        return n / (time.monotonic() - t0)
    finally:
        await producer.stop()
        await drop_records(bootstrap, "bench-raw")


async def drop_records(bootstrap: str, topic: str) -> None:
    """Delete the baseline's records: nobody consumes them, so the trimmer rightly keeps them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        await consumer.topics()  # a fresh consumer knows no partitions before a metadata fetch
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(tps)
        await admin.delete_records({tp: RecordsToDelete(before_offset=o) for tp, o in ends.items()})
    finally:
        await consumer.stop()
        await admin.close()


async def http_rate(api: Api, key: str, n: int, per_trace: int, prefix: str, concurrency: int = 8, *,
                    otlp: bool = False) -> float:
    """Events/s until queryable for ``n`` events posted ``max(200, per_trace)`` a request to /v1/events as
    JSON, or (``otlp``) as OTLP protobuf spans to /v1/traces."""
    base = now_ms() - 3_600_000
    per_request = max(200, per_trace)
    encode = otlp_request if otlp else (lambda events: json.dumps(events).encode())
    # bodies are serialized before the clock starts: the client's encoding work is not tracehouse's
    bodies = [encode([event(i, per_trace, prefix, base) for i in range(s, min(s + per_request, n))])
              for s in range(0, n, per_request)]
    post = {"path": "/v1/traces", "content_type": "application/x-protobuf", "expect": 200} if otlp else {}
    t0 = time.monotonic()
    await post_all(api, key, bodies, concurrency, **post)
    return n / (await wait_stored(api, key, n) - t0)


def otlp_request(events: list[dict]) -> bytes:
    """``events`` (``event()``'s) as the OTLP protobuf request a GenAI-instrumented app would send: one
    span each, with the model, tokens, tags, metadata and input as attributes."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "bench"
    spans = rs.scope_spans.add().spans
    for e in events:
        start_ns = parse_ms(e["occurred_at"]) * 1_000_000
        span = spans.add(trace_id=hashlib.md5(e["trace_id"].encode()).digest(),
                         span_id=hashlib.md5(e["event_id"].encode()).digest()[:8], name=e["name"],
                         start_time_unix_nano=start_ns, end_time_unix_nano=start_ns + 1_000_000)
        attrs = span.attributes
        attrs.add(key="gen_ai.request.model").value.string_value = e["model"]
        attrs.add(key="gen_ai.usage.input_tokens").value.int_value = e["input_tokens"]
        attrs.add(key="gen_ai.usage.output_tokens").value.int_value = e["output_tokens"]
        attrs.add(key="llm.cost.total").value.double_value = e["cost"]
        attrs.add(key="tag.tags").value.array_value.values.add().string_value = e["tags"][0]
        attrs.add(key="input.value").value.string_value = e["input"]
        for k, v in e["metadata"].items():
            attrs.add(key=k).value.string_value = v
    return request.SerializeToString()


async def direct_rate(api: Api, bootstrap: str, org_id: str, key: str, n: int, prefix: str) -> float:
    base = now_ms() - 3_600_000
    datums = [validate_trace_event(event(i, 20, prefix, base), org_id=org_id, now=base) for i in range(n)]
    t0 = time.monotonic()
    async with EventProducer(bootstrap, linger_ms=20) as producer:
        for s in range(0, n, 2000):  # lingering producer, 2,000 events in flight
            await asyncio.gather(*{producer.add(d) for d in datums[s:s + 2000]})
    return n / (await wait_stored(api, key, n) - t0)


async def latency(api: Api, key: str, samples: int = 60, quiet_s: float = 0.0) -> list[float]:
    """Ms from posting an event until it is queryable, for ``samples`` events posted six at a time,
    each round as soon as the one before is queryable (a steady stream: the sink inserts once per
    interval), or ``quiet_s`` after it (with the sink's interval: events after a quiet spell)."""
    out: list[float] = []

    async def one(i: int) -> None:
        trace = f"lat-{uuid.uuid4().hex[:8]}"
        t0 = time.monotonic()
        await api.post("/v1/events", key, [{"trace_id": trace, "type": "SPAN"}])
        while (await api.get(f"/v1/traces/{trace}", key))[0] != 200:
            await asyncio.sleep(0.01)
        out.append((time.monotonic() - t0) * 1000)

    for s in range(0, samples, 6):
        await asyncio.sleep(quiet_s)
        await asyncio.gather(*(one(i) for i in range(s, min(s + 6, samples))))
    return out
