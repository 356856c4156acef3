"""The ``events`` table: keyset pages and whole traces, as the stored event documents
(``_doc``, migration 0011: each event's JSON object as the read API returns it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.ipc

from schemas.timefmt import datetime_ms, ms_datetime
from sinks.clickhouse import ClickHouse
from sinks.repositories.chains import LINK_COLUMNS
from sinks.repositories.export_sql import FORMAT_SETTINGS
from sinks.repositories.siem_sql import SIEM_FORMATS


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
    stored_until_ms: int | None = None  # stored (``ingested_at``) at or before this instant: a snapshot
    app_id: str | None = None  # exact; events without one belong to no application and never match

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
        if self.app_id is not None:
            add("app_id = {app:String}", app=self.app_id)
        if self.metadata is not None:
            add("mapContains(metadata, {mkey:String}) AND metadata[{mkey:String}] = {mvalue:String}",
                mkey=self.metadata[0], mvalue=self.metadata[1])
        if self.stored_until_ms is not None:
            add("ingested_at <= {stored:DateTime64(3, 'UTC')}", stored=ms_datetime(self.stored_until_ms))
        return where, params


UNSET_STATUS = "STATUS_CODE_UNSET"


def after_key(after: tuple[int, str]) -> tuple[str, dict[str, Any]]:
    """The condition "strictly after the keyset position (occurred_at ms, event_id)" and its parameters
    (the first half lets ClickHouse skip the granules before it by the primary key)."""
    return ("occurred_at >= {a_ts:DateTime64(3, 'UTC')} "
            "AND (occurred_at, event_id) > ({a_ts:DateTime64(3, 'UTC')}, {a_id:String})",
            {"a_ts": ms_datetime(after[0]), "a_id": after[1]})


def _filtered(org_id: str, flt: EventFilter, after: tuple[int, str] | None) -> tuple[str, dict[str, Any]]:
    """The org's events meeting ``flt`` strictly after the keyset position ``after``: SQL and parameters."""
    conditions, params = flt.conditions()
    where = ["org_id = {org:String}", *conditions]
    params["org"] = org_id
    if after is not None:
        condition, values = after_key(after)
        where.append(condition)
        params |= values
    return " AND ".join(where), params


def _between(org_id: str, flt: EventFilter, keys: Sequence[tuple[int, str]]) -> tuple[str, dict[str, Any]]:
    """The org's events meeting ``flt`` from the first keyset position of ``keys`` to the last, both
    included: SQL and parameters."""
    conditions, params = flt.conditions()
    (lo_ms, lo_id), (hi_ms, hi_id) = keys[0], keys[-1]
    where = ["org_id = {org:String}", *conditions,
             "occurred_at >= {lo_ts:DateTime64(3, 'UTC')} AND occurred_at <= {hi_ts:DateTime64(3, 'UTC')}",
             "(occurred_at, event_id) >= ({lo_ts:DateTime64(3, 'UTC')}, {lo_id:String})",
             "(occurred_at, event_id) <= ({hi_ts:DateTime64(3, 'UTC')}, {hi_id:String})"]
    params |= {"org": org_id, "lo_ts": ms_datetime(lo_ms), "lo_id": lo_id, "hi_ts": ms_datetime(hi_ms),
               "hi_id": hi_id}
    return " AND ".join(where), params


