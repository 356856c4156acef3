"""The sink agents: raw topics to ClickHouse, in batches, committed only after the insert.

Faust's ``take_events`` acks a batch in a ``finally`` once the loop body ends, even
when the body was cancelled mid-insert at shutdown. So each message gets one extra
reference when it enters the batch and loses it only after its rows are stored:
a batch cut short stays unacked, its offsets uncommitted, and it is read again.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import faust

from schemas.codec import DecodeError, decode
from sinks.rows import Source, events_of, row_line
from sinks.writer import PendingRow, SinkWriter

log = logging.getLogger(__name__)

EXPECTED = {
    "events": ("TraceEvent", "TraceEventBatch"),
    "audit_events": ("AuditEvent", "AuditEventBatch"),
}


def rows_of(event: Any, table: str) -> tuple[list[PendingRow], dict[str, Any] | None]:
    """Rows of one Faust event, or an invalid-events report when it can't be stored."""
    msg = event.message
    source = Source(msg.topic, msg.partition, msg.offset)
    id_column = "event_id" if table == "events" else "id"
    try:
        decoded = decode(event.value)
        if decoded.schema not in EXPECTED[table]:
            raise DecodeError(f"{decoded.schema} records do not belong on {msg.topic}")
    except DecodeError as exc:
        return [], {
            "source": f"kafka:{msg.topic}/{msg.partition}@{msg.offset}",
            "reason": str(exc),
            "payload_base64": base64.b64encode(event.value or b"").decode(),
        }
    rows = [PendingRow(source, d[id_column], row_line(d, source)) for d in events_of(decoded)]
    return rows, None


def add_sink_agent(app: faust.App, topic: faust.TopicT, writer: SinkWriter,
                   invalid_topic: faust.TopicT, *, batch_records: int, batch_seconds: float,
                   on_written: Callable[[int], None] | None = None) -> None:
    """Register an agent that stores every record of ``topic`` in ``writer.table``."""

    async def sink(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch_records, within=batch_seconds):
            for ev in events:
                ev.message.incref()  # held until the rows are stored (see module doc)
            rows: list[PendingRow] = []
            for ev in events:
                ev_rows, report = rows_of(ev, writer.table)
                rows.extend(ev_rows)
                if report is not None:
                    log.warning("invalid record %s: %s", report["source"], report["reason"])
                    await (await invalid_topic.send(value=json.dumps(report).encode()))
            written = await writer.write(rows)
            for ev in events:
                ev.ack()
            if on_written is not None:
                on_written(written)

    app.agent(topic, name=f"sink-{writer.table}")(sink)
