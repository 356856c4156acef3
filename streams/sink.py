"""The sink agents: event topics to ClickHouse, in batches, committed only after the insert.

Faust's ``take_events`` acks a batch in a ``finally`` once the loop body ends, even
when the body was cancelled mid-insert at shutdown. So each message gets one extra
reference when it enters the batch and loses it only after its rows are stored:
a batch cut short stays unacked, its offsets uncommitted, and it is read again.
"""

from __future__ import annotations

import base64
import json
import logging

import faust

from sinks.writer import Rejected, SinkRecord, SinkWriter, Source

log = logging.getLogger(__name__)


def invalid_report(rejected: Rejected) -> bytes:
    """The ``invalid-events`` entry for a record the sink cannot store."""
    src, value = rejected.record.source, rejected.record.value
    return json.dumps({
        "source": f"kafka:{src.topic}/{src.partition}@{src.offset}",
        "reason": rejected.reason,
        "payload_base64": base64.b64encode(value).decode(),
    }).encode()


def add_sink_agent(app: faust.App, topic: faust.TopicT, writer: SinkWriter,
                   invalid_topic: faust.TopicT, *, batch_records: int, batch_seconds: float) -> None:
    """Register an agent that stores every record of ``topic`` with ``writer``."""

    async def sink(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch_records, within=batch_seconds):
            records = []
            for ev in events:
                ev.message.incref()  # held until the rows are stored (see module doc)
                msg = ev.message
                records.append(SinkRecord(Source(msg.topic, msg.partition, msg.offset), ev.value or b""))
            for rejected in await writer.write(records):
                log.warning("invalid record %s@%d: %s", rejected.record.source.topic,
                            rejected.record.source.offset, rejected.reason)
                await (await invalid_topic.send(value=invalid_report(rejected)))
            for ev in events:
                ev.ack()

    app.agent(topic, name=f"sink-{writer.table}")(sink)
