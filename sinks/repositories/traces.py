"""The ``traces`` read model: one summary per trace, for the list surfaces.

Each sink insert adds a partial row per trace (``sinks/migrations/0007_traces.sql``);
ClickHouse merges a trace's partial rows in the background. Reads never use FINAL (it
cost 150-250 ms a page at 1M traces here): a page without filters reads the partial rows
in key order, where a trace's rows are neighbours, and merges them in Python; a filtered
page first picks candidate keys with a condition that holds for at least one partial row
of every matching trace, then merges those traces in ClickHouse and applies the exact
condition to the merged values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from schemas.timefmt import datetime_ms, ms_datetime
from sinks.clickhouse import ClickHouse

#: Fields whose first value in the trace (lowest seq) the read model keeps, as (rank, value).
FIRST_VALUES = ("agent_id", "agent_name", "authority_model", "requested_operation", "target_integration",
                "resource_scope", "parent_trace_id", "data_classification", "policy_rule_id", "prompt_name", "name",
                "model", "model_config", "cost_currency", "user_id", "session_id")
#: How the partial rows of one trace merge (the same functions as the column types).
MERGE = {"event_count": "max", "last_event_at": "max", "final_outcome": "max", "completed_at": "max",
         "has_approval": "max", "has_error": "max", "input_tokens": "sum", "output_tokens": "sum",
         "total_tokens": "sum", "cost": "sum", "tags": "groupUniqArrayArray"} | dict.fromkeys(FIRST_VALUES, "max")
_PY_MERGE = {
    "max": lambda values: max((v for v in values if v is not None), default=None),
    "sum": sum,
    "groupUniqArrayArray": lambda values: set().union(*values),
}
_COLUMNS = ", ".join(("started_at", "trace_id", *MERGE))
_MERGED = ", ".join(["started_at", "trace_id", *(f"{fn}({c}) AS {c}" for c, fn in MERGE.items())])
#: Merged columns keep their names, so conditions on raw columns must not see the aliases.
_SETTINGS = {"prefer_column_name_to_alias": 1}
_NEWEST_FIRST = "ORDER BY started_at DESC, trace_id DESC"
IN_PROGRESS = "in_progress"


@dataclass(frozen=True)
class Trace:
    """One trace's summary. Times are epoch milliseconds; ``first`` maps each of
    ``FIRST_VALUES`` to the first value an event of the trace gave it (None: none did)."""

    trace_id: str
    started_at: int
    event_count: int
    last_event_at: int
    final_outcome: str
    completed_at: int | None
    has_approval: bool
    has_error: bool
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost: float
    tags: tuple[str, ...]
    first: Mapping[str, str | None]

    @property
    def duration_ms(self) -> int | None:
        """From start to close; None while the trace is open."""
        return None if self.completed_at is None else self.completed_at - self.started_at


def _trace(row: Mapping[str, Any]) -> Trace:
    completed = row["completed_at"]
    return Trace(
        trace_id=row["trace_id"], started_at=datetime_ms(row["started_at"]), event_count=int(row["event_count"]),
        last_event_at=datetime_ms(row["last_event_at"]), final_outcome=row["final_outcome"] or IN_PROGRESS,
        completed_at=None if completed is None else datetime_ms(completed), has_approval=bool(row["has_approval"]),
        has_error=bool(row["has_error"]), input_tokens=int(row["input_tokens"]),
        output_tokens=int(row["output_tokens"]), total_tokens=int(row["total_tokens"]), cost=float(row["cost"]),
        tags=tuple(sorted(row["tags"])), first={f: row[f][1] if row[f][0] else None for f in FIRST_VALUES})


def merge_partials(rows: Sequence[Mapping[str, Any]]) -> Trace:
    """The trace that the partial rows of one trace make (as ClickHouse would merge them)."""
    merged = {"started_at": rows[0]["started_at"], "trace_id": rows[0]["trace_id"]}
    for column, fn in MERGE.items():
        merged[column] = _PY_MERGE[fn]([r[column] for r in rows])
    return _trace(merged)


@dataclass(frozen=True)
class TraceFilter:
    """A condition on merged traces (``exact``, aggregate SQL for HAVING) and one that holds
    for at least one partial row of every trace that meets it (``candidate``, for WHERE)."""

    candidate: str
    exact: str
    params: dict[str, Any] = field(default_factory=dict)


def first_value_is(name: str, value: str) -> TraceFilter:
    """The trace's first ``name`` (one of FIRST_VALUES) equals ``value``."""
    p = f"f_{name}"
    return TraceFilter(f"{name}.2 = {{{p}:String}}", f"max({name}).2 = {{{p}:String}}", {p: value})


