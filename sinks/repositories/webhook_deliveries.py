"""Webhook delivery attempts and dead letters in ClickHouse (migration 0014), as the dispatcher
recorded them: what ``GET /v1/webhooks/{id}/deliveries`` pages, the health ``GET /v1/webhooks`` shows,
and the dead letters a replay sends again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.timefmt import datetime_ms, ms_datetime
from sinks.clickhouse import ClickHouse

_ATTEMPT_COLUMNS = ("delivery_id, event_id, type, attempt, at, status_code, error, latency_ms, outcome")


@dataclass(frozen=True)
class DeliveryStats:
    """One subscription's attempts summed up: times in epoch ms."""

    last_success_at: int | None
    last_failure_at: int | None
    consecutive_failures: int  # failed attempts since the last success
    dead_letters: int  # dead-lettered deliveries not delivered since


def _attempt(row: tuple) -> dict[str, Any]:
    delivery_id, event_id, event_type, attempt, at, status, error, latency, outcome = row
    return {"delivery_id": delivery_id, "event_id": event_id, "type": event_type, "attempt": int(attempt),
            "at": datetime_ms(at), "status_code": int(status) or None, "error": error, "latency_ms": int(latency),
            "outcome": outcome}


class WebhookDeliveryRepository:
    """Attempts and dead letters of an org's subscriptions."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch

    async def attempts(self, org_id: str, subscription_id: str, limit: int, outcome: str | None = None,
                       before: tuple[int, str, int] | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` attempts, newest first by (at, delivery_id, attempt), before the keyset
        position ``before`` when given; only those with ``outcome`` when given."""
        where = "org_id = {org:String} AND subscription_id = {sub:String}"
        params: dict[str, Any] = {"org": org_id, "sub": subscription_id, "limit": limit}
        if outcome is not None:
            where += " AND outcome = {outcome:String}"
            params["outcome"] = outcome
        if before is not None:
            where += (" AND (at, delivery_id, attempt) < "
                      "({at:DateTime64(3, 'UTC')}, {delivery:String}, {attempt:UInt32})")
            params |= {"at": ms_datetime(before[0]), "delivery": before[1], "attempt": before[2]}
        rows = await self.ch.query(
            f"SELECT {_ATTEMPT_COLUMNS} FROM {self.ch.database}.webhook_attempts WHERE {where} "
            "ORDER BY at DESC, delivery_id DESC, attempt DESC LIMIT 1 BY delivery_id, attempt "
            "LIMIT {limit:UInt32}", params)
        return [_attempt(r) for r in rows.rows]

    async def stats(self, org_id: str, subscription_ids: list[str]) -> dict[str, DeliveryStats]:
        """``DeliveryStats`` of each of ``subscription_ids`` that has attempts or dead letters."""
        if not subscription_ids:
            return {}
        params = {"org": org_id, "subs": subscription_ids}
        db = self.ch.database
        scope = "org_id = {org:String} AND subscription_id IN {subs:Array(String)}"
        attempts = await self.ch.query(
            "SELECT subscription_id, last.ok, last.bad, countIf(outcome != 'delivered' AND at > last.ok) "
            f"FROM {db}.webhook_attempts INNER JOIN (SELECT subscription_id, maxIf(at, outcome = 'delivered') AS ok, "
            f"maxIf(at, outcome != 'delivered') AS bad FROM {db}.webhook_attempts WHERE {scope} "
            f"GROUP BY subscription_id) AS last USING subscription_id WHERE {scope} "
            "GROUP BY subscription_id, last.ok, last.bad", params)
        dead = {sub: int(n) for sub, n in (await self.ch.query(
            f"SELECT subscription_id, count() FROM {db}.webhook_dead_letters FINAL AS d "
            "WHERE org_id = {org:String} AND subscription_id IN {subs:Array(String)} AND id NOT IN ("
            f"SELECT delivery_id FROM {db}.webhook_attempts WHERE org_id = {{org:String}} "
            "AND subscription_id IN {subs:Array(String)} AND outcome = 'delivered' AND at > d.created_at) "
            "GROUP BY subscription_id", params)).rows}
        out: dict[str, DeliveryStats] = {}
        for sub, success, failure, failures in attempts.rows:
            out[sub] = DeliveryStats(_ms_or_none(success), _ms_or_none(failure), int(failures), dead.get(sub, 0))
        for sub, n in dead.items():
            out.setdefault(sub, DeliveryStats(None, None, 0, n))
        return out

    async def dead_letters(self, org_id: str, subscription_id: str, ids: list[str] | None = None,
                           limit: int = 10_000) -> list[dict[str, Any]]:
        """The subscription's dead-lettered deliveries (``WebhookDelivery`` fields, payload as bytes), all or
        those in ``ids``."""
        where = "org_id = {org:String} AND subscription_id = {sub:String}"
        params: dict[str, Any] = {"org": org_id, "sub": subscription_id, "limit": limit}
        if ids is not None:
            where += " AND id IN {ids:Array(String)}"
            params["ids"] = ids
        rows = await self.ch.query(
            "SELECT id, subscription_id, org_id, event_id, type, payload, attempts, created_at, last_error "
            f"FROM {self.ch.database}.webhook_dead_letters FINAL WHERE {where} ORDER BY created_at, id "
            "LIMIT {limit:UInt32}", params)
        return [{"id": r[0], "subscription_id": r[1], "org_id": r[2], "event_id": r[3], "type": r[4],
                 "payload": r[5] if isinstance(r[5], bytes) else r[5].encode(), "attempts": int(r[6]),
                 "created_at": datetime_ms(r[7]), "last_error": r[8]} for r in rows.rows]


def _ms_or_none(value: Any) -> int | None:
    ms = datetime_ms(value)
    return ms if ms > 0 else None
