"""The producer client: publish trace and audit events to Kafka in tracehouse's wire format.

Events of one trace travel as one ``TraceEventBatch`` record keyed by trace_id (measured:
Faust's per-record cost dominates, so every agent pays it once per batch).
``EventProducer.send_trace_events`` publishes a request's worth of events at once;
``EventProducer.add`` lingers and groups events per trace for producers that emit
one event at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.codec import MAGIC
from schemas.compiled import long_bytes
from schemas.registry import schema
from schemas.topics import AUDIT_EVENTS, INVALID_EVENTS, TRACE_EVENTS

log = logging.getLogger(__name__)

#: Where a batch record is cut: at most this many events and (unless one event alone is
#: bigger, up to the edge's ``max_event_bytes``) this many bytes, so a producer batch of
#: 1 MiB holds a record or more. The record limit every producer, fetch and topic agrees on
#: is ``Settings.max_record_bytes``: the largest event alone in a record, sealed.
MAX_EVENTS_PER_RECORD = 500
MAX_RECORD_BYTES = 768 * 1024
#: The record limit of the default settings (4 MiB events + 64 KiB of batch header, seal and framing).
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024 + 64 * 1024


class BrokerUnavailable(Exception):  # noqa: N818 - the API answers it with 503
    """A send was not acknowledged in time or failed; the records may or may not be stored.
    The producer that failed is replaced, so a retry goes through a fresh one."""

    retry_after = 1


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


def invalid_records(reports: Iterable[dict[str, Any]]) -> Iterator[tuple[None, bytes]]:
    """(key, value) records for ``invalid-events``: each rejection report as JSON, unkeyed."""
    return ((None, json.dumps(r, default=str).encode()) for r in reports)


class EventProducer:
    """Publishes validated event datums (see ``schemas.model``) to tracehouse's topics.

    A failed or timed-out send never leaves a broken producer behind: an idempotent
    producer whose batch failed (a record too large, an expired batch while the broker
    was down) answers ``OutOfOrderSequenceNumber`` on that partition from then on, so
    the failing producer is dropped and the next send starts a fresh one. Every send
    and start is bounded by ``send_timeout`` seconds; both raise ``BrokerUnavailable``.
    """

    def __init__(self, bootstrap_servers: str, *, linger_ms: int = 10, client_id: str = "tracehouse",
                 max_request_size: int = DEFAULT_MAX_REQUEST_BYTES, send_timeout: float = 30.0) -> None:
        self._config: dict[str, Any] = dict(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            max_batch_size=512 * 1024,
            max_request_size=max_request_size,
            # below the send deadline, so aiokafka gives up on a dead broker by itself too
            request_timeout_ms=max(1000, int(send_timeout * 1000)),
        )
        self.send_timeout = send_timeout
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()
        self._retired: set[asyncio.Task[None]] = set()
        self.replaced = 0  # producers dropped after a failure (logged, and tested)
        self._linger = linger_ms / 1000
        self._pending: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._pending_done: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect now; raises ``BrokerUnavailable`` when the broker cannot be reached in time."""
        await self._current()

    async def stop(self) -> None:
        if self._pending:
            with contextlib.suppress(BrokerUnavailable):
                await self._flush_pending()
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._stop_quietly(producer)
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _current(self) -> AIOKafkaProducer:
        """The producer in use, started on first use or after a failure dropped the last one."""
        if self._producer is not None:
            return self._producer
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(**self._config)
                try:
                    async with asyncio.timeout(self.send_timeout):
                        await producer.start()
                except (KafkaError, OSError, TimeoutError) as exc:
                    self._retire(producer)
                    raise BrokerUnavailable(f"cannot reach the broker: {exc!r}") from exc
                self._producer = producer
            return self._producer

    def _retire(self, producer: AIOKafkaProducer) -> None:
        """Stop ``producer`` in the background (its unsent batches are abandoned)."""
        task = asyncio.ensure_future(self._stop_quietly(producer))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def _stop_quietly(self, producer: AIOKafkaProducer) -> None:
        try:
            async with asyncio.timeout(self.send_timeout):
                await producer.stop()
        except Exception as exc:  # a producer stopped after a failure may fail again: it is gone either way
            log.debug("stopping a failed producer: %r", exc)

    def _drop(self, producer: AIOKafkaProducer, exc: BaseException) -> None:
        if self._producer is producer:
            self._producer = None
            self.replaced += 1
            log.warning("producer %s failed (%r): replacing it", self._config["client_id"], exc)
            self._retire(producer)

    async def send_records(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
        """Publish encoded (key, value) records and wait for every ack; return the count.
        Raises ``BrokerUnavailable`` when that does not happen within ``send_timeout``."""
        records = list(records)
        if not records:
            return 0
        producer = await self._current()
        try:
            async with asyncio.timeout(self.send_timeout):
                futures = [await producer.send(topic, value, key=key) for key, value in records]
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError) as exc:
            self._drop(producer, exc)
            raise BrokerUnavailable(f"{topic}: the broker did not acknowledge the records: {exc!r}") from exc
        return len(records)

    async def send_trace_events(self, events: Iterable[dict[str, Any]]) -> int:
        """Publish events as one batch record per trace (and chunk); return the record count."""
        return await self.send_records(TRACE_EVENTS, trace_records(events))

    async def send_audit_events(self, org_id: str, events: list[dict[str, Any]]) -> int:
        """Publish one org's audit events as ``AuditEventBatch`` records keyed by org_id."""
        return await self.send_records(AUDIT_EVENTS, audit_records(org_id, events))

    async def send_invalid(self, reports: Iterable[dict[str, Any]]) -> None:
        """Publish rejection reports (JSON: source, org_id, reason, field, payload) to invalid-events."""
        await self.send_records(INVALID_EVENTS, invalid_records(reports))

    async def ping(self) -> bool:
        """True when the broker answers a metadata request within ``send_timeout``."""
        try:
            producer = await self._current()
            async with asyncio.timeout(self.send_timeout):
                await producer.client.fetch_all_metadata()
            return True
        except (BrokerUnavailable, KafkaError, OSError, TimeoutError):
            return False

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
