"""What the webhook dispatcher writes, built by hand and stored by the sink writer: ``WebhookAttempt``
records (``webhook-attempts``) and dead-lettered ``WebhookDelivery`` records (``webhook-dead-letter``),
each at its own offset of partition 0, so rows are what the worker's sink would store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas.codec import encode
from schemas.topics import WEBHOOK_ATTEMPTS, WEBHOOK_DEAD_LETTER
from schemas.webhooks import delivery_id, payload
from sinks.clickhouse import ClickHouse
from sinks.writer import WEBHOOK_ATTEMPTS_SINK, WEBHOOK_DEAD_LETTERS_SINK, SinkRecord, SinkWriter, Source


def delivery(org_id: str, subscription_id: str, event_id: str, at: int, *, attempts: int = 3,
             last_error: str = "HTTP 500", event_type: str = "trace.completed",
             data: dict[str, Any] | None = None, due_at: int | None = None) -> dict[str, Any]:
    """A ``WebhookDelivery`` datum of ``event_id`` to the subscription, created at ``at``, as the
    dispatcher dead-letters it (its last attempt due at ``due_at``, default ``at``)."""
    return {"id": delivery_id(event_id, subscription_id), "subscription_id": subscription_id, "org_id": org_id,
            "event_id": event_id, "type": event_type,
            "payload": payload(event_type, at, data if data is not None else {"event": event_id}),
            "attempts": attempts, "due_at": at if due_at is None else due_at, "created_at": at,
            "last_error": last_error}


def attempt(of: dict[str, Any], number: int, at: int, status: int, outcome: str, *, error: str = "",
            latency_ms: int = 12) -> dict[str, Any]:
    """A ``WebhookAttempt`` datum of the delivery ``of``."""
    return {"delivery_id": of["id"], "subscription_id": of["subscription_id"], "org_id": of["org_id"],
            "event_id": of["event_id"], "type": of["type"], "attempt": number, "at": at, "status_code": status,
            "error": error, "latency_ms": latency_ms, "outcome": outcome}


def failed_through(of: dict[str, Any], first_at: int, tiers: int = 3, status: int = 500,
                   step_ms: int = 1_000) -> list[dict[str, Any]]:
    """The attempts of a delivery that failed every time: ``retrying`` until the last, ``dead_lettered``."""
    return [attempt(of, n, first_at + (n - 1) * step_ms, status, "retrying" if n < tiers else "dead_lettered",
                    error="" if status else "ClientConnectorError: connection refused")
            for n in range(1, tiers + 1)]


class WebhookStore:
    """Stores attempts and dead letters through the sink writer, offsets counting up per topic."""

    def __init__(self, clickhouse: ClickHouse) -> None:
        self.attempts = SinkWriter(clickhouse, WEBHOOK_ATTEMPTS_SINK)
        self.dead_letters = SinkWriter(clickhouse, WEBHOOK_DEAD_LETTERS_SINK)
        self.offsets = {WEBHOOK_ATTEMPTS: 0, WEBHOOK_DEAD_LETTER: 0}

    async def store(self, *, attempts: Sequence[dict[str, Any]] = (),
                    dead_letters: Sequence[dict[str, Any]] = ()) -> None:
        for topic, writer, schema, datums in ((WEBHOOK_ATTEMPTS, self.attempts, "WebhookAttempt", attempts),
                                              (WEBHOOK_DEAD_LETTER, self.dead_letters, "WebhookDelivery",
                                               dead_letters)):
            records = []
            for datum in datums:
                records.append(SinkRecord(Source(topic, 0, self.offsets[topic]), encode(schema, datum)))
                self.offsets[topic] += 1
            if records:
                rejected = await writer.write(records)
                assert rejected == [], rejected
