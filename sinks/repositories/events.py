"""The ``events`` table: keyset pages and whole traces, as the stored event documents
(``_doc``, migration 0011: each event's JSON object as the read API returns it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.ipc

from schemas.timefmt import datetime_ms, ms_datetime
from sinks.clickhouse import ClickHouse


@dataclass(frozen=True)
class EventFilter:
    """Filters of the event list (seed 000's, and seed 001's); None means not filtered."""

    event_class: str | None = None
    event_type: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    model: str | None = None
    status: str | None = None  # STATUS_CODE_UNSET also matches events without a status
    name_contains: str | None = None  # case-insensitive
    min_score: float | None = None  # any score >= this
    max_score: float | None = None  # any score <= this
    user_id: str | None = None
    tag: str | None = None
    metadata: tuple[str, str] | None = None  # (key, value)

    def conditions(self) -> tuple[list[str], dict[str, Any]]:
        """SQL conditions on the events table and their parameters."""
        where: list[str] = []
        params: dict[str, Any] = {}

        def add(condition: str, **values: Any) -> None:
            where.append(condition)
            params.update(values)

        if self.event_class is not None:
            add("class = {cls:String}", cls=self.event_class)
        if self.event_type is not None:
            add("type = {typ:String}", typ=self.event_type)
        if self.since_ms is not None:
            add("occurred_at >= {since:DateTime64(3, 'UTC')}", since=ms_datetime(self.since_ms))
        if self.until_ms is not None:
            add("occurred_at <= {until:DateTime64(3, 'UTC')}", until=ms_datetime(self.until_ms))
        if self.model is not None:
            add("model = {model:String}", model=self.model)
        if self.status == UNSET_STATUS:
            add("ifNull(status, {status:String}) = {status:String}", status=self.status)
        elif self.status is not None:
            add("status = {status:String}", status=self.status)
        if self.name_contains is not None:
            add("positionCaseInsensitiveUTF8(ifNull(name, ''), {name:String}) > 0", name=self.name_contains)
        if self.min_score is not None:
            add("arrayExists(v -> v >= {min_score:Float64}, mapValues(scores))", min_score=self.min_score)
        if self.max_score is not None:
            add("arrayExists(v -> v <= {max_score:Float64}, mapValues(scores))", max_score=self.max_score)
        if self.user_id is not None:
            add("user_id = {user:String}", user=self.user_id)
        if self.tag is not None:
            add("has(tags, {tag:String})", tag=self.tag)
        if self.metadata is not None:
            add("mapContains(metadata, {mkey:String}) AND metadata[{mkey:String}] = {mvalue:String}",
                mkey=self.metadata[0], mvalue=self.metadata[1])
        return where, params


UNSET_STATUS = "STATUS_CODE_UNSET"


@dataclass(frozen=True)
class EventPage:
    events: list[str]  # event documents: the event JSON objects, as text
    next_key: tuple[int, str] | None  # (occurred_at ms, event_id) of the last row when more follow


class EventRepository:
    """Reads of the ``events`` table, always scoped to one org."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self.table = f"{ch.database}.events"

    async def page(self, org_id: str, flt: EventFilter, limit: int,
                   after: tuple[int, str] | None = None) -> EventPage:
        """Up to ``limit`` events ordered by (occurred_at, event_id), strictly after ``after``."""
        conditions, params = flt.conditions()
        where = ["org_id = {org:String}", *conditions]
        params |= {"org": org_id, "lim": limit + 1}
        if after is not None:
            where.append("occurred_at >= {a_ts:DateTime64(3, 'UTC')}")
            where.append("(occurred_at, event_id) > ({a_ts:DateTime64(3, 'UTC')}, {a_id:String})")
            params["a_ts"] = ms_datetime(after[0])
            params["a_id"] = after[1]
        sql = (f"SELECT occurred_at, event_id, _doc FROM {self.table} WHERE {' AND '.join(where)} "
               "ORDER BY occurred_at, event_id LIMIT {lim:UInt32}")
        rows = (await self.ch.query(sql, params)).rows
        more = len(rows) > limit
        rows = rows[:limit]
        next_key = None
        if more:
            next_key = (datetime_ms(rows[-1][0]), rows[-1][1])
        return EventPage([doc for _, _, doc in rows], next_key)

    async def trace(self, org_id: str, trace_id: str) -> list[str]:
        """The documents of every event of one trace in order; empty when the org has no such trace."""
        sql = (f"SELECT _doc FROM {self.table} "
               "WHERE org_id = {org:String} AND trace_id = {tid:String} ORDER BY occurred_at, event_id")
        rows = await self.ch.query(sql, {"org": org_id, "tid": trace_id})
        return [doc for (doc,) in rows.rows]

    async def count(self, org_id: str) -> int:
        rows = await self.ch.query(f"SELECT count() FROM {self.table} WHERE org_id = {{org:String}}",
                                   {"org": org_id})
        return int(rows.rows[0][0])


