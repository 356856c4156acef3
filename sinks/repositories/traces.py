"""The ``traces`` read model: one summary per trace, for the list surfaces.

Each sink insert adds a partial row per trace (``sinks/migrations/0007_traces.sql``);
ClickHouse merges a trace's partial rows in the background. Reads never use FINAL (it
cost 150-250 ms a page at 1M traces here): a page without filters reads the partial rows
in key order, where a trace's rows are neighbours, and merges them in Python; a filtered
page first picks candidate keys with a condition that holds for at least one partial row
of every matching trace, then merges those traces in ClickHouse and applies the exact
condition to the merged values. A filter with a key index (the trace's agent or final outcome:
``sinks/migrations/0018_trace_keys.sql``) takes its candidates from the index, which holds the
key of each trace meeting it once, and counts them there. A search of the first names
(``sinks/migrations/0020_trace_names.sql``) finds the names holding its text first, and takes its
candidates from the keys of those names when they are few.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby
from typing import Any

from schemas.timefmt import datetime_ms, ms_datetime
from schemas.trace_export import APPROVAL_DECISIONS
from sinks.clickhouse import ClickHouse
from sinks.repositories.export_sql import FORMAT_SETTINGS, iso_ms, neutral

#: Fields whose first value in the trace (lowest seq) the read model keeps, as (rank, value).
FIRST_VALUES = ("agent_id", "agent_name", "authority_model", "requested_operation", "target_integration",
                "resource_scope", "parent_trace_id", "data_classification", "policy_rule_id", "prompt_name", "name",
                "model", "model_config", "cost_currency", "user_id", "session_id")
#: How the partial rows of one trace merge (the same functions as the column types); every
#: read takes these, and the first values its caller asks for (each column read costs
#: ~0.25 ms of ClickHouse's per-query work here, whatever the rows).
MERGE = {"event_count": "max", "last_event_at": "max", "final_outcome": "max", "completed_at": "max",
         "has_approval": "max", "has_error": "max", "input_tokens": "sum", "output_tokens": "sum",
         "total_tokens": "sum", "cost": "sum", "tags": "groupUniqArrayArray"}
_PY_MERGE = {
    "max": lambda values: max((v for v in values if v is not None), default=None),
    "sum": sum,
    "groupUniqArrayArray": lambda values: set().union(*values),
}
#: Merged columns keep their names, so conditions on raw columns must not see the aliases.
_BY_COLUMN_NAME = "SETTINGS prefer_column_name_to_alias = 1"
_NEWEST_FIRST = "ORDER BY started_at DESC, trace_id DESC"
IN_PROGRESS = "in_progress"


def _merge_functions(first: Sequence[str]) -> dict[str, str]:
    unknown = set(first) - set(FIRST_VALUES)
    if unknown:
        raise ValueError(f"not first values of the traces read model: {sorted(unknown)}")
    return MERGE | dict.fromkeys(first, "max")


def _partial_columns(first: Sequence[str]) -> str:
    return ", ".join(("started_at", "trace_id", *_merge_functions(first)))


def _merged_columns(first: Sequence[str]) -> str:
    return ", ".join(["started_at", "trace_id", *(f"{fn}({c}) AS {c}" for c, fn in _merge_functions(first).items())])


@dataclass(frozen=True)
class Trace:
    """One trace's summary. Times are epoch milliseconds; ``first`` maps each first value the
    read asked for (of ``FIRST_VALUES``) to the first value an event of the trace gave it
    (None: none did)."""

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
        tags=tuple(sorted(row["tags"])),
        first={f: row[f][1] if row[f][0] else None for f in FIRST_VALUES if f in row})


def merge_partials(rows: Sequence[Mapping[str, Any]]) -> Trace:
    """The trace that the partial rows of one trace make (as ClickHouse would merge them)."""
    merged = {"started_at": rows[0]["started_at"], "trace_id": rows[0]["trace_id"]}
    for column, fn in _merge_functions([f for f in FIRST_VALUES if f in rows[0]]).items():
        merged[column] = _PY_MERGE[fn]([r[column] for r in rows])
    return _trace(merged)


#: The table of trace keys by (field, value), one row per trace and field (``0018_trace_keys.sql``).
KEYS_TABLE = "trace_keys"
#: Trace keys by the records' first prompt_name, name and model, and those names with their row
#: counts (``0020_trace_names.sql``).
NAMES_TABLE = "trace_names"
NAME_VALUES_TABLE = "trace_name_values"
NAMED_FIRST_VALUES = frozenset({"prompt_name", "name", "model"})
#: A search whose names hold more rows of ``NAMES_TABLE`` than this scans the traces instead: its
#: matches are dense there, so a page is found after a few thousand traces.
MAX_NAME_ROWS = 20_000


@dataclass(frozen=True)
class KeyIndex:
    """The rows of ``table`` meeting ``where``: the keys of the traces meeting a filter, each once
    (``exact``), or of candidates for it, maybe more than once."""

    table: str
    where: str
    exact: bool = True

    @classmethod
    def of_field(cls, field_name: str, param: str) -> KeyIndex:
        """The ``KEYS_TABLE`` rows whose ``field_name`` holds the value of query parameter ``param``."""
        return cls(KEYS_TABLE, f"field = '{field_name}' AND value = {{{param}:String}}")


@dataclass(frozen=True)
class TraceFilter:
    """A condition on merged traces (``exact``, aggregate SQL for HAVING) and one that holds
    for at least one partial row of every trace that meets it (``candidate``, for WHERE).
    ``tally``, when the filter has one, is a per-row number whose sum over the org's partial
    rows counts the traces that meet it (a count without merging); ``index``, when it has one,
    holds the matching traces' keys."""

    candidate: str
    exact: str
    params: dict[str, Any] = field(default_factory=dict)
    tally: str | None = None
    index: KeyIndex | None = None
    #: The parameter holding a searched text, when the filter is a search of names ``NAMES_TABLE``
    #: covers: the repository finds the names holding it and sets ``index``
    name_search: str | None = None


