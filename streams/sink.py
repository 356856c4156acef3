"""The sink agent: records to ClickHouse, in batches, committed only after the insert.

One agent reads one topic and hands each record to the writer of its schema
(``sealed-events`` carries trace and audit batches; the unchained baseline reads the
raw topics). Faust's ``take_events`` acks a batch in a ``finally`` once the loop body
ends, even when the body was cancelled mid-insert at shutdown. So each message gets
one extra reference when it enters the batch and loses it only after its rows are
stored: a batch cut short stays unacked, its offsets uncommitted, and it is read again.
"""

from __future__ import annotations

import logging

import faust

from schemas.codec import DecodeError, schema_of
from sinks.writer import Rejected, SinkRecord, SinkWriter, Source
from streams.invalid import invalid_report

log = logging.getLogger(__name__)


def add_sink_agent(app: faust.App, topic: faust.TopicT, writers: list[SinkWriter],
                   invalid_topic: faust.TopicT, *, batch_records: int, batch_seconds: float) -> None:
    """Register an agent that stores every record of ``topic`` with the writer of its schema."""
    route = {name: w for w in writers for name in w.spec.schemas}

    async def sink(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch_records, within=batch_seconds):
            batches: dict[SinkWriter, list[SinkRecord]] = {w: [] for w in writers}
            rejected: list[Rejected] = []
            for ev in events:
                ev.message.incref()  # held until the rows are stored (see module doc)
                msg = ev.message
                record = SinkRecord(Source(msg.topic, msg.partition, msg.offset), ev.value or b"")
                try:
                    name = schema_of(record.value)
                    batches[route[name]].append(record)
                except DecodeError as exc:
                    rejected.append(Rejected(record, str(exc)))
                except KeyError:
                    rejected.append(Rejected(record, f"{name} records do not belong on {msg.topic}"))
            for writer, records in batches.items():
                if records:
                    rejected += await writer.write(records)
            for r in rejected:
                src = r.record.source
                log.warning("invalid record %s[%d]@%d: %s", src.topic, src.partition, src.offset, r.reason)
                await (await invalid_topic.send(
                    value=invalid_report(src.topic, src.partition, src.offset, r.reason, r.record.value)))
            for ev in events:
                ev.ack()

    app.agent(topic, name=f"sink-{topic.get_topic_name()}")(sink)
