"""Webhook subscriptions in ClickHouse (migration 0013): what the API lists, without secrets,
and the delivery health of each subscription, from the attempts and dead letters the dispatcher
recorded (``sinks.repositories.webhook_deliveries``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.timefmt import datetime_ms, ms_datetime, now_ms
from sinks.clickhouse import ClickHouse
from sinks.repositories.webhook_deliveries import DeliveryStats, WebhookDeliveryRepository

_COLUMNS = ("id, org_id, url, event_types, description, filter, status, disabled_reason, created_at, updated_at, "
            "version")


@dataclass(frozen=True)
class Health:
    """How deliveries to one subscription went: times in epoch ms, ``breaker`` the circuit
    breaker's state by ``breaker_state``, ``dead_letters`` the outstanding ones."""

    last_success_at: int | None = None
    last_failure_at: int | None = None
    consecutive_failures: int = 0
    breaker: str = "closed"
    dead_letters: int = 0


NO_ATTEMPTS = Health()


def breaker_state(stats: DeliveryStats, failures: int, cooldown_ms: int, now: int) -> str:
    """``open`` when the last ``failures`` attempts or more failed and the last of them is less than
    ``cooldown_ms`` old, else ``closed``: the dispatcher's breaker rule (``schemas.webhooks.Breaker``)
    applied to the recorded attempts. The dispatcher's own breaker lives in its process; this is what
    the attempts say of it (a half-open probe in flight shows as ``closed``)."""
    recent = stats.last_failure_at is not None and now - stats.last_failure_at < cooldown_ms
    return "open" if stats.consecutive_failures >= failures and recent else "closed"


def _row(row: tuple) -> dict[str, Any]:
    sub_id, org_id, url, event_types, description, filt, status, reason, created, updated, version = row
    return {"id": sub_id, "org_id": org_id, "url": url, "event_types": list(event_types),
            "description": description, "filter": dict(filt), "status": status, "disabled_reason": reason,
            "created_at": datetime_ms(created), "updated_at": datetime_ms(updated), "version": int(version)}


class WebhookRepository:
    """Subscriptions as the sink stored them (the newest version of each); deleted ones are never returned."""

    def __init__(self, ch: ClickHouse, deliveries: WebhookDeliveryRepository | None = None, *,
                 breaker_failures: int = 5, breaker_cooldown_seconds: float = 30.0) -> None:
        self.ch = ch
        self.deliveries = deliveries if deliveries is not None else WebhookDeliveryRepository(ch)
        self.breaker_failures = breaker_failures
        self.breaker_cooldown_ms = int(breaker_cooldown_seconds * 1000)

    async def get(self, org_id: str, sub_id: str) -> dict[str, Any] | None:
        """The org's subscription ``sub_id`` (the ``WebhookSubscription`` fields but ``secrets``, times in
        epoch ms), None when there is none or it was deleted."""
        rows = await self.ch.query(
            f"SELECT {_COLUMNS} FROM {self.ch.database}.webhook_subscriptions FINAL "
            "WHERE org_id = {org:String} AND id = {id:String} AND status != 'deleted'",
            {"org": org_id, "id": sub_id})
        return _row(rows.rows[0]) if rows.rows else None

    async def page(self, org_id: str, limit: int, after: tuple[int, str] | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` of the org's subscriptions, newest first by (created_at, id), after the
        keyset position ``after`` when given."""
        where = "org_id = {org:String} AND status != 'deleted'"
        params: dict[str, Any] = {"org": org_id, "limit": limit}
        if after is not None:
            where += " AND (created_at, id) < ({at:DateTime64(3, 'UTC')}, {after_id:String})"
            params |= {"at": ms_datetime(after[0]), "after_id": after[1]}
        rows = await self.ch.query(
            f"SELECT {_COLUMNS} FROM {self.ch.database}.webhook_subscriptions FINAL WHERE {where} "
            "ORDER BY created_at DESC, id DESC LIMIT {limit:UInt32}", params)
        return [_row(r) for r in rows.rows]

    async def health_of(self, org_id: str, sub_ids: list[str], now: int | None = None) -> dict[str, Health]:
        """Delivery health of the org's subscriptions ``sub_ids`` at ``now`` (default: the clock's);
        ``NO_ATTEMPTS`` for one without recorded attempts or dead letters."""
        now = now_ms() if now is None else now
        stats = await self.deliveries.stats(org_id, sub_ids)
        out = {}
        for sub_id in sub_ids:
            found = stats.get(sub_id)
            out[sub_id] = NO_ATTEMPTS if found is None else Health(
                found.last_success_at, found.last_failure_at, found.consecutive_failures,
                breaker_state(found, self.breaker_failures, self.breaker_cooldown_ms, now), found.dead_letters)
        return out
