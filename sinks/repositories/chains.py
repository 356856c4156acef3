"""Stored links of hash chains: a trace's events, or a span of an org's audit log, by seq.

Rows come back as the Avro datum the chain agent hashed (timestamps in epoch ms) plus
``seq``, ``prev_hash`` and ``hash`` in hex and ``hash_version``, ready for ``schemas.integrity.verify``.
Reads never use FINAL: a duplicated row must show up, it is a broken chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.integrity import LINK_TAIL
from schemas.registry import record_fields
from schemas.timefmt import datetime_ms, ms_datetime
from sinks.clickhouse import ClickHouse

LINK_COLUMNS = "seq, lower(hex(prev_hash)) AS prev_hash, lower(hex(hash)) AS hash, hash_version"


@dataclass(frozen=True)
class ChainTable:
    """A table of chained events: its datum columns and its id column."""

    table: str
    schema: str
    id_column: str

    @property
    def datum_columns(self) -> tuple[str, ...]:
        return tuple(f["name"] for f in record_fields(self.schema))


TRACE_LINKS = ChainTable("events", "TraceEvent", "event_id")
AUDIT_LINKS = ChainTable("audit_events", "AuditEvent", "id")


def _as_datum(row: dict[str, Any]) -> dict[str, Any]:
    for key, value in row.items():
        if isinstance(value, datetime):
            row[key] = datetime_ms(value)
    return row


@dataclass(frozen=True)
class AuditSpan:
    """The audit links around a time range: rows from ``first_seq`` on, and the anchor
    (the hash of the link before ``first_seq``; None when that link is missing)."""

    first_seq: int
    last_seq: int
    rows: list[dict[str, Any]]
    anchor: str | None


class ChainRepository:
    """Reads of chained rows, always scoped to one org."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch

    async def _links(self, spec: ChainTable, where: str, params: dict[str, Any],
                     columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        sql = (f"SELECT {', '.join(columns or spec.datum_columns)}, {LINK_COLUMNS} "
               f"FROM {self.ch.database}.{spec.table} WHERE {where} ORDER BY seq, ingested_at, {spec.id_column}")
        return [_as_datum(r) for r in (await self.ch.query(sql, params)).dicts()]

    async def stored_after(self, topic: str, partition: int, offset: int) -> dict[str, list[dict[str, Any]]]:
        """Links stored from Kafka records at ``offset`` or later of one partition, every org's:
        what the chain agents adopt when the broker lost records the sink had stored. By the
        schema of their events (TraceEvent, AuditEvent); each row also holds its ``_offset``."""
        found: dict[str, list[dict[str, Any]]] = {}
        for spec in (TRACE_LINKS, AUDIT_LINKS):
            sql = (f"SELECT {', '.join(spec.datum_columns)}, {LINK_COLUMNS}, _offset "
                   f"FROM {self.ch.database}.{spec.table} WHERE _topic = {{topic:String}} "
                   "AND _partition = {partition:UInt32} AND _offset >= {offset:UInt64}")
            result = await self.ch.query(sql, {"topic": topic, "partition": partition, "offset": offset})
            found[spec.schema] = [_as_datum(r) for r in result.dicts()]
        return found

    async def trace_links(self, org_id: str, trace_id: str,
                          columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every stored link of one trace, in seq order; empty for an unknown trace. Each row holds the
        link's columns and ``columns`` of its event (every column of the hashed datum when None: a
        read that shows a few fields skips the large ones, each column read costing ClickHouse time)."""
        return await self._links(TRACE_LINKS, "org_id = {org:String} AND trace_id = {tid:String}",
                                 {"org": org_id, "tid": trace_id}, columns)

    async def trace_links_avro(self, org_id: str, trace_id: str) -> bytes:
        """Every stored link of one trace, in seq order, as ClickHouse's Avro object container
        file: each record the event's fields in the schema's order, then ``LINK_TAIL`` (what
        ``schemas.integrity.avro_link_blocks`` reads)."""
        columns = ", ".join([*TRACE_LINKS.datum_columns, *(name for name, _ in LINK_TAIL)])
        return await self.ch.raw_query(
            f"SELECT {columns} FROM (SELECT {', '.join(TRACE_LINKS.datum_columns)}, {LINK_COLUMNS}, ingested_at "
            f"FROM {self.ch.database}.events WHERE org_id = {{org:String}} AND trace_id = {{tid:String}}) "
            "ORDER BY seq, ingested_at, event_id", {"org": org_id, "tid": trace_id}, fmt="Avro",
            settings={"output_format_avro_codec": "null", "output_format_avro_string_column_pattern": ".*"})

    async def audit_span(self, org_id: str, from_ms: int, to_ms: int) -> AuditSpan | None:
        """The org's audit links from the first to the last seq occurring in [from, to], and
        the one after (it proves nothing was cut at the end); None when none occurred."""
        table = f"{self.ch.database}.{AUDIT_LINKS.table}"
        params: dict[str, Any] = {"org": org_id, "from": ms_datetime(from_ms), "to": ms_datetime(to_ms)}
        bounds = await self.ch.query(
            f"SELECT min(seq), max(seq), count() FROM {table} WHERE org_id = {{org:String}} "
            "AND occurred_at >= {from:DateTime64(3, 'UTC')} AND occurred_at <= {to:DateTime64(3, 'UTC')}", params)
        lo, hi, n = bounds.rows[0]
        if not n:
            return None
        params |= {"lo": int(lo), "hi": int(hi) + 1}
        rows = await self._links(AUDIT_LINKS, "org_id = {org:String} AND seq >= {lo:UInt64} AND seq <= {hi:UInt64}",
                                 params)
        anchor: str | None = None
        if lo > 1:
            found = await self.ch.query(
                f"SELECT lower(hex(hash)) FROM {table} WHERE org_id = {{org:String}} AND seq = {{before:UInt64}}",
                {"org": org_id, "before": int(lo) - 1})
            anchor = found.rows[0][0] if found.rows else None
        return AuditSpan(int(lo), int(hi), rows, anchor)