def outcome_is(outcome: str) -> TraceFilter:
    """final_outcome equals ``outcome``; a trace closes once, so the partial row holding its
    outcome is exact; an open trace has none in any row."""
    if outcome == IN_PROGRESS:
        return TraceFilter("final_outcome IS NULL", "max(final_outcome) IS NULL")
    return TraceFilter("final_outcome = {outcome:String}", "max(final_outcome) = {outcome:String}",
                       {"outcome": outcome})


def contains_any(text: str, names: Iterable[str]) -> TraceFilter:
    """Any of the first values ``names`` contains ``text`` (case-insensitive)."""
    names = tuple(names)
    cand = " OR ".join(f"positionCaseInsensitiveUTF8({n}.2, {{search:String}}) > 0" for n in names)
    exact = " OR ".join(f"positionCaseInsensitiveUTF8(max({n}).2, {{search:String}}) > 0" for n in names)
    return TraceFilter(f"({cand})", f"({exact})", {"search": text})


@dataclass(frozen=True)
class TraceQuery:
    """Which traces of an org: started within [since, until] (ms, either open) and meeting every filter."""

    since_ms: int | None = None
    until_ms: int | None = None
    filters: tuple[TraceFilter, ...] = ()


@dataclass(frozen=True)
class TracePage:
    traces: list[Trace]
    next_key: tuple[int, str] | None  # (started_at ms, trace_id) of the last trace when more may follow


