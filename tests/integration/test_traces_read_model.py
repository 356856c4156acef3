"""The traces read model: the sink's view aggregates sealed batches into one summary per
trace; reads merge partial rows exactly, filter, page by key and by offset, and count."""

from __future__ import annotations

import random

import pytest

from schemas.codec import encode
from sinks.repositories.traces import TraceQuery, TraceRepository, contains_any, first_value_is, outcome_is
from sinks.writer import TRACE_EVENTS_SINK, SinkRecord, SinkWriter, Source
from streams.chaining import TRACE_CHAIN, ChainStore
from tests.integration.test_chain_storage import mutate
from tests.unit.test_chaining import seal

T0 = 1_795_428_000_000


def event(trace: str, n: int, org: str = "o", **kw) -> dict:
    return {"event_id": f"{trace}-e{n}", "org_id": org, "trace_id": trace, "type": "SPAN",
            "occurred_at": T0 + n * 1000, "tags": [], "metadata": {}, "scores": {}} | kw


class Pipeline:
    """Seals batches like the chain agent and stores each call's records in one sink insert."""

    def __init__(self, ch) -> None:
        self.ch, self.chains, self.offset, self.records = ch, ChainStore({}, {}), 0, []

    async def store(self, *batches: list[dict]) -> None:
        records = []
        for events in batches:
            value = encode("TraceEventBatch", {"org_id": events[0]["org_id"], "trace_id": events[0]["trace_id"],
                                               "events": events})
            sealed = seal(TRACE_CHAIN, value, self.chains).value
            records.append(SinkRecord(Source("sealed-events", 0, self.offset), sealed))
            self.offset += 1
        self.records += records
        assert await SinkWriter(self.ch, TRACE_EVENTS_SINK).write(records) == []


async def test_a_trace_summary_merges_every_record_of_the_trace(clickhouse):
    p = Pipeline(clickhouse)
    await p.store([event("t1", 1, agent_id="a-1", input_tokens=10, output_tokens=5, cost=0.25, tags=["x"]),
                   event("t1", 2, type="approval_requested", model="m-1")])
    # the second record arrives with an earlier event and a later one, in a separate insert
    await p.store([event("t1", 0, agent_id="a-2", input_tokens=1, tags=["y", "x"]),
                   event("t1", 3, type="operation_denied", status="STATUS_CODE_ERROR", cost=0.5)])
    await p.store([event("t1", 4, total_tokens=100)])
    repo = TraceRepository(clickhouse)
    (trace,) = (await repo.page("o", TraceQuery(), 10)).traces
    assert (trace.started_at, trace.event_count, trace.last_event_at) == (T0 + 1000, 5, T0 + 4000)
    assert (trace.final_outcome, trace.completed_at, trace.duration_ms) == ("denied", T0 + 3000, 2000)
    assert (trace.has_approval, trace.has_error, trace.tags) == (True, True, ("x", "y"))
    assert (trace.input_tokens, trace.output_tokens, trace.total_tokens, trace.cost) == (11, 5, 116, 0.75)
    assert trace.first["agent_id"] == "a-1" and trace.first["model"] == "m-1" and trace.first["agent_name"] is None
    # merged in Python (pages) and in ClickHouse (lookups, filtered pages): the same trace
    assert await repo.get("o", "t1") == trace
    assert (await repo.page("o", TraceQuery(filters=(first_value_is("agent_id", "a-1"),)), 10)).traces == [trace]
    await clickhouse.command(f"OPTIMIZE TABLE {clickhouse.database}.traces FINAL")
    assert await repo.get("o", "t1") == trace and (await repo.page("o", TraceQuery(), 10)).traces == [trace]


async def test_other_orgs_and_unknown_traces_are_not_seen(clickhouse):
    p = Pipeline(clickhouse)
    await p.store([event("t1", 1, org="o")], [event("t1", 1, org="other")])
    repo = TraceRepository(clickhouse)
    assert [t.trace_id for t in (await repo.page("o", TraceQuery(), 10)).traces] == ["t1"]
    assert await repo.count("nobody", TraceQuery()) == 0 and await repo.get("nobody", "t1") is None
    assert (await repo.page("nobody", TraceQuery(), 10)).traces == []