@dataclass(frozen=True)
class PageRow:
    """One event of an export page: its key, its document's size, and the document when small."""

    key: tuple[int, str]  # (occurred_at ms, event_id)
    size: int  # bytes of its document
    doc: str | None  # the document, None when larger than the page's inline bytes


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
        where, params = _filtered(org_id, flt, after)
        params["lim"] = limit + 1
        sql = (f"SELECT occurred_at, event_id, _doc FROM {self.table} WHERE {where} "
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


#: The stored columns of an event that a dump and a Parquet export hold: every column of ``events``
#: but the sink's source position and ``_doc``, and its chain link with the digests in hex. A dump
#: adds ``_line``: the event's JSON document (``_doc``, as the read API returns it) with the link's
#: four members appended.
_STORED_COLUMNS = (
    "org_id, occurred_at, event_id, trace_id, parent_id, class, type, name, end_time, status, model, "
    "model_config, user_id, session_id, agent_id, agent_name, actor_type, actor_name, prompt_name, description, "
    "outcome, input, output, messages, tools, tool_choice, input_tokens, output_tokens, total_tokens, cost, "
    "cost_currency, scores, tags, metadata, policy_version, approval_request_id, authority_model, "
    "requested_operation, target_integration, resource_scope, data_classification, policy_rule_id, "
    f"parent_trace_id, app_id, ingested_at, {LINK_COLUMNS}")
_DUMP_SELECT = (
    f"SELECT {_STORED_COLUMNS}, "
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
    def _range(org_id: str, since_ms: int, until_ms: int,
               after: tuple[int, str] | None = None) -> tuple[str, dict[str, Any]]:
        """The org's events that occurred in [since, until], strictly after the key ``after``."""
        where = ("org_id = {org:String} AND occurred_at >= {since:DateTime64(3, 'UTC')} "
                 "AND occurred_at <= {until:DateTime64(3, 'UTC')}")
        params = {"org": org_id, "since": ms_datetime(since_ms), "until": ms_datetime(until_ms)}
        if after is not None:
            condition, values = after_key(after)
            where += " AND " + condition
            params |= values
        return where, params

    async def count(self, org_id: str, since_ms: int, until_ms: int) -> int:
        """Distinct events (by key) of the org that occurred in [since, until]."""
        where, params = self._range(org_id, since_ms, until_ms)
        rows = await self.ch.query(f"SELECT count() FROM {self.table} FINAL WHERE {where}", params)
        return int(rows.rows[0][0])

    async def siem_formatted(self, org_id: str, since_ms: int, until_ms: int, fmt: str, limit: int,
                             after: tuple[int, str] | None) -> tuple[bytes, tuple[int, str] | None]:
        """Up to ``limit`` events of [since, until] after the key ``after``, ordered by (occurred_at,
        event_id), each once, written by ClickHouse as seed 003's SIEM export format ``fmt`` (a key of
        ``SIEM_FORMATS``); and the key to go on after, None when no event follows.

        Two queries: the chunk's last key (the ``limit``-th row, a key stored twice counted twice), then
        the rows up to it, each key once (``FINAL`` merges the rows of a key that a resend stored twice;
        cheaper than ``LIMIT 1 BY``, measured 2026-12-05). Bounding the second query by the first lets
        it read only its chunk: without the bound, ClickHouse sorts every row after ``after``."""
        columns, output = SIEM_FORMATS[fmt]
        where, params = self._range(org_id, since_ms, until_ms, after)
        last = await self.ch.query(f"SELECT occurred_at, event_id FROM {self.table} WHERE {where} "
                                   "ORDER BY occurred_at, event_id LIMIT 1 OFFSET {skip:UInt32}",
                                   params | {"skip": limit - 1})
        upto = ""
        next_key = None
        if last.rows:
            next_key = (datetime_ms(last.rows[0][0]), last.rows[0][1])
            upto = (" AND (occurred_at, event_id) <= ({l_ts:DateTime64(3, 'UTC')}, {l_id:String})"
                    " AND occurred_at <= {l_ts:DateTime64(3, 'UTC')}")
            params |= {"l_ts": last.rows[0][0], "l_id": last.rows[0][1]}
        body = await self.ch.raw_query(f"SELECT {columns} FROM {self.table} FINAL WHERE {where}{upto} "
                                       "ORDER BY occurred_at, event_id", params, fmt=output, settings=FORMAT_SETTINGS)
        return body, next_key

    async def page_rows(self, org_id: str, flt: EventFilter, limit: int, after: tuple[int, str] | None,
                        inline_bytes: int) -> tuple[list[PageRow], bool]:
        """The events matching ``flt`` strictly after ``after`` among its first ``limit`` rows, in key
        order, each once (a key stored twice and not merged yet takes two of the rows), with the
        documents of at most ``inline_bytes`` (the others: ``documents``); and whether all ``limit``
        rows were found (more may follow). What an export page holds, decided before its first
        byte. No ``LIMIT 1 BY``: ClickHouse then reads the rows in key order and stops (10-13 ms
        against 25-35 ms for 2,001 keys of 1M events, measured 2026-12-05)."""
        where, params = _filtered(org_id, flt, after)
        sql = (f"SELECT toUnixTimestamp64Milli(occurred_at), event_id, length(_doc) AS size, "
               f"if(size <= {{inline:UInt32}}, _doc, '') FROM {self.table} WHERE {where} "
               "ORDER BY occurred_at, event_id LIMIT {lim:UInt32}")
        found = (await self.ch.query(sql, params | {"lim": limit, "inline": inline_bytes})).rows
        rows: list[PageRow] = []
        for at_ms, event_id, size, doc in found:
            key = (at_ms, event_id)
            if not rows or rows[-1].key != key:
                rows.append(PageRow(key, size, doc if size <= inline_bytes else None))
        return rows, len(found) == limit

    async def documents(self, org_id: str, flt: EventFilter,
                        keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], str]:
        """The stored documents (``_doc``) of the events ``keys`` (in key order) that meet ``flt``."""
        if not keys:
            return {}
        where, params = _between(org_id, flt, keys)
        sql = (f"SELECT occurred_at, event_id, _doc FROM {self.table} WHERE {where} "
               "AND has({wanted:Array(String)}, event_id) LIMIT 1 BY occurred_at, event_id")
        wanted = set(keys)
        found = {(datetime_ms(ts), event_id): doc for ts, event_id, doc in
                 (await self.ch.query(sql, params | {"wanted": [k[1] for k in keys]})).rows}
        return {key: doc for key, doc in found.items() if key in wanted}

    async def stored_columns(self, org_id: str, flt: EventFilter, keys: Sequence[tuple[int, str]]) -> pa.Table:
        """The events ``keys`` (as ``documents``) as one Arrow table of ``_STORED_COLUMNS``, in that
        order, each once: ClickHouse's own Arrow output (timestamps as timestamp[ms, UTC], maps as maps)."""
        where, params = _between(org_id, flt, keys) if keys else ("0", {})
        body = await self.ch.raw_query(
            f"SELECT {_STORED_COLUMNS} FROM {self.table} WHERE {where} ORDER BY occurred_at, event_id "
            "LIMIT 1 BY occurred_at, event_id", params, fmt="Arrow")
        table = pyarrow.ipc.open_file(pa.BufferReader(body)).read_all()
        wanted = set(keys)
        found = zip(table.column("occurred_at").cast(pa.int64()).to_pylist(), table.column("event_id").to_pylist(),
                    strict=True)
        return table.filter(pa.array([key in wanted for key in found], pa.bool_()))

    async def dump_chunks(self, org_id: str, since_ms: int, until_ms: int, *,
                          chunk_rows: int = DUMP_CHUNK_ROWS) -> AsyncIterator[pa.Table]:
        """The org's events of [since, until], each once, ordered by (occurred_at, event_id), as Arrow
        tables of at most ``chunk_rows`` rows (``_DUMP_SELECT``'s columns, ClickHouse's own Arrow
        output: timestamps as timestamp[ms, UTC], maps as maps); one query per table, each read when
        the one before has been consumed. At least one table, empty when there is no event, so the
        columns are always known."""
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        after = None
        first = True
        while True:
            where, params = self._range(org_id, since_ms, until_ms, after)
            body = await self.ch.raw_query(
                f"{_DUMP_SELECT} FROM {self.table} WHERE {where} ORDER BY occurred_at, event_id "
                "LIMIT 1 BY occurred_at, event_id LIMIT {lim:UInt32}", params | {"lim": chunk_rows}, fmt="Arrow")
            table = pyarrow.ipc.open_file(pa.BufferReader(body)).read_all()
            if table.num_rows or first:
                yield table
            first = False
            if table.num_rows < chunk_rows:
                return
            after = (table.column("occurred_at")[-1].value, table.column("event_id")[-1].as_py())  # epoch ms
