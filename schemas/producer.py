"""The producer client: publish trace and audit events to Kafka in tracehouse's wire format.

Events of one trace travel as one ``TraceEventBatch`` record keyed by trace_id (see
DESIGN.md "Throughput": every agent pays its per-record cost once per batch).
``EventProducer.send_trace_events`` publishes a request's worth of events at once;
``EventProducer.add`` lingers and groups events per trace for producers that emit
one event at a time.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.codec import MAGIC
from schemas.compiled import long_bytes
from schemas.registry import schema
from schemas.topics import AUDIT_EVENTS, INVALID_EVENTS, TRACE_EVENTS

#: Upper bounds of one batch record; bigger groups are split into several records.
MAX_EVENTS_PER_RECORD = 500
MAX_RECORD_BYTES = 768 * 1024


def pack_batches(schema_name: str, header: dict[str, Any], events: list[bytes]) -> Iterator[bytes]:
    """Batch records of already encoded events, in order: at most ``MAX_EVENTS_PER_RECORD``
    events and ``MAX_RECORD_BYTES`` bytes each (an event bigger than that travels alone).

    A batch schema ends with its ``events`` array, so a record is the header's encoding,
    one array block (count, events) and the end marker: what fastavro writes for it.
    """
    s = schema(schema_name)
    # the header fields, then an empty events array (b"\x00") that the block replaces
    prefix = MAGIC + s.fingerprint + s.codec.encode({**header, "events": []})[:-1]
    chunk: list[bytes] = []
    size = len(prefix) + 4  # + the block count (at most 3 bytes) and the end marker
    for event in events:
        if chunk and (len(chunk) == MAX_EVENTS_PER_RECORD or size + len(event) > MAX_RECORD_BYTES):
            yield _record(prefix, chunk)
            chunk, size = [], len(prefix) + 4
        chunk.append(event)
        size += len(event)
    if chunk:
        yield _record(prefix, chunk)


def _record(prefix: bytes, events: list[bytes]) -> bytes:
    return b"".join((prefix, long_bytes(len(events)), *events, b"\x00"))


def group_by_trace(events: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Group validated events by (org_id, trace_id), keeping arrival order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        groups[(ev["org_id"], ev["trace_id"])].append(ev)
    return groups


def trace_records(events: Iterable[dict[str, Any]]) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) records for ``trace-events``: one batch per trace (and chunk), keyed by trace_id."""
    encode_event = schema("TraceEvent").codec.encode
    for (org_id, trace_id), group in group_by_trace(events).items():
        yield from trace_batch_records(org_id, trace_id, [encode_event(e) for e in group])


def audit_records(org_id: str, events: list[dict[str, Any]]) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) records for ``audit-events``: one org's events in batches keyed by org_id."""
    encode_event = schema("AuditEvent").codec.encode
    return audit_batch_records(org_id, [encode_event(e) for e in events])


def trace_batch_records(org_id: str, trace_id: str, encoded: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """``trace_records`` of one trace's already encoded ``TraceEvent`` bodies."""
    key = trace_id.encode()
    for value in pack_batches("TraceEventBatch", {"org_id": org_id, "trace_id": trace_id}, encoded):
        yield key, value


def audit_batch_records(org_id: str, encoded: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """``audit_records`` of already encoded ``AuditEvent`` bodies."""
    key = org_id.encode()
    for value in pack_batches("AuditEventBatch", {"org_id": org_id}, encoded):
        yield key, value


class EventProducer:
    """Publishes validated event datums (see ``schemas.model``) to tracehouse's topics."""

    def __init__(self, bootstrap_servers: str, *, linger_ms: int = 10, client_id: str = "tracehouse") -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            max_batch_size=512 * 1024,
            max_request_size=4 * 1024 * 1024,
        )
        self._linger = linger_ms / 1000
        self._pending: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._pending_done: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        if self._pending:
            await self._flush_pending()
        await self._producer.stop()

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def send_records(self, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
        """Publish encoded (key, value) records and wait for every ack; return the count."""
        futures = [await self._producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
        return len(futures)

    async def send_trace_events(self, events: Iterable[dict[str, Any]]) -> int:
        """Publish events as one batch record per trace (and chunk); return the record count."""
        return await self.send_records(TRACE_EVENTS, trace_records(events))

    async def send_audit_events(self, org_id: str, events: list[dict[str, Any]]) -> int:
        """Publish one org's audit events as ``AuditEventBatch`` records keyed by org_id."""
        return await self.send_records(AUDIT_EVENTS, audit_records(org_id, events))

    async def send_invalid(self, reports: Iterable[dict[str, Any]]) -> None:
        """Publish rejection reports (JSON: source, org_id, reason, field, payload) to invalid-events."""
        futures = [
            await self._producer.send(INVALID_EVENTS, json.dumps(r, default=str).encode())
            for r in reports
        ]
        await asyncio.gather(*futures)

    def add(self, event: dict[str, Any]) -> asyncio.Future[None]:
        """Queue one event; it is published with its trace's other events after the linger.

        Returns a future that resolves once the record holding the event is acknowledged
        by Kafka. Every event of one linger window shares that future, which keeps
        ``add`` cheap; wrap it in ``asyncio.shield`` before awaiting it from a task that
        may be cancelled.
        """
        self._pending[(event["org_id"], event["trace_id"])].append(event)
        if self._pending_done is None:
            self._pending_done = asyncio.get_running_loop().create_future()
            self._flusher = asyncio.ensure_future(self._flush_after_linger())
        return self._pending_done

    async def _flush_after_linger(self) -> None:
        await asyncio.sleep(self._linger)
        await self._flush_pending()

    async def _flush_pending(self) -> None:
        pending, done = self._pending, self._pending_done
        self._pending, self._pending_done = defaultdict(list), None
        try:
            await self.send_trace_events(ev for group in pending.values() for ev in group)
        except Exception as exc:
            if done is not None and not done.done():
                done.set_exception(exc)
            return
        if done is not None and not done.done():
            done.set_result(None)