#: The events that decide an approval request, and the decision each one is (seed 003).
DECISIONS = {"approval_granted": "approved", "approval_denied": "denied", "approval_expired": "expired"}


@dataclass(frozen=True)
class ApprovalDetail:
    """A trace's first approval decision (None when none was made) and its first policy version."""

    decision: str | None
    approver_name: str | None
    decided_at: int | None  # epoch ms
    policy_version: str | None


#: Seed 003's SIEM export fields, in the seed's order.
SIEM_COLUMNS = ("event_id", "trace_id", "agent_id", "event_type", "actor_type", "actor_name", "description", "status",
                "timestamp", "policy_version", "integrity_hash")
#: One SIEM row (seed 003's audit export) per stored event: its columns, deduplicated by key.
_SIEM_SELECT = ("SELECT event_id, trace_id, agent_id, type AS event_type, actor_type, actor_name, description, status, "
                "occurred_at, policy_version, if(seq = 0, NULL, concat('sha256:', lower(hex(hash)))) AS integrity_hash")


#: The stored columns of an event a dump holds (every column of ``events`` but the sink's source
#: position and ``_doc``), its chain link with the digests in hex, and ``_line``: the event's JSON
#: document (``_doc``, as the read API returns it) with the link's four members appended.
_DUMP_SELECT = (
    "SELECT org_id, occurred_at, event_id, trace_id, parent_id, class, type, name, end_time, status, model, "
    "model_config, user_id, session_id, agent_id, agent_name, actor_type, actor_name, prompt_name, description, "
    "outcome, input, output, messages, tools, tool_choice, input_tokens, output_tokens, total_tokens, cost, "
    "cost_currency, scores, tags, metadata, policy_version, approval_request_id, authority_model, "
    "requested_operation, target_integration, resource_scope, data_classification, policy_rule_id, "
    "parent_trace_id, ingested_at, seq, lower(hex(prev_hash)) AS prev_hash, lower(hex(hash)) AS hash, hash_version, "
    # prev_hash and hash below are the aliases above (ClickHouse substitutes them): hex already
    "concat(substring(_doc, 1, length(_doc) - 1), ',\"seq\":', toString(seq), ',\"prev_hash\":\"', prev_hash, "
    "'\",\"hash\":\"', hash, '\",\"hash_version\":', toString(hash_version), '}') AS _line")
#: Rows a dump reads per query.
DUMP_CHUNK_ROWS = 20_000