@pytest.fixture
async def many(clickhouse):
    """40 traces, one per second, in inserts of a few records, some spread over two inserts
    (whose partial rows stay apart: merges are stopped)."""
    await clickhouse.command(f"SYSTEM STOP MERGES {clickhouse.database}.traces")
    rng = random.Random(7)
    p = Pipeline(clickhouse)
    pending, later = [], []
    for i in range(40):
        trace = f"t{i:02d}"
        head = event(trace, 1, agent_id=f"agent-{i % 3}", prompt_name=f"Prompt-{i % 5}",
                     model="gpt-x" if i % 4 else "claude")
        head["occurred_at"] = T0 + i * 1000
        closing = event(trace, 2, type="trace_closed", outcome=["executed", "blocked"][i % 2])
        if i % 3 == 2:
            pending.append([head])
            later.append([closing])  # the close comes in a later insert
        else:
            pending.append([head, closing] if i % 7 else [head])
    rng.shuffle(pending)
    rng.shuffle(later)
    for batches in (pending, later):
        for start in range(0, len(batches), 5):
            await p.store(*batches[start:start + 5])
    return TraceRepository(clickhouse)


def expected(i: int) -> str:
    return "in_progress" if i % 3 != 2 and i % 7 == 0 else ["executed", "blocked"][i % 2]


@pytest.mark.parametrize("flt, keep", [
    (None, lambda i: True),
    (lambda: first_value_is("agent_id", "agent-1"), lambda i: i % 3 == 1),
    (lambda: outcome_is("blocked"), lambda i: expected(i) == "blocked"),
    (lambda: outcome_is("in_progress"), lambda i: expected(i) == "in_progress"),
    (lambda: contains_any("prompt-2", ("prompt_name", "model")), lambda i: i % 5 == 2),
    (lambda: contains_any("CLAUDE", ("prompt_name", "model")), lambda i: i % 4 == 0),
])
async def test_key_pages_offset_pages_and_counts_agree(many, flt, keep):
    query = TraceQuery(filters=(flt(),) if flt else ())
    want = [f"t{i:02d}" for i in reversed(range(40)) if keep(i)]
    seen, after = [], None
    while True:
        page = await many.page("o", query, 3, after)
        seen += [t.trace_id for t in page.traces]
        if page.next_key is None:
            break
        after = page.next_key
    assert seen == want
    assert await many.count("o", query) == len(want)
    by_offset = [t.trace_id for off in range(0, len(want) + 3, 3)
                 for t in (await many.offset_page("o", query, 3, off)).traces]
    assert by_offset == want


@pytest.mark.parametrize("filters, keep", [
    # two filters: counted by merging the candidates, not by a tally
    ((lambda: first_value_is("agent_id", "agent-1"), lambda: outcome_is("blocked")),
     lambda i: i % 3 == 1 and expected(i) == "blocked"),
    ((lambda: outcome_is("in_progress"), lambda: contains_any("prompt-2", ("prompt_name",))),
     lambda i: expected(i) == "in_progress" and i % 5 == 2),
])
async def test_combined_filters_page_and_count_alike(many, filters, keep):
    query = TraceQuery(filters=tuple(f() for f in filters))
    want = [f"t{i:02d}" for i in reversed(range(40)) if keep(i)]
    assert [t.trace_id for t in (await many.page("o", query, 40)).traces] == want
    assert await many.count("o", query) == len(want) > 0


async def test_counts_hold_in_a_time_window_and_after_merging(many, clickhouse):
    for merged in (False, True):
        if merged:
            await clickhouse.command(f"SYSTEM START MERGES {clickhouse.database}.traces")
            await clickhouse.command(f"OPTIMIZE TABLE {clickhouse.database}.traces FINAL")
            rows = await clickhouse.query(f"SELECT count() FROM {clickhouse.database}.traces")
            assert rows.rows[0][0] == 40
        for flt, keep in ((None, lambda i: True), (outcome_is("in_progress"), lambda i: expected(i) == "in_progress"),
                          (outcome_is("executed"), lambda i: expected(i) == "executed")):
            query = TraceQuery(since_ms=T0 + 5_000, until_ms=T0 + 30_000, filters=(flt,) if flt else ())
            assert await many.count("o", query) == sum(keep(i) for i in range(5, 31))


