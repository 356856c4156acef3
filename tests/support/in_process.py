"""The API in this process without a broker: a producer that keeps what it is asked to
publish, and the worker's part of the way into ClickHouse done by its own pure code (the
chain agents' sealing and decisions, the sink writer), so stored rows are what the worker
would have stored."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from schemas.codec import decode, encode, schema_of
from schemas.lifecycle import Verdict
from schemas.producer import invalid_records
from schemas.timefmt import now_ms
from schemas.topics import AUDIT_EVENTS, INVALID_EVENTS, SEALED_EVENTS, TRACE_EVENTS, WEBHOOK_SUBSCRIPTIONS
from sinks.clickhouse import ClickHouse
from sinks.writer import (
    AUDIT_EVENTS_SINK,
    TRACE_EVENTS_SINK,
    WEBHOOK_SUBSCRIPTIONS_SINK,
    SinkRecord,
    SinkWriter,
    Source,
)
from streams.chaining import AUDIT_CHAIN, TRACE_CHAIN, ChainKind, ChainStore, apply_command, seal
from tests.support.webhook_records import WebhookStore


@dataclass(frozen=True)
class Sent:
    topic: str
    key: bytes | None
    value: bytes


class RecordingProducer:
    """What the API uses of ``schemas.producer.EventProducer``, in memory: every record it
    is asked to publish is kept in ``sent``, acknowledged at once; ``readers[topic]`` is handed
    each value sent to ``topic`` at once, as a reader of the topic would read it."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.readers: dict[str, Callable[[bytes], None]] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send_records(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
        records = list(records)
        self.sent += [Sent(topic, key, value) for key, value in records]
        if topic in self.readers:
            for _, value in records:
                self.readers[topic](value)
        return len(records)

    async def send_invalid(self, reports: Iterable[dict[str, Any]]) -> None:
        await self.send_records(INVALID_EVENTS, invalid_records(reports))

    async def ping(self) -> bool:
        return True

    def invalid_reports(self, org_id: str) -> list[dict[str, Any]]:
        """The rejection reports published for ``org_id``."""
        reports = (json.loads(s.value) for s in self.sent if s.topic == INVALID_EVENTS)
        return [r for r in reports if r.get("org_id") == org_id]


class Pipeline:
    """The worker's path from ``trace-events`` / ``audit-events`` to ClickHouse, in this
    process: each record the producer kept is sealed as the chain agent seals it
    (``streams.chaining.seal``; a ``TraceCommand`` decided by ``schemas.lifecycle.decide``),
    and the sealed records are stored by the sink writer, one ``sealed-events`` offset each
    (of partition 0); ``webhook-subscriptions`` records are stored as the sink stores them, and
    ``webhooks.store(attempts=..., dead_letters=...)`` stores what the webhook dispatcher writes."""

    def __init__(self, clickhouse: ClickHouse, producer: RecordingProducer) -> None:
        self.clickhouse = clickhouse
        self.producer = producer
        self.chains = ChainStore({}, {})
        self.writers = {TRACE_CHAIN.sealed_schema: SinkWriter(clickhouse, TRACE_EVENTS_SINK),
                        AUDIT_CHAIN.sealed_schema: SinkWriter(clickhouse, AUDIT_EVENTS_SINK)}
        self.subscriptions = SinkWriter(clickhouse, WEBHOOK_SUBSCRIPTIONS_SINK)
        self.webhooks = WebhookStore(clickhouse)
        self.taken = 0  # records of producer.sent already handled
        self.offset = 0  # the next sealed-events offset
        self.subscription_offset = 0  # the next webhook-subscriptions offset (partition 0)

    async def flush(self) -> int:
        """Seal and store every record published since the last flush, in one insert per
        sink; the number of events stored."""
        sent, self.taken = self.producer.sent[self.taken:], len(self.producer.sent)
        sealed: list[bytes] = []
        subscriptions: list[SinkRecord] = []
        for record in sent:
            if record.topic == WEBHOOK_SUBSCRIPTIONS:
                subscriptions.append(SinkRecord(Source(WEBHOOK_SUBSCRIPTIONS, 0, self.subscription_offset),
                                                record.value))
                self.subscription_offset += 1
            if record.topic == TRACE_EVENTS:
                sealed += self._command(record.value)[1] if schema_of(record.value) == "TraceCommand" \
                    else self._seal(TRACE_CHAIN, record.value)
            elif record.topic == AUDIT_EVENTS:
                sealed += self._seal(AUDIT_CHAIN, record.value)
        if subscriptions:
            rejected = await self.subscriptions.write(subscriptions)
            assert rejected == [], rejected
        return await self._store(sealed)

    async def outcome(self, org_id: str, trace_id: str, status: str, metadata: dict[str, str] | None = None,
                      issued_at: int | None = None) -> Verdict:
        """An outcome command as ``POST …/outcome`` publishes it, after what is pending:
        decided and chained as the chain agent does; its verdict."""
        await self.flush()
        command = {"request_id": uuid.uuid4().hex, "org_id": org_id, "trace_id": trace_id, "action": "outcome",
                   "status": status, "approval_request_id": None, "metadata": metadata or {},
                   "issued_at": now_ms() if issued_at is None else issued_at}
        verdict, sealed = self._command(encode("TraceCommand", command))
        await self._store(sealed)
        assert verdict is not None
        return verdict

    def _seal(self, kind: ChainKind, value: bytes) -> list[bytes]:
        """Seal, and save the head (the agent saves it once the sealed record is durable)."""
        out = seal(kind, value, self.chains)
        if out.advance is not None:
            out.advance.save(self.chains)
        return [out.value] if out.value is not None else []

    def _command(self, value: bytes) -> tuple[Verdict | None, list[bytes]]:
        """What ``streams.chain.ChainAgent`` does with a command: apply it; the verdict and the sealed record."""
        applied = apply_command(TRACE_CHAIN, decode(value).datum, self.chains)
        sealed = applied.sealed
        if sealed is not None and sealed.advance is not None:
            sealed.advance.save(self.chains)
        verdict = Verdict(decode(applied.verdict).datum["verdict"]) if applied.verdict is not None else None
        return verdict, [sealed.value] if sealed is not None and sealed.value is not None else []

    async def _store(self, sealed: list[bytes]) -> int:
        per_writer: dict[str, list[SinkRecord]] = {name: [] for name in self.writers}
        events = 0
        for value in sealed:
            per_writer[schema_of(value)].append(SinkRecord(Source(SEALED_EVENTS, 0, self.offset), value))
            events += len(decode(value).datum["events"])
            self.offset += 1
        for name, records in per_writer.items():
            if records:
                rejected = await self.writers[name].write(records)
                assert rejected == [], rejected
        return events
