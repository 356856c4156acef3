"""Webhook delivery attempts and dead letters in ClickHouse (migration 0014), as the dispatcher
recorded them: what ``GET /v1/webhooks/{id}/deliveries`` pages, the health ``GET /v1/webhooks`` shows,
and the dead letters a replay sends again.

A dead letter is *outstanding* until its delivery succeeds after it was dead-lettered: no attempt
of the same delivery id with outcome ``delivered`` later than the dead letter's ``due_at`` (when its
last attempt was due: that attempt, and any replay's, come after it). A replayed delivery keeps its
id, so its success settles the dead letter; dead-lettered again, its row is replaced (the table keeps
the newest row per id) with a later ``due_at``, and it is outstanding again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.timefmt import datetime_ms, ms_datetime
from sinks.clickhouse import ClickHouse

_ATTEMPT_COLUMNS = "delivery_id, event_id, type, attempt, at, status_code, error, latency_ms, outcome"
#: Attempt outcomes as the dispatcher writes them.
OUTCOMES = ("delivered", "retrying", "dead_lettered", "gone")


@dataclass(frozen=True)
class DeliveryStats:
    """One subscription's attempts summed up: times in epoch ms."""

    last_success_at: int | None
    last_failure_at: int | None
    consecutive_failures: int  # failed attempts after the last success (all of them without one)
    dead_letters: int  # outstanding dead letters


def _attempt(row: tuple) -> dict[str, Any]:
    delivery_id, event_id, event_type, attempt, at, status, error, latency, outcome = row
    return {"delivery_id": delivery_id, "event_id": event_id, "type": event_type, "attempt": int(attempt),
            "at": datetime_ms(at), "status_code": int(status) or None, "error": error, "latency_ms": int(latency),
            "outcome": outcome}


