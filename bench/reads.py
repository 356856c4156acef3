"""Benchmark the read API at 1M and 10M stored events (100k and 1M traces of 10 events).

The events and their trace summaries are generated straight into embedded ClickHouse
(``INSERT ... SELECT FROM numbers()``, the same tables the sink fills), then the API runs
in this process on that ClickHouse and is called over HTTP, one request at a time. For
every surface: the first page and the 50th page by cursor, without and with each selective
filter, and offset (page-number) paging beside them; GET /v1/metrics from the hourly
rollups, and without HTTP beside the same buckets counted from the events; the governance
list's exact totals without HTTP. Last, ``BENCH_READ_USERS`` clients (default 4) call the three
trace lists at once, beside the same requests from one client. ``BENCH_READ_SAMPLES`` sets the
requests per figure (default 40). Each figure is printed with the goal it answers to (ratios
within the run: a filtered page against its unfiltered list, page 50 against page 1, p99
against p50, a detail read against its list; exact totals in ms), for each layout in
``BENCH_READ_LAYOUTS`` (``spread`` and ``arrival``, see ``LAYOUTS``).

Repeated requests meet warm caches (the OS page cache, ClickHouse's mark and query
condition caches), as a list a user pages through or a dashboard refreshes does; filtered
figures rotate through several filter values so no single cached answer dominates.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path
from typing import Any

import psutil
from aiohttp import web

from api.app import create_app
from bench.stats import pct
from schemas.timefmt import format_ms, now_ms
from schemas.topics import COMMAND_VERDICTS, WEBHOOK_SUBSCRIPTIONS
from sinks.clickhouse import ClickHouse
from sinks.migrate import migrate
from sinks.repositories.rollups import RollupRepository
from streams.embedded.broker import EmbeddedBroker, free_port
from streams.topics import ensure_topics
from tests.support.service import ADMIN_KEY, Api
from tracehouse.settings import Settings

SAMPLES = int(os.environ.get("BENCH_READ_SAMPLES", "40"))
ORG = "bench-reads"
EVENTS_PER_TRACE = 10
#: Traces stored at each measurement (1M then 10M events by default).
STAGES = tuple(int(n) for n in os.environ.get("BENCH_READ_TRACES", "100000,1000000").split(","))
DAY_MS = 86_400_000
#: Traces start uniformly over 29 days ending an hour ago: inside seed 001's 30-day default window.
SPAN_MS = 29 * DAY_MS
DEEP_PAGE = 50
#: Clients calling the three list surfaces at once in the concurrency figure.
USERS = int(os.environ.get("BENCH_READ_USERS", "4"))
MODEL_CONFIG = '{"temperature":0.2}'


#: SQL of trace ``t``'s model and prompt name, the same in its events, its summary and the names index.
_MODEL = "if(t % 50 = 7, 'o1-preview', ['gpt-4o', 'claude-sonnet', 'gpt-4o-mini', 'llama-3.1'][t % 4 + 1])"
_PROMPT = "concat('prompt-', leftPad(toString(t % 1000), 4, '0'))"


def _start_ms(end_ms: int) -> str:
    """SQL of trace ``t``'s start: a hashed time in the span ending at ``end_ms``."""
    return f"{end_ms - SPAN_MS} + cityHash64(t) % {SPAN_MS}"


def _within(window: tuple[int, int] | None) -> str:
    """SQL keeping the traces that start in ``window`` ([lo, hi) ms; None: all of them)."""
    return "1" if window is None else f"start_ms >= {window[0]} AND start_ms < {window[1]}"