#: Counts every trace once: the partial row with the trace's first event has has_first = 1.
EVERY_TRACE = "has_first"


#: The first values with rows in ``KEYS_TABLE``.
INDEXED_FIRST_VALUES = frozenset({"agent_id"})


def first_value_is(name: str, value: str) -> TraceFilter:
    """The trace's first ``name`` (one of FIRST_VALUES) equals ``value``."""
    p = f"f_{name}"
    return TraceFilter(f"{name}.2 = {{{p}:String}}", f"max({name}).2 = {{{p}:String}}", {p: value},
                       index=KeyIndex.of_field(name, p) if name in INDEXED_FIRST_VALUES else None)


def outcome_is(outcome: str) -> TraceFilter:
    """final_outcome equals ``outcome``; a trace closes once, so the partial row holding its
    outcome is exact, and so is its row in the key index; an open trace has none in any row."""
    if outcome == IN_PROGRESS:  # every trace but the closed ones: candidates are first rows without the close
        return TraceFilter(f"{EVERY_TRACE} = 1 AND final_outcome IS NULL", "max(final_outcome) IS NULL",
                           tally=f"toInt64({EVERY_TRACE}) - (final_outcome IS NOT NULL)")
    return TraceFilter("final_outcome = {outcome:String}", "max(final_outcome) = {outcome:String}",
                       {"outcome": outcome}, index=KeyIndex.of_field("final_outcome", "outcome"))


def contains_any(text: str, names: Iterable[str]) -> TraceFilter:
    """Any of the first values ``names`` contains ``text`` (case-insensitive)."""
    names = tuple(names)
    cand = " OR ".join(f"positionCaseInsensitiveUTF8({n}.2, {{search:String}}) > 0" for n in names)
    exact = " OR ".join(f"positionCaseInsensitiveUTF8(max({n}).2, {{search:String}}) > 0" for n in names)
    return TraceFilter(f"({cand})", f"({exact})", {"search": text},
                       name_search="search" if set(names) <= NAMED_FIRST_VALUES else None)