async def test_only_the_asked_first_values_are_read(many):
    (trace,) = (await many.page("o", TraceQuery(), 1, first=("agent_id",))).traces
    assert trace.first == {"agent_id": "agent-0"} and trace.trace_id == "t39"
    assert (await many.get("o", "t39", first=())).first == {}
    with pytest.raises(ValueError, match="not first values"):
        await many.page("o", TraceQuery(), 1, first=("input",))


async def test_time_bounds_are_inclusive(many):
    query = TraceQuery(since_ms=T0 + 10_000, until_ms=T0 + 12_000)
    assert [t.trace_id for t in (await many.page("o", query, 10)).traces] == ["t12", "t11", "t10"]
    assert await many.count("o", query) == 3


async def test_a_replay_after_a_crash_stores_each_summary_once(clickhouse):
    p = Pipeline(clickhouse)
    await p.store([event("t1", 1, input_tokens=5)], [event("t1", 2, input_tokens=7)])
    await p.store([event("t1", 3, input_tokens=11)])
    repo = TraceRepository(clickhouse)
    before = await repo.get("o", "t1")
    # the crash hit after the events of the last insert were stored but before its summary
    await mutate(clickhouse, f"ALTER TABLE {clickhouse.database}.traces DELETE WHERE _offset = 2")
    assert (await repo.get("o", "t1")).input_tokens == 12
    restarted = SinkWriter(clickhouse, TRACE_EVENTS_SINK)
    assert await restarted.write(p.records) == []
    assert await repo.get("o", "t1") == before and restarted.rows_skipped == 3
    # and the other way round: the summary is stored, one of its events is not
    await mutate(clickhouse, "ALTER TABLE {t} DELETE WHERE event_id = 't1-e2'")
    assert await SinkWriter(clickhouse, TRACE_EVENTS_SINK).write(p.records) == []
    assert await repo.get("o", "t1") == before
    rows = await clickhouse.query(f"SELECT event_id FROM {clickhouse.database}.events ORDER BY event_id")
    assert [r[0] for r in rows.rows] == ["t1-e1", "t1-e2", "t1-e3"]


async def test_traces_by_agent_and_outcome_list_and_count_each_trace_once_even_when_named_late(clickhouse):
    """The key index (migration 0018): a trace is listed and counted under the agent of its first
    event naming one, even when that event comes in a later record and other agents follow, and
    under the outcome it closed with; once, whichever view's part a crash cut."""
    db = clickhouse.database
    p = Pipeline(clickhouse)
    await p.store([event("late", 1)], [event("early", 1, agent_id="a")])
    await p.store([event("late", 2, agent_id="a"), event("late", 3, agent_id="b")], [event("early", 2, agent_id="b")])
    await p.store([event("late", 4, agent_id="b", type="operation_denied")], [event("none", 1)])
    want = [("agent_id", "a", "early"), ("agent_id", "a", "late"), ("final_outcome", "denied", "late")]
    keys = f"SELECT field, value, trace_id FROM {db}.trace_keys ORDER BY field, value, trace_id"
    assert (await clickhouse.query(keys)).rows == want
    # as if a crash had cut the inserts before the traces view's part, then before the keys' part:
    # every record is sent again, and each view gets what it lacks, once
    for lost in ("traces", "trace_keys"):
        await clickhouse.command(f"TRUNCATE TABLE {db}.{lost}")
        assert await SinkWriter(clickhouse, TRACE_EVENTS_SINK).write(p.records) == []
        assert (await clickhouse.query(keys)).rows == want
    repo = TraceRepository(clickhouse)
    for flt, want in ((first_value_is("agent_id", "a"), ["late", "early"]), (first_value_is("agent_id", "b"), []),
                      (first_value_is("agent_id", "nobody"), []), (outcome_is("denied"), ["late"]),
                      (outcome_is("blocked"), [])):
        query = TraceQuery(filters=(flt,))
        assert [t.trace_id for t in (await repo.page("o", query, 10)).traces] == want
        assert [t.trace_id for off in (0, 1) for t in (await repo.offset_page("o", query, 1, off)).traces] == want
        assert await repo.count("o", query) == len(want)
        assert await repo.count("other", query) == 0
    both = TraceQuery(filters=(outcome_is("in_progress"), first_value_is("agent_id", "a")))
    assert [t.trace_id for t in (await repo.page("o", both, 10)).traces] == ["early"]
    assert await repo.count("o", both) == 1
    both = TraceQuery(filters=(outcome_is("denied"), first_value_is("agent_id", "a")))
    assert [t.trace_id for t in (await repo.page("o", both, 10)).traces] == ["late"]
    assert await repo.count("o", both) == 1