def _events_sql(db: str, first: int, count: int, end_ms: int, window: tuple[int, int] | None = None) -> str:
    """Events ``EVENTS_PER_TRACE`` per trace for traces [first, first + count) that start in
    ``window``: a trace t starts at a hashed time in the span; its events follow 250 ms apart."""
    e = EVENTS_PER_TRACE
    return f"""
INSERT INTO {db}.events (org_id, occurred_at, event_id, trace_id, class, type, name, status, model, model_config,
    user_id, session_id, agent_id, agent_name, actor_type, actor_name, prompt_name, description, input, output,
    messages, input_tokens, output_tokens, total_tokens, cost, cost_currency, scores, tags, metadata,
    authority_model, requested_operation, target_integration, resource_scope, seq, prev_hash, hash,
    _topic, _partition, _offset)
WITH intDiv(number, {e}) AS t, number % {e} + 1 AS s, s % 3 = 1 AS gen, {_start_ms(end_ms)} AS start_ms
SELECT '{ORG}', fromUnixTimestamp64Milli(toInt64(start_ms + (s - 1) * 250), 'UTC'),
    concat('e', toString(t), '-', toString(s)), concat('t', toString(t)),
    ['llm', 'tool', 'policy'][s % 3 + 1], ['EVENT', 'GENERATION', 'SPAN'][s % 3 + 1], concat('step-', toString(s)),
    if(s = {e} AND t % 100 = 3, 'STATUS_CODE_ERROR', 'STATUS_CODE_OK'),
    if(gen, {_MODEL}, NULL),
    if(gen, '{MODEL_CONFIG}', NULL),
    concat('user-', toString(t % 20000)), concat('session-', toString(intDiv(t, 3))),
    concat('agent-', toString(t % 200)), concat('Agent ', toString(t % 200)), 'agent', 'runner',
    {_PROMPT}, 'a step of the bench workload',
    concat('"', repeat('x', 120), '"'), if(gen, '"the answer"', NULL),
    if(gen, '[{{"role":"user","content":"hello"}},{{"role":"assistant","content":"hi"}}]', NULL),
    if(gen, 100, NULL), if(gen, 40, NULL), if(gen, 140, NULL), if(gen, 0.0021, NULL), if(gen, 'USD', NULL),
    map('quality', (t % 100) / 100), ['bench', concat('tag-', toString(t % 100))],
    map('customer', concat('c-', toString(t % 1000))),
    'delegated', 'crm.update', 'salesforce', 'accounts:write',
    s, toFixedString(reinterpretAsString(cityHash64(t, s - 1)), 32),
    toFixedString(reinterpretAsString(cityHash64(t, s)), 32), 'sealed-events', t % 4, number
FROM numbers({first * e}, {count * e})
WHERE {_within(window)}"""


#: Trace ``t``'s final outcome (NULL: still open).
_OUTCOME = "multiIf(t % 20 = 1, NULL, t % 20 = 0, 'denied', t % 20 = 2, 'blocked', 'executed')"


def _traces_sql(db: str, first: int, count: int, end_ms: int, partial: bool,
                window: tuple[int, int] | None = None) -> str:
    """The traces read model's rows for the same traces: one whole row each, or (``partial``)
    for one trace in ten a second partial row in its own insert (the first nine events, no
    close, no totals): the shape of a trace whose events came in two sink inserts and that
    ClickHouse has not merged yet."""
    e = EVENTS_PER_TRACE
    gens = len([s for s in range(1, e + 1) if s % 3 == 1])
    x = int(partial)

    def first_value(value: str) -> str:
        return f"(18446744073709551614, {value})"

    return f"""
INSERT INTO {db}.traces
WITH number AS t, {_start_ms(end_ms)} AS start_ms, start_ms + {(e - 1) * 250} AS last_ms,
     {_OUTCOME} AS outcome,
     {_MODEL} AS model
SELECT '{ORG}', fromUnixTimestamp64Milli(toInt64(start_ms), 'UTC'), concat('t', toString(t)),
    {e - x}, {x} OR t % 10 != 5, fromUnixTimestamp64Milli(toInt64(last_ms - {x * 250}), 'UTC'),
    if({x}, NULL, outcome), if({x} OR outcome IS NULL, NULL, fromUnixTimestamp64Milli(toInt64(last_ms), 'UTC')),
    t % 10 = 0, t % 100 = 3 AND NOT {x},
    {(1 - x) * gens * 100}, {(1 - x) * gens * 40}, {(1 - x) * gens * 140}, {(1 - x) * gens * 0.0021},
    ['bench', concat('tag-', toString(t % 100))],
    {first_value("concat('agent-', toString(t % 200))")}, {first_value("concat('Agent ', toString(t % 200))")},
    {first_value("'delegated'")}, {first_value("'crm.update'")}, {first_value("'salesforce'")},
    {first_value("'accounts:write'")}, (0, ''), (0, ''), (0, ''),
    {first_value(_PROMPT)}, {first_value("'step-1'")},
    {first_value("model")}, {first_value(f"'{MODEL_CONFIG}'")}, {first_value("'USD'")},
    {first_value("concat('user-', toString(t % 20000))")},
    {first_value("concat('session-', toString(intDiv(t, 3)))")}, t % 4, t * {e},
    if(t % 10 = 0 AND NOT {x}, (18446744073709551612, 'approval_granted', concat('Reviewer ', toString(t % 7)),
                                fromUnixTimestamp64Milli(toInt64(start_ms + 500), 'UTC')),
       (0, '', '', fromUnixTimestamp64Milli(0, 'UTC'))),
    if(t % 10 = 0 AND NOT {x}, (18446744073709551613, 3), (0, 0))
FROM numbers({first}, {count})
WHERE (NOT {x} OR t % 10 = 5) AND {_within(window)}"""