@dataclass(frozen=True)
class TraceQuery:
    """Which traces of an org: started within [since, until] (ms, either open) and meeting every filter."""

    since_ms: int | None = None
    until_ms: int | None = None
    filters: tuple[TraceFilter, ...] = ()

    @property
    def filter_params(self) -> dict[str, Any]:
        """The query parameters every filter's SQL binds."""
        return {name: value for f in self.filters for name, value in f.params.items()}


def _first_index(query: TraceQuery) -> KeyIndex | None:
    """The key index of the first of ``query``'s filters that has one."""
    return next((f.index for f in query.filters if f.index is not None), None)


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

    async def narrowed(self, org_id: str, query: TraceQuery) -> TraceQuery:
        """``query`` with each search of names given its index: the keys of the org's names that hold
        the text (none: the filter matches nothing), unless those names hold more than
        ``MAX_NAME_ROWS`` keys, when the search scans the traces as any filter does."""
        filters = []
        for f in query.filters:
            if f.name_search is not None and f.index is None:
                rows = (await self.ch.query(
                    f"SELECT value, sum(rows) FROM {self.ch.database}.{NAME_VALUES_TABLE} "
                    "WHERE org_id = {org:String} AND positionCaseInsensitiveUTF8(value, {text:String}) > 0 "
                    "GROUP BY value", {"org": org_id, "text": f.params[f.name_search]})).rows
                if sum(n for _, n in rows) <= MAX_NAME_ROWS:
                    names = f"{f.name_search}_names"
                    f = replace(f, params=f.params | {names: [v for v, _ in rows]},
                                index=KeyIndex(NAMES_TABLE, f"value IN {{{names}:Array(String)}}", exact=False))
            filters.append(f)
        return replace(query, filters=tuple(filters))

    def _candidates(self, query: TraceQuery) -> tuple[str, str | None]:
        """Where a read picks its candidate keys: the table, and the condition there (None: every
        key). A filter's key index when one has one, else the traces table with one filter's
        candidate condition: the rows meeting each filter's may differ (a trace's agent in its
        first partial row, its outcome in a later one), so none may meet them all."""
        index = _first_index(query)
        if index is not None:
            return f"{self.ch.database}.{index.table}", index.where
        return self.table, query.filters[0].candidate if query.filters else None

    def _candidate_keys(self, org_id: str, query: TraceQuery,
                        after: tuple[int, str] | None) -> tuple[str, dict[str, Any]]:
        """SQL (and parameters) of the candidate keys strictly after ``after``, from ``_candidates``."""
        table, condition = self._candidates(query)
        where, params = self._where(org_id, query, after, condition)
        return f"SELECT started_at, trace_id FROM {table} WHERE {where}", params

    @staticmethod
    def _only_index(query: TraceQuery) -> KeyIndex | None:
        """The key index that answers ``query`` alone: its one filter's, if that has an exact one."""
        index = query.filters[0].index if len(query.filters) == 1 else None
        return index if index is not None and index.exact else None

    def _where(self, org_id: str, query: TraceQuery, after: tuple[int, str] | None,
               condition: str | None = None) -> tuple[str, dict[str, Any]]:
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
        params |= query.filter_params
        if condition is not None:
            where.append(condition)
        return " AND ".join(where), params

    def _matching_keys(self, org_id: str, query: TraceQuery) -> tuple[str, dict[str, Any]]:
        """SQL of the keys of the traces meeting every filter: the candidates' traces, merged
        from all their partial rows, kept when the exact conditions hold."""
        within, params = self._where(org_id, query, None)
        candidates, _ = self._candidate_keys(org_id, query, None)
        return (f"SELECT started_at, trace_id FROM {self.table} WHERE {within} AND (started_at, trace_id) IN "
                f"({candidates}) GROUP BY started_at, trace_id {self._having(query)}"), params

    @staticmethod
    def _having(query: TraceQuery) -> str:
        return f"HAVING {' AND '.join(f.exact for f in query.filters)}" if query.filters else ""

    async def page(self, org_id: str, query: TraceQuery, limit: int, after: tuple[int, str] | None = None,
                   first: Sequence[str] = FIRST_VALUES) -> TracePage:
        """Up to ``limit`` traces, newest first, strictly after the key ``after``, with the
        ``first`` values asked for. A filtered page that gives up scanning (MAX_ROUNDS) may
        hold fewer, with a key to go on from."""
        return await self._page(org_id, await self.narrowed(org_id, query), limit, after, first)

    async def _page(self, org_id: str, query: TraceQuery, limit: int, after: tuple[int, str] | None,
                    first: Sequence[str]) -> TracePage:
        if query.filters:
            traces, resume = await self._filtered(org_id, query, limit + 1, after, first)
        else:
            traces, resume = await self._merged_in_python(org_id, query, limit + 1, after, first), None
        if len(traces) > limit:
            traces = traces[:limit]
            resume = (traces[-1].started_at, traces[-1].trace_id)
        return TracePage(traces, resume)

    async def _in_key_order(self, columns: str, where: str, params: dict[str, Any],
                            want: int) -> list[list[dict[str, Any]]]:
        """The partial rows of the first ``want`` traces in key order (newest first), grouped
        by trace (a trace's rows are neighbours)."""
        fetch = 2 * want + 8
        while True:
            rows = (await self.ch.query(f"SELECT {columns} FROM {self.table} WHERE {where} {_NEWEST_FIRST} "
                                        "LIMIT {lim:UInt32}", params | {"lim": fetch})).dicts()
            groups = [list(g) for _, g in groupby(rows, key=lambda r: (r["started_at"], r["trace_id"]))]
            exhausted = len(rows) < fetch
            if not exhausted:
                groups.pop()  # the last trace may have more partial rows beyond the limit
            if exhausted or len(groups) >= want:
                return groups[:want]
            fetch = max(2 * fetch, fetch * want // max(1, len(groups)) + 8)

    async def _merged_in_python(self, org_id: str, query: TraceQuery, want: int, after: tuple[int, str] | None,
                                first: Sequence[str]) -> list[Trace]:
        where, params = self._where(org_id, query, after)
        groups = await self._in_key_order(_partial_columns(first), where, params, want)
        return [merge_partials(g) for g in groups]

    async def _filtered(self, org_id: str, query: TraceQuery, want: int, after: tuple[int, str] | None,
                        first: Sequence[str]) -> tuple[list[Trace], tuple[int, str] | None]:
        """Up to ``want`` matching traces, and where to resume when the scan stopped early."""
        found: list[Trace] = []
        fetch = want if _first_index(query) else 4 * want  # an index's candidates all (or nearly all) match
        for _ in range(self.MAX_ROUNDS):
            candidates, params = self._candidate_keys(org_id, query, after)
            keys = (await self.ch.query(f"{candidates} {_NEWEST_FIRST} LIMIT {{lim:UInt32}}",
                                        params | {"lim": fetch})).rows
            distinct = list(dict.fromkeys((ts, tid) for ts, tid in keys))
            if distinct:
                found += await self._merged(org_id, query, distinct, first)
            if len(keys) < fetch or len(found) >= want:
                return found, None
            after = (datetime_ms(distinct[-1][0]), distinct[-1][1])
        return found, after

    async def _merged(self, org_id: str, query: TraceQuery, keys: list[tuple[Any, str]],
                      first: Sequence[str]) -> list[Trace]:
        """The traces with these (started_at, trace_id) keys that meet every exact filter."""
        params = {"org": org_id, "lo": keys[-1][0], "hi": keys[0][0], "ids": [k[1] for k in keys]}
        params |= query.filter_params
        rows = await self.ch.query(
            f"SELECT {_merged_columns(first)} FROM {self.table} WHERE org_id = {{org:String}} "
            "AND started_at >= {lo:DateTime64(3, 'UTC')} AND started_at <= {hi:DateTime64(3, 'UTC')} "
            f"AND trace_id IN {{ids:Array(String)}} GROUP BY started_at, trace_id {self._having(query)} "
            f"{_NEWEST_FIRST} {_BY_COLUMN_NAME}", params)
        return [_trace(r) for r in rows.dicts()]

    async def offset_page(self, org_id: str, query: TraceQuery, limit: int, offset: int,
                          first: Sequence[str] = FIRST_VALUES) -> TracePage:
        """Traces ``offset`` to ``offset + limit`` (newest first): the key page after the
        ``offset``-th trace, whose key costs more the deeper it is (every trace before it is read)."""
        query = await self.narrowed(org_id, query)
        after = None
        if offset > 0:
            after = await self._key_at(org_id, query, offset)
            if after is None:
                return TracePage([], None)
        return await self._page(org_id, query, limit, after, first)

    async def _key_at(self, org_id: str, query: TraceQuery, position: int) -> tuple[int, str] | None:
        """The key of the ``position``-th trace (from 1), newest first; None past the last."""
        if query.filters:
            if self._only_index(query) is not None:  # its candidates are exactly the matching keys
                matching, params = self._candidate_keys(org_id, query, None)
            else:
                matching, params = self._matching_keys(org_id, query)
            rows = (await self.ch.query(f"{matching} {_NEWEST_FIRST} LIMIT 1 OFFSET {{skip:UInt32}}",
                                        params | {"skip": position - 1})).rows
            keys = [(r[0], r[1]) for r in rows]
        else:
            where, params = self._where(org_id, query, None)
            groups = await self._in_key_order("started_at, trace_id", where, params, position)
            keys = [(g[0]["started_at"], g[0]["trace_id"]) for g in groups[position - 1:position]]
        return (datetime_ms(keys[0][0]), keys[0][1]) if keys else None

    async def count(self, org_id: str, query: TraceQuery) -> int:
        """How many traces match (exact): the rows of a key index, or a sum of one column, when the
        filters allow (no filter, or one with an index or a tally), else by merging the candidates."""
        query = await self.narrowed(org_id, query)
        tallies = [f.tally for f in query.filters]
        index = self._only_index(query)
        if index is not None:
            where, params = self._where(org_id, query, None, index.where)
            rows = await self.ch.query(f"SELECT count() FROM {self.ch.database}.{index.table} WHERE {where}", params)
        elif len(tallies) <= 1 and all(tallies):
            where, params = self._where(org_id, query, None)
            tally = tallies[0] if tallies else EVERY_TRACE
            rows = await self.ch.query(f"SELECT sum(ifNull(toInt64({tally}), 0)) FROM {self.table} WHERE {where}",
                                       params)
        else:
            matching, params = self._matching_keys(org_id, query)
            rows = await self.ch.query(f"SELECT count() FROM ({matching})", params)
        return int(rows.rows[0][0])

    async def get(self, org_id: str, trace_id: str, first: Sequence[str] = FIRST_VALUES) -> Trace | None:
        """One trace's summary; None when the org has no such trace."""
        rows = await self.ch.query(
            f"SELECT {_merged_columns(first)} FROM {self.table} WHERE org_id = {{org:String}} "
            f"AND trace_id = {{tid:String}} GROUP BY started_at, trace_id {_BY_COLUMN_NAME}",
            {"org": org_id, "tid": trace_id})
        found = rows.dicts()
        return _trace(found[0]) if found else None


#: Seed 003's trace CSV columns that are first values of the read model, and the column each reads.
_CSV_FIRST = (("agent_id", "agent_id"), ("agent_name", "agent_name"), ("operation", "requested_operation"),
              ("target_integration", "target_integration"), ("resource_scope", "resource_scope"),
              ("data_classification", "data_classification"))
_DECISIONS = list(APPROVAL_DECISIONS)  # the event types that decide an approval request


class TraceExports:
    """Seed 003's bulk trace CSV written by ClickHouse, chunk by chunk, newest first: each chunk one
    query over the traces read model, a trace's partial rows merged by ``FINAL`` (its approval
    decision and policy version are first values there too, migration 0017)."""

    def __init__(self, traces: TraceRepository) -> None:
        self.traces, self.ch = traces, traces.ch

    def _merged(self, org_id: str, query: TraceQuery, after: tuple[int, str] | None,
                columns: str) -> tuple[str, dict[str, Any]]:
        """SQL of the traces meeting ``query`` strictly older than ``after``, one merged row each
        (``FINAL`` merges a trace's partial rows as the table's functions do), with ``columns``.
        On a merged row a filter's per-row ``candidate`` condition is exact."""
        within, params = self.traces._where(org_id, query, after)
        if _first_index(query):  # a key index's candidates: only the granules of their traces are read
            keys, _ = self.traces._candidate_keys(org_id, query, after)
            within += f" AND (started_at, trace_id) IN ({keys})"
        merged = f"SELECT {columns} FROM {self.traces.table} FINAL WHERE {within}"
        if query.filters:
            merged = f"SELECT * FROM ({merged}) WHERE {' AND '.join(f.candidate for f in query.filters)}"
        return merged, params

    async def csv_chunk(self, org_id: str, query: TraceQuery, limit: int,
                        after: tuple[int, str] | None) -> tuple[bytes, tuple[int, str] | None]:
        """Up to ``limit`` traces meeting ``query``, strictly older than the key ``after``, as CSV rows
        of the 17 columns (no header); and the key to go on after, None when no trace follows."""
        merged_columns = ", ".join(["started_at", "trace_id", "final_outcome", "completed_at", "has_approval",
                                    "decision", "policy_version",
                                    *(c for _, c in (*_CSV_FIRST, ("", "policy_rule_id")))])
        if query.filters:  # the limit-th trace that meets them
            keys, params = self._merged(org_id, query, after, merged_columns)
        else:  # the limit-th partial row: a chunk holds at most ``limit`` traces
            within, params = self.traces._where(org_id, query, after)
            keys = f"SELECT started_at, trace_id FROM {self.traces.table} WHERE {within}"
        last = await self.ch.query(f"SELECT started_at, trace_id FROM ({keys}) {_NEWEST_FIRST} "
                                   "LIMIT 1 OFFSET {skip:UInt32}", params | {"skip": limit - 1})
        merged, params = self._merged(org_id, query, after, merged_columns)
        next_key = None
        if last.rows:
            next_key = (datetime_ms(last.rows[0][0]), last.rows[0][1])
            merged += (" AND started_at >= {l_ts:DateTime64(3, 'UTC')}"
                       " AND (started_at, trace_id) >= ({l_ts:DateTime64(3, 'UTC')}, {l_id:String})")
            params |= {"l_ts": last.rows[0][0], "l_id": last.rows[0][1]}

        def first(column: str) -> str:
            return f"if({column}.1 = 0, NULL, {neutral(f'{column}.2')})"

        decided = "decision.1 != 0"
        approver = neutral("nullIf(decision.3, '')")  # stored as '' when the deciding event named none
        columns = ", ".join([
            neutral("trace_id"), *(first(column) for _, column in _CSV_FIRST),
            "ifNull(final_outcome, 'in_progress')", iso_ms("started_at"), iso_ms("completed_at"),
            "if(isNull(completed_at), NULL, "
            "toUnixTimestamp64Milli(assumeNotNull(completed_at)) - toUnixTimestamp64Milli(started_at))",
            "if(has_approval, 'true', 'false')",
            f"if({decided} AND decision.2 != 'approval_expired', {approver}, NULL)",  # expired: no approver
            f"if({decided}, transform(decision.2, {_DECISIONS}, {list(APPROVAL_DECISIONS.values())}, ''), NULL)",
            f"if({decided}, {iso_ms('decision.4')}, NULL)", first("policy_rule_id"),
            "if(policy_version.1 = 0, NULL, policy_version.2)"])
        body = await self.ch.raw_query(f"SELECT {columns} FROM ({merged}) {_NEWEST_FIRST}",
                                       params, fmt="CSV", settings=FORMAT_SETTINGS)
        return body, next_key
