"""Webhook subscriptions in ClickHouse (migration 0013): what the API lists, without secrets,
and the delivery health of each subscription."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.timefmt import datetime_ms, ms_datetime
from sinks.clickhouse import ClickHouse

_COLUMNS = ("id, org_id, url, event_types, description, filter, status, disabled_reason, created_at, updated_at, "
            "version")


@dataclass(frozen=True)
class Health:
    """How deliveries to one subscription went: times in epoch ms, ``breaker`` the circuit
    breaker's state (None until the dispatcher has recorded an attempt)."""

    last_success_at: int | None = None
    last_failure_at: int | None = None
    consecutive_failures: int = 0
    breaker: str | None = None
    dead_letters: int = 0


NO_ATTEMPTS = Health()


def _row(row: tuple) -> dict[str, Any]:
    sub_id, org_id, url, event_types, description, filt, status, reason, created, updated, version = row
    return {"id": sub_id, "org_id": org_id, "url": url, "event_types": list(event_types),
            "description": description, "filter": dict(filt), "status": status, "disabled_reason": reason,
            "created_at": datetime_ms(created), "updated_at": datetime_ms(updated), "version": int(version)}


class WebhookRepository:
    """Subscriptions as the sink stored them (the newest version of each); deleted ones are never returned."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch

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

    async def health_of(self, org_id: str, sub_ids: list[str]) -> dict[str, Health]:
        """Delivery health of the org's subscriptions ``sub_ids``: the hook the dispatcher's attempts and
        dead letters fill. No attempt is recorded yet, so every subscription has ``NO_ATTEMPTS``."""
        return {sub_id: NO_ATTEMPTS for sub_id in sub_ids}
