"""An org's audit log entries (``audit_events``, migrations 0002, 0005, 0015) as exports read them:
counted, and read oldest first by (occurred_at, id) in keyset chunks, one query per chunk (chdb
buffers a whole result before its first row, so an export never asks for everything at once).

Reads never use FINAL: duplicates are kept out at write (the sink stores each record once), and a
duplicate that got through is a broken chain, which ``GET /v1/audit/verify`` reports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from schemas.timefmt import datetime_ms, ms_datetime
from sinks.clickhouse import ClickHouse
from sinks.repositories.chains import LINK_COLUMNS

#: Rows an export reads per query.
CHUNK_ROWS = 10_000
_COLUMNS = "id, org_id, actor, action, target, metadata, occurred_at"


class AuditEventRepository:
    """Reads of one org's audit entries; every query is scoped by the org."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self.table = f"{ch.database}.audit_events"

    @staticmethod
    def _range(org_id: str, from_ms: int | None, to_ms: int | None) -> tuple[str, dict[str, Any]]:
        """The WHERE clause of the org's entries occurring in [from, to] (either bound may be open)."""
        where = "org_id = {org:String}"
        params: dict[str, Any] = {"org": org_id}
        if from_ms is not None:
            where += " AND occurred_at >= {from:DateTime64(3, 'UTC')}"
            params["from"] = ms_datetime(from_ms)
        if to_ms is not None:
            where += " AND occurred_at <= {to:DateTime64(3, 'UTC')}"
            params["to"] = ms_datetime(to_ms)
        return where, params

    async def count(self, org_id: str, from_ms: int | None = None, to_ms: int | None = None) -> int:
        """How many of the org's entries occurred in [from, to]."""
        where, params = self._range(org_id, from_ms, to_ms)
        rows = await self.ch.query(f"SELECT count() FROM {self.table} WHERE {where}", params)
        return int(rows.rows[0][0])

    async def chunks(self, org_id: str, from_ms: int | None = None, to_ms: int | None = None, *,
                     chunk_rows: int = CHUNK_ROWS, links: bool = False) -> AsyncIterator[list[dict[str, Any]]]:
        """The org's entries occurring in [from, to], oldest first by (occurred_at, id), in lists of at
        most ``chunk_rows``; each list is read when the one before has been consumed. Each entry:
        id, org_id, actor, action, target, metadata (a dict), occurred_at (epoch ms); with ``links``
        also its chain link: seq, prev_hash and hash (hex), hash_version."""
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        where, params = self._range(org_id, from_ms, to_ms)
        params["limit"] = chunk_rows
        columns = f"{_COLUMNS}, {LINK_COLUMNS}" if links else _COLUMNS
        after = ""
        while True:
            rows = await self.ch.query(
                f"SELECT {columns} FROM {self.table} WHERE {where}{after} "
                "ORDER BY occurred_at, id LIMIT {limit:UInt32}", params)
            chunk = [row | {"metadata": dict(row["metadata"]), "occurred_at": datetime_ms(row["occurred_at"])}
                     for row in rows.dicts()]
            if chunk:
                yield chunk
            if len(chunk) < chunk_rows:
                return
            # the plain bound lets the primary key prune; the tuple one is the keyset position
            after = (" AND occurred_at >= {after_at:DateTime64(3, 'UTC')} "
                     "AND (occurred_at, id) > ({after_at:DateTime64(3, 'UTC')}, {after_id:String})")
            params |= {"after_at": ms_datetime(chunk[-1]["occurred_at"]), "after_id": chunk[-1]["id"]}