class EventExports:
    """The ``events`` table's bulk reads for exports: bounded chunks in key order, one org at a time."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self.table = f"{ch.database}.events"

    @staticmethod
    def _range(org_id: str, since_ms: int, until_ms: int) -> tuple[str, dict[str, Any]]:
        return ("org_id = {org:String} AND occurred_at >= {since:DateTime64(3, 'UTC')} "
                "AND occurred_at <= {until:DateTime64(3, 'UTC')}",
                {"org": org_id, "since": ms_datetime(since_ms), "until": ms_datetime(until_ms)})

    async def count(self, org_id: str, since_ms: int, until_ms: int) -> int:
        """Distinct events of the org that occurred in [since, until]."""
        where, params = self._range(org_id, since_ms, until_ms)
        rows = await self.ch.query(f"SELECT uniqExact(event_id) FROM {self.table} WHERE {where}", params)
        return int(rows.rows[0][0])

    async def siem_chunk(self, org_id: str, since_ms: int, until_ms: int, limit: int,
                         after: tuple[int, str] | None) -> list[dict[str, Any]]:
        """Up to ``limit`` events of [since, until] after the key ``after``, ordered by (occurred_at,
        event_id), each once, with the columns of seed 003's SIEM export (``occurred_at`` in epoch ms)."""
        where, params = self._range(org_id, since_ms, until_ms)
        if after is not None:
            where += (" AND occurred_at >= {a_ts:DateTime64(3, 'UTC')}"
                      " AND (occurred_at, event_id) > ({a_ts:DateTime64(3, 'UTC')}, {a_id:String})")
            params |= {"a_ts": ms_datetime(after[0]), "a_id": after[1]}
        rows = (await self.ch.query(f"{_SIEM_SELECT} FROM {self.table} WHERE {where} ORDER BY occurred_at, event_id "
                                    "LIMIT 1 BY occurred_at, event_id LIMIT {lim:UInt32}",
                                    params | {"lim": limit})).dicts()
        for row in rows:
            row["occurred_at"] = datetime_ms(row["occurred_at"])
        return rows

    async def dump_chunks(self, org_id: str, since_ms: int, until_ms: int, *,
                          chunk_rows: int = DUMP_CHUNK_ROWS) -> AsyncIterator[pa.Table]:
        """The org's events of [since, until], each once, ordered by (occurred_at, event_id), as Arrow
        tables of at most ``chunk_rows`` rows (``_DUMP_SELECT``'s columns, ClickHouse's own Arrow
        output: timestamps as timestamp[ms, UTC], maps as maps); one query per table, each read when
        the one before has been consumed. At least one table, empty when there is no event, so the
        columns are always known."""
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        where, params = self._range(org_id, since_ms, until_ms)
        params["lim"] = chunk_rows
        after = ""
        first = True
        while True:
            body = await self.ch.raw_query(
                f"{_DUMP_SELECT} FROM {self.table} WHERE {where}{after} ORDER BY occurred_at, event_id "
                "LIMIT 1 BY occurred_at, event_id LIMIT {lim:UInt32}", params, fmt="Arrow")
            table = pyarrow.ipc.open_file(pa.BufferReader(body)).read_all()
            if table.num_rows or first:
                yield table
            first = False
            if table.num_rows < chunk_rows:
                return
            last_at = table.column("occurred_at")[-1].value  # epoch ms
            after = (" AND occurred_at >= {a_ts:DateTime64(3, 'UTC')}"
                     " AND (occurred_at, event_id) > ({a_ts:DateTime64(3, 'UTC')}, {a_id:String})")
            params |= {"a_ts": ms_datetime(last_at), "a_id": table.column("event_id")[-1].as_py()}

    async def approval_details(self, org_id: str, trace_ids: list[str]) -> dict[str, ApprovalDetail]:
        """For each of ``trace_ids`` that has events: its first approval decision and first policy
        version, in chain order (seq)."""
        if not trace_ids:
            return {}
        decided = "type IN {decisions:Array(String)}"
        sql = (f"SELECT trace_id, countIf({decided}) AS decisions, argMinIf(type, seq, {decided}) AS decision, "
               f"argMinIf(actor_name, seq, {decided}) AS approver, "
               f"argMinIf(occurred_at, seq, {decided}) AS decided_at, "
               "countIf(policy_version IS NOT NULL) AS versions, "
               "argMinIf(policy_version, seq, policy_version IS NOT NULL) AS first_policy_version "
               f"FROM {self.table} WHERE org_id = {{org:String}} AND trace_id IN {{ids:Array(String)}} "
               "GROUP BY trace_id")
        rows = await self.ch.query(sql, {"org": org_id, "ids": trace_ids, "decisions": list(DECISIONS)})
        out = {}
        for row in rows.dicts():
            made = row["decisions"] > 0
            decision = DECISIONS[row["decision"]] if made else None
            out[row["trace_id"]] = ApprovalDetail(
                decision=decision,
                approver_name=row["approver"] if made and decision != "expired" else None,
                decided_at=datetime_ms(row["decided_at"]) if made else None,
                policy_version=row["first_policy_version"] if row["versions"] > 0 else None)
        return out