async def test_traces_stored_before_the_key_index_are_indexed_by_their_merged_values(clickhouse):
    from sinks.migrate import migrate

    db = clickhouse.database
    p = Pipeline(clickhouse)
    await p.store([event("t1", 1)], [event("t2", 1, agent_id="b", type="operation_denied")], [event("t3", 1)])
    await p.store([event("t1", 2, agent_id="a"), event("t1", 3, agent_id="b", type="trace_closed",
                                                      outcome="executed")])
    # as before the migration: no index, no view feeding it, no staged flags
    await clickhouse.command(f"DROP VIEW {db}.trace_keys_in_mv")
    await clickhouse.command(f"DROP TABLE {db}.trace_keys")
    await clickhouse.command(f"ALTER TABLE {db}.events_in DROP COLUMN _agent_named, DROP COLUMN _index")
    await clickhouse.command(f"ALTER TABLE {db}.schema_migrations DELETE WHERE version = 18 "
                             "SETTINGS mutations_sync = 2")
    assert "0018_trace_keys.sql" in await migrate(clickhouse)
    keys = f"SELECT field, value, trace_id FROM {db}.trace_keys ORDER BY field, value, trace_id"
    assert (await clickhouse.query(keys)).rows == [
        ("agent_id", "a", "t1"), ("agent_id", "b", "t2"), ("final_outcome", "denied", "t2"),
        ("final_outcome", "executed", "t1")]
    # a record stored before the migration and sent again adds nothing; the view fills it from then on
    assert await SinkWriter(clickhouse, TRACE_EVENTS_SINK).write(p.records) == []
    await p.store([event("t3", 2, agent_id="a", type="operation_denied")])
    repo = TraceRepository(clickhouse)
    for flt, want in ((first_value_is("agent_id", "a"), ["t3", "t1"]), (outcome_is("denied"), ["t3", "t2"])):
        query = TraceQuery(filters=(flt,))
        assert [t.trace_id for t in (await repo.page("o", query, 10)).traces] == want
        assert await repo.count("o", query) == 2


SEARCHED = ("prompt_name", "name", "model")


async def brute_force_search(repo: TraceRepository, org: str, traces: list[str], text: str) -> list[str]:
    """The traces whose merged first prompt_name, name or model holds ``text`` (case-insensitive),
    newest first: each trace read alone."""
    fetched = [await repo.get(org, tid) for tid in traces]
    found = [t for t in fetched if t is not None and any(text.lower() in (t.first[f] or "").lower() for f in SEARCHED)]
    return [t.trace_id for t in sorted(found, key=lambda t: (t.started_at, t.trace_id), reverse=True)]


