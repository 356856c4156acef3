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
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.codec import encode
from schemas.topics import AUDIT_EVENTS, INVALID_EVENTS, TRACE_EVENTS

#: Upper bounds of one batch record; bigger groups are split into several records.
MAX_EVENTS_PER_RECORD = 500
MAX_RECORD_BYTES = 768 * 1024


def chunk_events(events: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    """Split one trace's events into chunks small enough for one record each."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for ev in events:
        ev_size = 256 + sum(len(v) for v in ev.values() if isinstance(v, str))
        if chunk and (len(chunk) >= MAX_EVENTS_PER_RECORD or size + ev_size > MAX_RECORD_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(ev)
        size += ev_size
    if chunk:
        yield chunk


def group_by_trace(events: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Group validated events by (org_id, trace_id), keeping arrival order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        groups[(ev["org_id"], ev["trace_id"])].append(ev)
    return groups


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

    async def send_trace_events(self, events: Iterable[dict[str, Any]]) -> int:
        """Publish events as one batch record per trace (and chunk); return the record count."""
        futures = []
        for (org_id, trace_id), group in group_by_trace(events).items():
            for chunk in chunk_events(group):
                value = encode("TraceEventBatch", {"org_id": org_id, "trace_id": trace_id, "events": chunk})
                futures.append(await self._producer.send(TRACE_EVENTS, value, key=trace_id.encode()))
        await asyncio.gather(*futures)
        return len(futures)

    async def send_audit_events(self, org_id: str, events: list[dict[str, Any]]) -> int:
        """Publish one org's audit events as ``AuditEventBatch`` records keyed by org_id."""
        futures = []
        for chunk in chunk_events(events):
            value = encode("AuditEventBatch", {"org_id": org_id, "events": chunk})
            futures.append(await self._producer.send(AUDIT_EVENTS, value, key=org_id.encode()))
        await asyncio.gather(*futures)
        return len(futures)

    async def send_invalid(self, reports: Iterable[dict[str, Any]]) -> None:
        """Publish rejection reports (JSON: source, org_id, reason, field, payload) to invalid-events."""
        futures = [
            await self._producer.send(INVALID_EVENTS, json.dumps(r, default=str).encode())
            for r in reports
        ]
        await asyncio.gather(*futures)

    async def add(self, event: dict[str, Any]) -> None:
        """Queue one event; it is published with its trace's other events after the linger.

        Returns once the record holding the event has been acknowledged by Kafka.
        """
        self._pending[(event["org_id"], event["trace_id"])].append(event)
        if self._pending_done is None:
            self._pending_done = asyncio.get_running_loop().create_future()
            self._flusher = asyncio.ensure_future(self._flush_after_linger())
        await asyncio.shield(self._pending_done)

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