def _trace_keys_sql(db: str, first: int, count: int, end_ms: int, window: tuple[int, int] | None = None) -> str:
    """The key index's rows for the same traces (migration 0018): each trace's agent, and the outcome
    of each closed one."""
    return f"""
INSERT INTO {db}.trace_keys
WITH number AS t, {_start_ms(end_ms)} AS start_ms, {_OUTCOME} AS outcome
SELECT '{ORG}', key.1, assumeNotNull(key.2), fromUnixTimestamp64Milli(toInt64(start_ms), 'UTC'),
    concat('t', toString(t)), t % 4, t * {EVENTS_PER_TRACE}
FROM numbers({first}, {count})
ARRAY JOIN [('agent_id', concat('agent-', toString(t % 200))), ('final_outcome', outcome)] AS key
WHERE key.2 IS NOT NULL AND {_within(window)}"""


def _trace_names_sql(db: str, first: int, count: int, end_ms: int, window: tuple[int, int] | None = None) -> list[str]:
    """The names index's rows for the same traces (migration 0020): each trace's prompt name, name and
    model once, and the count of each name."""
    names = f"""
WITH number AS t, {_start_ms(end_ms)} AS start_ms,
     {_MODEL} AS model
SELECT '{ORG}' AS org_id, value, fromUnixTimestamp64Milli(toInt64(start_ms), 'UTC') AS started_at,
    concat('t', toString(t)) AS trace_id
FROM numbers({first}, {count})
ARRAY JOIN [{_PROMPT}, 'step-1', model] AS value
WHERE {_within(window)}"""
    return [f"INSERT INTO {db}.trace_names {names}",
            f"INSERT INTO {db}.trace_name_values SELECT org_id, value, count() FROM ({names}) GROUP BY org_id, value"]


def _rollups_sql(db: str, first: int, count: int) -> str:
    """The hourly rollups of the events of traces [first, first + count), as the sink's view
    adds them (migration 0012): one partial row per hour, type, outcome and partition."""
    e = EVENTS_PER_TRACE
    return f"""
INSERT INTO {db}.rollups_hourly
SELECT org_id, toStartOfHour(toDateTime(occurred_at, 'UTC')) AS hour, type, outcome, _topic, _partition, count(),
    countIf(ifNull(status = 'STATUS_CODE_ERROR', 0)), sum(ifNull(input_tokens, 0)), sum(ifNull(output_tokens, 0)),
    sum(ifNull(total_tokens, ifNull(input_tokens, 0) + ifNull(output_tokens, 0))), sum(ifNull(cost, 0)), max(_offset)
FROM {db}.events WHERE _offset >= {first * e} AND _offset < {(first + count) * e}
GROUP BY org_id, hour, type, outcome, _topic, _partition"""