async def test_a_search_of_names_reads_the_names_holding_it_and_checks_each_trace(clickhouse, monkeypatch):
    """The names index (migration 0020) holds each record's first names: a trace whose later record
    has a matching first name is a candidate only, and the merged trace decides. The index and the
    scan of the traces (names holding more than MAX_NAME_ROWS keys) give the same pages."""
    from sinks.repositories import traces as traces_module

    p = Pipeline(clickhouse)
    await p.store([event("t1", 1, name="deploy api")], [event("t2", 2, prompt_name="Support-Bot", name="run")],
                  [event("t3", 3, model="gpt-4o"), event("t3", 4, name="Chat with tools")],
                  [event("t4", 5, name="alpha")], [event("t5", 6, name="Chat completion", model="GPT-4o-mini")],
                  [event("t1", 1, org="other", name="chat elsewhere")])
    await p.store([event("t1", 7, name="chat")], [event("t4", 8, name="chat", model="claude")],
                  [event("t2", 9, prompt_name="ignored")])
    db = clickhouse.database
    names = (await clickhouse.query(f"SELECT value, trace_id FROM {db}.trace_names WHERE org_id = 'o' "
                                    "ORDER BY value, trace_id")).rows
    assert ("chat", "t1") in names and ("chat", "t4") in names and ("ignored", "t2") in names
    repo = TraceRepository(clickhouse)
    traces = ["t1", "t2", "t3", "t4", "t5"]
    cases = {"chat": ["t5", "t3"], "GPT-4O": ["t5", "t3"], "support": ["t2"], "claude": ["t4"], "ignored": [],
             "deploy": ["t1"], "nothing like it": [], "T": ["t5", "t3", "t2"]}
    for limit in (traces_module.MAX_NAME_ROWS, 0):  # the names index, then the scan of the traces
        monkeypatch.setattr(traces_module, "MAX_NAME_ROWS", limit)
        for text, want in cases.items():
            assert await brute_force_search(repo, "o", traces, text) == want, text
            query = TraceQuery(filters=(contains_any(text, SEARCHED),))
            assert [t.trace_id for t in (await repo.page("o", query, 10)).traces] == want, (text, limit)
            assert [t.trace_id for off in range(len(want) + 1)
                    for t in (await repo.offset_page("o", query, 1, off)).traces] == want, (text, limit)
            assert await repo.count("o", query) == len(want)
        narrowed = await repo.narrowed("o", TraceQuery(filters=(contains_any("chat", SEARCHED),)))
        assert (narrowed.filters[0].index is not None) == (limit > 0)  # the plan each round means to test
        query = TraceQuery(filters=(contains_any("elsewhere", SEARCHED),))
        assert (await repo.page("o", query, 10)).traces == [] and await repo.count("o", query) == 0
        assert [t.trace_id for t in (await repo.page("other", query, 10)).traces] == ["t1"]


async def test_traces_stored_before_the_names_index_are_searched_by_their_first_names(clickhouse):
    from sinks.migrate import migrate

    db = clickhouse.database
    p = Pipeline(clickhouse)
    await p.store([event("t1", 1, prompt_name="triage", model="m-1")], [event("t2", 1, name="Triage again")])
    await p.store([event("t1", 2, name="later")])
    for view in ("trace_names_in_mv", "trace_name_values_in_mv"):
        await clickhouse.command(f"DROP VIEW {db}.{view}")
    for table in ("trace_names", "trace_name_values"):
        await clickhouse.command(f"DROP TABLE {db}.{table}")
    await clickhouse.command(f"ALTER TABLE {db}.schema_migrations DELETE WHERE version = 20 "
                             "SETTINGS mutations_sync = 2")
    assert "0020_trace_names.sql" in await migrate(clickhouse)
    rows = await clickhouse.query(f"SELECT value, trace_id FROM {db}.trace_names FINAL ORDER BY value, trace_id")
    assert rows.rows == [("Triage again", "t2"), ("later", "t1"), ("m-1", "t1"), ("triage", "t1")]
    counted = await clickhouse.query(f"SELECT value, sum(rows) FROM {db}.trace_name_values GROUP BY value "
                                     "ORDER BY value")
    assert counted.rows == [("Triage again", 1), ("later", 1), ("m-1", 1), ("triage", 1)]
    repo = TraceRepository(clickhouse)
    await p.store([event("t3", 3, name="triage late")])  # the views feed the tables from then on
    query = TraceQuery(filters=(contains_any("TRIAGE", SEARCHED),))
    assert [t.trace_id for t in (await repo.page("o", query, 10)).traces] == ["t3", "t2", "t1"]