class WebhookDeliveryRepository:
    """Attempts and dead letters of an org's subscriptions; every query is scoped by the org."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch

    async def attempts(self, org_id: str, subscription_id: str, limit: int, outcome: str | None = None,
                       before: tuple[int, str, int] | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` attempts, newest first by (at, delivery_id, attempt), after the keyset
        position ``before`` (the last one of the previous page) when given; only those with ``outcome``
        when given. A replayed delivery numbers its attempts from 1 again: both series are shown."""
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
            "ORDER BY at DESC, delivery_id DESC, attempt DESC LIMIT 1 BY at, delivery_id, attempt "
            "LIMIT {limit:UInt32}", params)
        return [_attempt(r) for r in rows.rows]

    async def stats(self, org_id: str, subscription_ids: list[str]) -> dict[str, DeliveryStats]:
        """``DeliveryStats`` of each of ``subscription_ids`` that has attempts or dead letters."""
        if not subscription_ids:
            return {}
        params = {"org": org_id, "subs": subscription_ids}
        scope = "org_id = {org:String} AND subscription_id IN {subs:Array(String)}"
        attempts = await self.ch.query(
            "SELECT subscription_id, maxIf(at, outcome = 'delivered') AS ok, maxIf(at, outcome != 'delivered'), "
            "countIf(outcome != 'delivered' AND at > ok_before) "
            "FROM (SELECT subscription_id, at, outcome, "
            "max(if(outcome = 'delivered', at, toDateTime64(0, 3, 'UTC'))) OVER (PARTITION BY subscription_id) "
            f"AS ok_before FROM {self.ch.database}.webhook_attempts WHERE {scope}) "
            "GROUP BY subscription_id", params)
        dead = await self.ch.query(
            f"SELECT subscription_id, count() FROM ({self._outstanding_sql('d.subscription_id AS subscription_id')}) "
            "GROUP BY subscription_id", params)
        counts = {sub: int(n) for sub, n in dead.rows}
        out = {sub: DeliveryStats(_ms_or_none(ok), _ms_or_none(bad), int(failures), counts.get(sub, 0))
               for sub, ok, bad, failures in attempts.rows}
        for sub, n in counts.items():
            out.setdefault(sub, DeliveryStats(None, None, 0, n))
        return out

    async def recent_dead_letters(self, org_id: str, subscription_ids: list[str], per_subscription: int = 10
                                  ) -> dict[str, list[dict[str, Any]]]:
        """The newest ``per_subscription`` outstanding dead letters of each of ``subscription_ids`` (newest
        first by created_at, id): ``{delivery_id, event_id, type, created_at, last_error, attempts}``."""
        if not subscription_ids:
            return {}
        columns = _aliased("subscription_id", "id", "event_id", "type", "created_at", "last_error", "attempts")
        rows = await self.ch.query(
            "SELECT subscription_id, id, event_id, type, created_at, last_error, attempts "
            f"FROM ({self._outstanding_sql(columns)}) "
            "ORDER BY subscription_id, created_at DESC, id DESC LIMIT {per:UInt32} BY subscription_id",
            {"org": org_id, "subs": subscription_ids, "per": per_subscription})
        out: dict[str, list[dict[str, Any]]] = {}
        for sub, delivery, event, event_type, created, error, attempts in rows.rows:
            out.setdefault(sub, []).append({"delivery_id": delivery, "event_id": event, "type": event_type,
                                            "created_at": datetime_ms(created), "last_error": error,
                                            "attempts": int(attempts)})
        return out

    async def dead_letters(self, org_id: str, subscription_id: str, ids: list[str] | None = None, *,
                           limit: int = 1_000, after: tuple[int, str] | None = None) -> list[dict[str, Any]]:
        """Dead letters of the subscription as ``WebhookDelivery`` datums (payload as bytes), oldest first
        by (created_at, id): those in ``ids`` (outstanding or not), or else the outstanding ones, up to
        ``limit`` after the keyset position ``after``."""
        params: dict[str, Any] = {"org": org_id, "subs": [subscription_id], "limit": limit}
        columns = _aliased("id", "subscription_id", "org_id", "event_id", "type", "payload", "attempts", "due_at",
                           "created_at", "last_error")
        if ids is not None:
            sql = (f"SELECT {columns} FROM {self.ch.database}.webhook_dead_letters AS d FINAL "
                   "WHERE d.org_id = {org:String} AND d.subscription_id IN {subs:Array(String)} "
                   "AND d.id IN {ids:Array(String)}")
            params["ids"] = ids
        else:
            sql = self._outstanding_sql(columns)
        if after is not None:
            sql = (f"SELECT * FROM ({sql}) WHERE (created_at, id) > "
                   "({after_at:DateTime64(3, 'UTC')}, {after_id:String})")
            params |= {"after_at": ms_datetime(after[0]), "after_id": after[1]}
        rows = await self.ch.query(f"{sql} ORDER BY created_at, id LIMIT {{limit:UInt32}}", params)
        return [{"id": r[0], "subscription_id": r[1], "org_id": r[2], "event_id": r[3], "type": r[4],
                 "payload": r[5] if isinstance(r[5], bytes) else r[5].encode(), "attempts": int(r[6]),
                 "due_at": datetime_ms(r[7]), "created_at": datetime_ms(r[8]), "last_error": r[9]}
                for r in rows.rows]

    def _outstanding_sql(self, columns: str) -> str:
        """SELECT ``columns`` (of ``d``, the dead letters) of the outstanding dead letters of the
        subscriptions ``{subs}`` of org ``{org}``."""
        db = self.ch.database
        return (f"SELECT {columns} FROM {db}.webhook_dead_letters AS d FINAL "
                f"LEFT JOIN (SELECT delivery_id, max(at) AS delivered_at FROM {db}.webhook_attempts "
                "WHERE org_id = {org:String} AND subscription_id IN {subs:Array(String)} AND outcome = 'delivered' "
                "GROUP BY delivery_id) AS ok ON ok.delivery_id = d.id "
                "WHERE d.org_id = {org:String} AND d.subscription_id IN {subs:Array(String)} "
                "AND coalesce(ok.delivered_at, toDateTime64(0, 3, 'UTC')) <= d.due_at")


def _aliased(*columns: str) -> str:
    """``d.<c> AS <c>`` for each column: the names a query around the join refers to."""
    return ", ".join(f"d.{c} AS {c}" for c in columns)


def _ms_or_none(value: Any) -> int | None:
    ms = datetime_ms(value)
    return ms if ms > 0 else None