async def metrics_without_http(ch: ClickHouse, since_ms: int) -> tuple[list[float], list[float]]:
    """GET /v1/metrics' buckets without HTTP: from the rollups (the repository the route calls),
    and counted from the events as before the rollups; ms each."""
    sql = (f"SELECT toStartOfHour(occurred_at) AS hour, type, outcome, count() FROM {ch.database}.events "
           f"WHERE org_id = '{ORG}' AND occurred_at >= fromUnixTimestamp64Milli({since_ms}, 'UTC') "
           "GROUP BY hour, type, outcome ORDER BY hour, type, outcome")
    repo, from_rollups, scans = RollupRepository(ch), [], []
    for _ in range(max(SAMPLES // 4, 3)):
        t0 = time.perf_counter()
        await repo.buckets(ORG, since_ms, None)
        t1 = time.perf_counter()
        await ch.query(sql)
        from_rollups.append((t1 - t0) * 1000)
        scans.append((time.perf_counter() - t1) * 1000)
    return from_rollups, scans


#: How the generated rows lie in parts: "spread", each insert holding 100k traces from the whole
#: span (every part spans every day: the worst case for a time-ordered read); "arrival", each
#: insert holding the traces of the next ~3 days, as a live sink's merged parts lie.
LAYOUTS = tuple(os.environ.get("BENCH_READ_LAYOUTS", "spread,arrival").split(","))
ARRIVAL_SLICES = 10


async def generate(ch: ClickHouse, first: int, count: int, end_ms: int, layout: str) -> float:
    """Store traces [first, first + count), their events, key and name index rows and rollups in
    ``layout``; returns the seconds it took."""
    t0 = time.monotonic()
    if layout == "arrival":
        bounds = [end_ms - SPAN_MS + i * SPAN_MS // ARRIVAL_SLICES for i in range(ARRIVAL_SLICES + 1)]
        for window in zip(bounds, bounds[1:], strict=False):
            await ch.command(_events_sql(ch.database, first, count, end_ms, window))
            await ch.command(_traces_sql(ch.database, first, count, end_ms, partial=False, window=window))
            await ch.command(_traces_sql(ch.database, first, count, end_ms, partial=True, window=window))
            await ch.command(_trace_keys_sql(ch.database, first, count, end_ms, window))
            for sql in _trace_names_sql(ch.database, first, count, end_ms, window):
                await ch.command(sql)
        await ch.command(_rollups_sql(ch.database, first, count))
        return time.monotonic() - t0
    if layout != "spread":
        raise ValueError(f"unknown layout {layout!r}: spread or arrival")
    step = 100_000
    for s in range(first, first + count, step):
        n = min(step, first + count - s)
        await ch.command(_events_sql(ch.database, s, n, end_ms))
        await ch.command(_traces_sql(ch.database, s, n, end_ms, partial=False))
        await ch.command(_traces_sql(ch.database, s, n, end_ms, partial=True))
        await ch.command(_trace_keys_sql(ch.database, s, n, end_ms))
        for sql in _trace_names_sql(ch.database, s, n, end_ms):
            await ch.command(sql)
        await ch.command(_rollups_sql(ch.database, s, n))
    return time.monotonic() - t0


async def settle(ch: ClickHouse, timeout: float = 300) -> float:
    """Wait until ClickHouse has no merge running (the bulk load's merges are not the steady
    state a live sink keeps); returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not (await ch.query("SELECT count() FROM system.merges")).rows[0][0]:
            break
        await asyncio.sleep(1)
    return time.monotonic() - t0


@dataclass(frozen=True)
class Case:
    """One figure: ``path`` with each of ``variants`` (rotated through), page 1 and page 50."""

    label: str
    path: str
    variants: tuple[dict[str, Any], ...] = ({},)
    cursor: Callable[[dict[str, Any]], str | None] = lambda body: None
    deep: bool = True


def _gateway_cursor(body: dict[str, Any]) -> str | None:
    return body.get("nextCursor")


def _governance_cursor(body: dict[str, Any]) -> str | None:
    return body["pagination"]["next_cursor"]


def _tenant_cursor(body: dict[str, Any]) -> str | None:
    return body.get("next_cursor")


def cases(end_ms: int) -> list[Case]:
    """The read surfaces, each unfiltered and with its selective filters."""
    tenant = f"/tenants/{ORG}/traces"
    week = {"from": format_ms(end_ms - 7 * DAY_MS), "to": format_ms(end_ms - 6 * DAY_MS)}
    return [
        Case("GET /v1/traces (events, seed 000)", "/v1/traces", cursor=_gateway_cursor),
        Case("  type=GENERATION", "/v1/traces", ({"type": "GENERATION"},), _gateway_cursor),
        Case("  model=o1-preview (2 % of traces)", "/v1/traces", ({"model": "o1-preview"},), _gateway_cursor),
        Case("  status=STATUS_CODE_ERROR (0.1 %)", "/v1/traces", ({"status": "STATUS_CODE_ERROR"},), _gateway_cursor),
        Case("  userId (0.005 %)", "/v1/traces", tuple({"userId": f"user-{i}"} for i in range(8)), _gateway_cursor),
        Case("  tag (1 %)", "/v1/traces", tuple({"tag": f"tag-{i}"} for i in range(8)), _gateway_cursor),
        Case("  metadata customer (0.1 %)", "/v1/traces",
             tuple({"metadata_key": "customer", "metadata_value": f"c-{i}"} for i in range(8)), _gateway_cursor),
        Case("  minScore=0.99 (1 %)", "/v1/traces", ({"minScore": "0.99"},), _gateway_cursor),
        Case("GET /api/v1/traces (governance, seed 003)", "/api/v1/traces", cursor=_governance_cursor),
        Case("  agent_id (0.5 %)", "/api/v1/traces", tuple({"agent_id": f"agent-{i}"} for i in range(8)),
             _governance_cursor),
        Case("  outcome=denied (5 %)", "/api/v1/traces", ({"outcome": "denied"},), _governance_cursor),
        Case("  outcome=pending (5 %)", "/api/v1/traces", ({"outcome": "pending"},), _governance_cursor),
        Case("  from/to one day", "/api/v1/traces", (week,), _governance_cursor),
        Case("  offset=980 (page 50)", "/api/v1/traces", ({"offset": "980"},), deep=False),
        Case("  offset=9980 (deepest allowed)", "/api/v1/traces", ({"offset": "9980"},), deep=False),
        Case("GET /tenants/{t}/traces (seed 002)", tenant, cursor=_tenant_cursor),
        Case("  search prompt name (0.1 %)", tenant, tuple({"search": f"prompt-{i:04d}"} for i in range(8)),
             _tenant_cursor),
        Case("  page=50", tenant, ({"page": "50"},), deep=False),
        Case("  page=500 (deepest allowed)", tenant, ({"page": "500"},), deep=False),
        Case("GET /v1/metrics (rollups, seed 000), 24 h", "/v1/metrics", deep=False),
        Case("  since 30 days", "/v1/metrics", ({"since": format_ms(end_ms - 30 * DAY_MS)},), deep=False),
    ]


async def timed(api: Api, key: str, path: str, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    status, body = await api.get(path, key, **params)
    elapsed = (time.perf_counter() - t0) * 1000
    if status != 200:
        raise RuntimeError(f"GET {path} {params}: {status} {body}")
    return elapsed, body


async def measure(api: Api, key: str, case: Case) -> tuple[list[float], list[float] | None]:
    """Latencies (ms) of the first page and of page 50 by cursor, rotating through the variants."""
    deep_params = []
    if case.deep:  # walk once to each variant's 50th page (also warms what a user's walk warms)
        for variant in case.variants:
            params = dict(variant)
            for _ in range(DEEP_PAGE - 1):
                _, body = await timed(api, key, case.path, params)
                cursor = case.cursor(body)
                if cursor is None:
                    break
                params = variant | {"cursor": cursor}
            else:
                deep_params.append(params)
    first = [(await timed(api, key, case.path, v))[0] for v, _ in zip(cycle(case.variants), range(SAMPLES))]
    if not deep_params:
        return first, None
    deep = [(await timed(api, key, case.path, p))[0] for p, _ in zip(cycle(deep_params), range(SAMPLES))]
    return first, deep


async def details(api: Api, key: str, traces: int) -> dict[str, list[float]]:
    """The three trace detail reads, for traces spread over the stored range."""
    paths = {"GET /v1/traces/{id}": "/v1/traces/t{}", "GET /api/v1/traces/{id}": "/api/v1/traces/t{}",
             "GET /tenants/{t}/traces/{id}": f"/tenants/{ORG}/traces/t{{}}"}
    out = {}
    for label, path in paths.items():
        out[label] = [(await timed(api, key, path.format(i * 7919 % traces), {}))[0] for i in range(SAMPLES)]
    return out


async def under_load(api: Api, key: str, users: int) -> tuple[float, list[float]]:
    """``users`` clients each calling the three trace lists in turn, ``SAMPLES`` requests
    each, all at once; returns (requests per second, latencies in ms)."""
    paths = ("/v1/traces", "/api/v1/traces", f"/tenants/{ORG}/traces")
    latencies: list[float] = []

    async def user(u: int) -> None:
        for i in range(SAMPLES):
            latencies.append((await timed(api, key, paths[(u + i) % len(paths)], {}))[0])

    t0 = time.perf_counter()
    await asyncio.gather(*(user(u) for u in range(users)))
    return len(latencies) / (time.perf_counter() - t0), latencies


#: The goals, as ratios within one run: a filter's first page against its surface's unfiltered
#: first page, page 50 against page 1 and p99 against p50 of an unfiltered list, a detail read
#: against its list's first page; and an exact total in ms.
FILTER_RATIO, DEEP_RATIO, TAIL_RATIO, DETAIL_RATIO, TOTAL_MS = 2.0, 1.2, 2.0, 2.0, 10.0
#: Detail reads and the list each is judged against.
DETAIL_OF = {"GET /v1/traces/{id}": "GET /v1/traces (events, seed 000)",
             "GET /api/v1/traces/{id}": "GET /api/v1/traces (governance, seed 003)",
             "GET /tenants/{t}/traces/{id}": "GET /tenants/{t}/traces (seed 002)"}


def verdict(value: float, goal: float) -> str:
    return f"{value:5.2f}x {'ok' if value <= goal else 'MISS'} (<= {goal}x)"


def row(label: str, first: list[float], deep: list[float] | None, why: str = "", judged: str = "") -> str:
    deep_text = f"{pct(deep, 50):6.1f} {pct(deep, 99):6.1f}" if deep else f"{why:>13}"
    return f"{label:<44} {pct(first, 50):6.1f} {pct(first, 99):6.1f}   {deep_text}   {judged}".rstrip()


def judge(case: Case, first: list[float], deep: list[float] | None, surface: list[float] | None) -> str:
    """The goal a list figure answers to, and whether it holds."""
    if "metrics" in case.path:
        return ""  # not a list: no ratio goal
    if surface is None:  # an unfiltered list: page 50 against page 1, p99 against p50
        judged = verdict(pct(first, 99) / pct(first, 50), TAIL_RATIO) + " p99/p50"
        return (verdict(pct(deep, 50) / pct(first, 50), DEEP_RATIO) + " page 50/1; " + judged) if deep else judged
    if case.label.startswith(("  offset", "  page=")):
        return ""  # offset paging: no ratio goal
    return verdict(pct(first, 50) / pct(surface, 50), FILTER_RATIO) + " of unfiltered"


async def exact_totals(ch: ClickHouse, end_ms: int) -> dict[str, list[float]]:
    """``pagination.total`` of the governance list without HTTP (the repository count the route
    runs beside the page), unfiltered and with each filter seed 003 names; ms each."""
    from api.routes.governance import trace_query
    from sinks.repositories.traces import TraceRepository

    repo, out = TraceRepository(ch), {}
    for case in cases(end_ms):
        if case.path != "/api/v1/traces" or any("offset" in v for v in case.variants):
            continue
        times = []
        for variant, _ in zip(cycle(case.variants), range(SAMPLES), strict=False):
            t0 = time.perf_counter()
            await repo.count(ORG, trace_query({k: str(v) for k, v in variant.items()}))
            times.append((time.perf_counter() - t0) * 1000)
        out[case.label.strip() if case.variants != ({},) else "unfiltered"] = times
    return out


async def serve_api(settings: Settings, ch: ClickHouse) -> web.AppRunner:
    """The API on ``ch``, as ``tracehouse run`` serves it, with the topics it reads (no worker creates them
    here: the webhook subscriptions' reader would wait for its topic, retrying, through the whole bench)."""
    await ensure_topics(settings.bootstrap_servers, settings.topic_partitions,
                        topics=(WEBHOOK_SUBSCRIPTIONS, COMMAND_VERDICTS))
    runner = web.AppRunner(create_app(settings, ch), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    return runner


async def bench_layout(layout: str, work: Path, broker: EmbeddedBroker, end_ms: int,
                       report: Callable[[str], None]) -> None:
    """Every figure at each of ``STAGES`` on a database of its own generated in ``layout``."""
    settings = Settings(data_dir=work, kafka_port=broker.port, http_port=free_port(), admin_key=ADMIN_KEY,
                        chain_events=False, ingest_processes=0, clickhouse_database=f"bench_{layout}")
    ch = ClickHouse.from_settings(settings)
    await migrate(ch)
    runner = await serve_api(settings, ch)
    try:
        async with Api(f"http://{settings.http_host}:{settings.http_port}") as api:
            key = await api.org_key(ORG, ["traces:read"])
            stored = 0
            for traces in STAGES:
                seconds = await generate(ch, stored, traces - stored, end_ms, layout)
                merging = await settle(ch)
                stored = traces
                events = traces * EVENTS_PER_TRACE
                report(f"\n{events:,} events / {traces:,} traces stored, {layout} layout (generated in "
                       f"{seconds:.0f} s, merges settled {merging:.0f} s later); {SAMPLES} requests per figure, ms")
                report(f"{'':<44} {'first page':>13}   {'page 50 (cursor)':>16}")
                report(f"{'':<44} {'p50':>6} {'p99':>6}   {'p50':>6} {'p99':>6}   goal")
                floor = [(await timed(api, key, "/healthz", {}))[0] for _ in range(SAMPLES)]
                report(row("GET /healthz (HTTP floor, no ClickHouse)", floor, None))
                lists: dict[str, list[float]] = {}
                surface: list[float] | None = None
                for case in cases(end_ms):
                    first, deep = await measure(api, key, case)
                    if not case.label.startswith(" "):
                        surface = None
                    report(row(case.label, first, deep, "< 50 pages" if case.deep else "",
                               judge(case, first, deep, surface)))
                    if not case.label.startswith(" "):
                        lists[case.label], surface = first, first
                for label, times in (await details(api, key, traces)).items():
                    report(row(label, times, None, judged=verdict(pct(times, 50) / pct(lists[DETAIL_OF[label]], 50),
                                                                  DETAIL_RATIO) + " of its list"))
                for label, times in (await exact_totals(ch, end_ms)).items():
                    report(row(f"total (no HTTP): {label}", times, None,
                               judged=f"{'ok' if pct(times, 50) <= TOTAL_MS else 'MISS'} (<= {TOTAL_MS:.0f} ms)"))
                from_rollups, scanned = await metrics_without_http(ch, end_ms - 30 * DAY_MS)
                report(row("metrics 30 d, no HTTP: from rollups", from_rollups, None))
                report(row("  the same counted from events (no rollups)", scanned, None))
                alone, _ = await under_load(api, key, 1)
                rate, times = await under_load(api, key, USERS)
                report(row(f"{USERS} clients at once, the three lists", times, None))
                report(f"  {rate:.0f} requests/s with {USERS} clients, {alone:.0f} with one: {rate / alone:.2f}x "
                       f"({settings.clickhouse_threads} ClickHouse threads)")
    finally:
        await runner.cleanup()
        await ch.command(f"DROP DATABASE IF EXISTS {ch.database}")
        await ch.close()


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tracehouse-bench-reads-"))
    broker = EmbeddedBroker(work / "broker", "127.0.0.1", free_port())  # the API's producer needs one
    broker.start()
    end_ms = now_ms() - 3_600_000
    lines: list[str] = []

    def report(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    try:
        for layout in LAYOUTS:
            await bench_layout(layout, work, broker, end_ms, report)
        rss = psutil.Process().memory_info().rss / 1e6
        report(f"\nbench process RSS (API + embedded ClickHouse + client): {rss:.0f} MB")
    finally:
        broker.stop()
    print("\nsummary\n" + "\n".join(lines))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
