"""The sink: records to ClickHouse in batches; offsets committed only after the insert.

A plain aiokafka consumer in its own group (``tracehouse-sink``), not a Faust agent:
fetch up to ``batch_records`` (inserting at most once per ``batch_seconds`` unless a batch
fills: a record after a quiet spell goes at once, with what comes within 0.1 s), hand each
record to the writer of its schema, insert, then commit the batch's offsets (quixstreams'
"batch, flush, commit"). Nothing sits in an in-memory queue between the fetch and the insert,
so a restart or rebalance can only replay records, never skip them, and the writer's replay
window (``sinks.writer``) drops what a replay finds already stored. Faust 0.15.3 does not give
that guarantee: after a restart with tables, its recovery clears stream queues
(``clear_on_resume``) after it has already moved its read offsets past the records in them
(measured: a kill -9 restart lost up to 2,880 of 12,000 sealed events; ``docs/integrity-plan.md``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from schemas import kafka_clients
from schemas.codec import DecodeError, schema_of
from schemas.topics import is_padding
from sinks.writer import Rejected, SinkRecord, SinkWriter, Source
from streams.invalid import invalid_report

log = logging.getLogger(__name__)

SINK_GROUP = "tracehouse-sink"
#: How long a record after a quiet spell waits for the ones sent with it (a burst of requests, a
#: producer's linger) before it is inserted: without it the first of six events posted at once went
#: alone and the other five waited out the interval (p50 972 ms after a quiet second, 2026-12-05).
QUIET_LINGER_SECONDS = 0.1


class _ForgetWindows(ConsumerRebalanceListener):
    """Partitions that come back may have been written by another owner meanwhile."""

    def __init__(self, writers: Iterable[SinkWriter]) -> None:
        self.writers = list(writers)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        for writer in self.writers:
            writer.reset()


class Sink:
    """Stores every record of ``topics`` with the writer of its schema."""

    def __init__(self, bootstrap: str, topics: list[str], writers: list[SinkWriter], invalid_topic: str, *,
                 batch_records: int, batch_seconds: float, max_record_bytes: int = 1024 * 1024) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.writers = writers
        self.route = {name: w for w in writers for name in w.spec.schemas}
        self.invalid_topic = invalid_topic
        self.batch_records = batch_records
        self.batch_seconds = batch_seconds
        self.max_record_bytes = max_record_bytes
        self.clock = time.monotonic
        self._last_insert = float("-inf")

    async def run(self) -> None:
        """Consume until cancelled or until the consumer fails (the worker starts it again);
        a batch cut short is not committed."""
        consumer = kafka_clients.consumer(self.bootstrap, SINK_GROUP, group=SINK_GROUP,
                                          max_poll_records=self.batch_records, max_record_bytes=self.max_record_bytes)
        producer = kafka_clients.producer(self.bootstrap, SINK_GROUP)
        async with kafka_clients.started(producer, consumer):
            consumer.subscribe(self.topics, listener=_ForgetWindows(self.writers))
            while True:
                records = await self._next_batch(consumer)
                if records:
                    await self._store(records, producer)
                    self._last_insert = self.clock()
                    # a failed commit replays the batch: the replay window keeps its rows from being written twice
                    await kafka_clients.commit_batch(consumer, records)

    async def _next_batch(self, consumer: AIOKafkaConsumer) -> list[ConsumerRecord]:
        """Up to ``batch_records`` records: what arrives until ``batch_seconds`` after the last insert,
        or, when the first comes later than that, until ``QUIET_LINGER_SECONDS`` after it. So a steady
        stream is inserted once per ``batch_seconds`` (or per full batch), as before, while an event
        after a quiet spell is queryable without waiting out the interval."""
        records: list[ConsumerRecord] = []
        deadline: float | None = None
        while len(records) < self.batch_records:
            wait_ms = 1000 if deadline is None else int((deadline - self.clock()) * 1000)
            if deadline is not None and wait_ms <= 0:
                break
            got = await consumer.getmany(timeout_ms=wait_ms, max_records=self.batch_records - len(records))
            for batch in got.values():
                records.extend(batch)
            if records and deadline is None:
                deadline = max(self.clock() + min(QUIET_LINGER_SECONDS, self.batch_seconds),
                               self._last_insert + self.batch_seconds)
            if deadline is None:
                return records  # idle: let the caller loop (and a cancel land) between polls
        return records

    async def _store(self, records: list[ConsumerRecord], producer: AIOKafkaProducer) -> None:
        per_writer: dict[SinkWriter, list[SinkRecord]] = {w: [] for w in self.writers}
        rejected: list[Rejected] = []
        for msg in records:
            if is_padding(msg.headers):
                continue  # stands for a record the broker lost (streams.chain.SealedTail)
            record = SinkRecord(Source(msg.topic, msg.partition, msg.offset), msg.value or b"")
            try:
                name = schema_of(record.value)
                per_writer[self.route[name]].append(record)
            except DecodeError as exc:
                rejected.append(Rejected(record, str(exc)))
            except KeyError:
                rejected.append(Rejected(record, f"{name} records do not belong on {msg.topic}"))
        for writer, batch in per_writer.items():
            if batch:
                rejected += await writer.write(batch)
        for r in rejected:
            src = r.record.source
            log.warning("invalid record %s[%d]@%d: %s", src.topic, src.partition, src.offset, r.reason)
            await producer.send_and_wait(
                self.invalid_topic, invalid_report(src.topic, src.partition, src.offset, r.reason, r.record.value))