class TraceRepository:
    """Reads of the ``traces`` table, always scoped to one org, newest first."""

    #: Rounds of candidate keys a filtered page reads before it returns what it found.
    MAX_ROUNDS = 20

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self.table = f"{ch.database}.traces"

    def _where(self, org_id: str, query: TraceQuery, after: tuple[int, str] | None,
               candidates: bool) -> tuple[str, dict[str, Any]]:
        where = ["org_id = {org:String}"]
        params: dict[str, Any] = {"org": org_id}
        if query.since_ms is not None:
            where.append("started_at >= {since:DateTime64(3, 'UTC')}")
            params["since"] = ms_datetime(query.since_ms)
        if query.until_ms is not None:
            where.append("started_at <= {until:DateTime64(3, 'UTC')}")
            params["until"] = ms_datetime(query.until_ms)
        if after is not None:  # the bound on started_at alone is what the primary key uses
            where.append("started_at <= {a_ts:DateTime64(3, 'UTC')}")
            where.append("(started_at, trace_id) < ({a_ts:DateTime64(3, 'UTC')}, {a_id:String})")
            params |= {"a_ts": ms_datetime(after[0]), "a_id": after[1]}
        if candidates:
            for f in query.filters:
                where.append(f.candidate)
                params |= f.params
        return " AND ".join(where), params

    @staticmethod
    def _having(query: TraceQuery) -> str:
        return f"HAVING {' AND '.join(f.exact for f in query.filters)}" if query.filters else ""

    async def page(self, org_id: str, query: TraceQuery, limit: int,
                   after: tuple[int, str] | None = None) -> TracePage:
        """Up to ``limit`` traces, newest first, strictly after the key ``after``. A filtered
        page that gives up scanning (MAX_ROUNDS) may hold fewer, with a key to go on from."""
        if query.filters:
            traces, resume = await self._filtered(org_id, query, limit + 1, after)
        else:
            traces, resume = await self._merged_in_python(org_id, query, limit + 1, after), None
        if len(traces) > limit:
            traces = traces[:limit]
            resume = (traces[-1].started_at, traces[-1].trace_id)
        return TracePage(traces, resume)

    async def _merged_in_python(self, org_id: str, query: TraceQuery, want: int,
                                after: tuple[int, str] | None) -> list[Trace]:
        where, params = self._where(org_id, query, after, candidates=False)
        fetch = 2 * want + 8
        while True:
            rows = (await self.ch.query(f"SELECT {_COLUMNS} FROM {self.table} WHERE {where} {_NEWEST_FIRST} "
                                        "LIMIT {lim:UInt32}", params | {"lim": fetch})).dicts()
            groups = [list(g) for _, g in groupby(rows, key=lambda r: (r["started_at"], r["trace_id"]))]
            exhausted = len(rows) < fetch
            if not exhausted:
                groups.pop()  # the last trace may have more partial rows beyond the limit
            if exhausted or len(groups) >= want:
                return [merge_partials(g) for g in groups[:want]]
            fetch *= 4

    async def _filtered(self, org_id: str, query: TraceQuery, want: int,
                        after: tuple[int, str] | None) -> tuple[list[Trace], tuple[int, str] | None]:
        """Up to ``want`` matching traces, and where to resume when the scan stopped early."""
        found: list[Trace] = []
        fetch = 4 * want
        for _ in range(self.MAX_ROUNDS):
            where, params = self._where(org_id, query, after, candidates=True)
            keys = (await self.ch.query(f"SELECT started_at, trace_id FROM {self.table} WHERE {where} "
                                        f"{_NEWEST_FIRST} LIMIT {{lim:UInt32}}", params | {"lim": fetch})).rows
            distinct = list(dict.fromkeys((ts, tid) for ts, tid in keys))
            if distinct:
                found += await self._merged(org_id, query, distinct)
            if len(keys) < fetch or len(found) >= want:
                return found, None
            after = (datetime_ms(distinct[-1][0]), distinct[-1][1])
        return found, after

    async def _merged(self, org_id: str, query: TraceQuery, keys: list[tuple[Any, str]]) -> list[Trace]:
        """The traces with these (started_at, trace_id) keys that meet every exact filter."""
        params = {"org": org_id, "lo": keys[-1][0], "hi": keys[0][0], "ids": [k[1] for k in keys]}
        for f in query.filters:
            params |= f.params
        rows = await self.ch.query(
            f"SELECT {_MERGED} FROM {self.table} WHERE org_id = {{org:String}} "
            "AND started_at >= {lo:DateTime64(3, 'UTC')} AND started_at <= {hi:DateTime64(3, 'UTC')} "
            f"AND trace_id IN {{ids:Array(String)}} GROUP BY started_at, trace_id {self._having(query)} "
            f"{_NEWEST_FIRST}", params, settings=_SETTINGS)
        return [_trace(r) for r in rows.dicts()]

    async def offset_page(self, org_id: str, query: TraceQuery, limit: int, offset: int) -> list[Trace]:
        """Traces ``offset`` to ``offset + limit`` (newest first), merged in ClickHouse; costs
        grow with the offset (a first page is cheaper as a key page: ``page``)."""
        where, params = self._where(org_id, query, None, candidates=True)
        rows = await self.ch.query(
            f"SELECT {_MERGED} FROM {self.table} WHERE {where} GROUP BY started_at, trace_id {self._having(query)} "
            f"{_NEWEST_FIRST} LIMIT {{lim:UInt32}} OFFSET {{off:UInt32}}",
            params | {"lim": limit, "off": offset}, settings=_SETTINGS)
        return [_trace(r) for r in rows.dicts()]

    async def count(self, org_id: str, query: TraceQuery) -> int:
        """How many traces match (exact)."""
        where, params = self._where(org_id, query, None, candidates=True)
        rows = await self.ch.query(
            f"SELECT count() FROM (SELECT 1 FROM {self.table} WHERE {where} GROUP BY started_at, trace_id "
            f"{self._having(query)})", params, settings=_SETTINGS)
        return int(rows.rows[0][0])

    async def get(self, org_id: str, trace_id: str) -> Trace | None:
        """One trace's summary; None when the org has no such trace."""
        rows = await self.ch.query(
            f"SELECT {_MERGED} FROM {self.table} WHERE org_id = {{org:String}} AND trace_id = {{tid:String}} "
            "GROUP BY started_at, trace_id", {"org": org_id, "tid": trace_id}, settings=_SETTINGS)
        found = rows.dicts()
        return _trace(found[0]) if found else None
