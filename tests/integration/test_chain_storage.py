"""Sealed batches stored by the sink verify from ClickHouse; direct edits of stored rows
(ALTER UPDATE / DELETE, INSERT) are caught and the first bad event is named."""

from __future__ import annotations

from operator import itemgetter

from api.chain_checks import checked_trace_links
from api.preparation import PreparationPool
from schemas.codec import encode
from schemas.integrity import GENESIS, verify, verify_span
from sinks.repositories.chains import AUDIT_LINKS, TRACE_LINKS, ChainRepository
from sinks.writer import AUDIT_EVENTS_SINK, TRACE_EVENTS_SINK, SinkRecord, SinkWriter, Source
from streams.chaining import AUDIT_CHAIN, TRACE_CHAIN, ChainStore
from tests.unit.test_chaining import seal

T0 = 1_795_428_000_000
#: No worker processes: verify's links hashed in one thread of this process.
IN_THIS_PROCESS = PreparationPool(0)


def event(i: int, trace: str = "t", **kw) -> dict:
    return {"event_id": f"e{i}", "org_id": "o", "trace_id": trace, "type": "SPAN", "occurred_at": T0 - i,
            "scores": {"q": i / 3}, "tags": ["x"], "metadata": {"i": str(i), "ü": "✓"}, "cost": 0.0004,
            "end_time": None, "input": '{"a":[1,2]}'} | kw


async def store_chain(ch, kind, batches: list[dict], sink=TRACE_EVENTS_SINK, topic="sealed-events") -> None:
    """Seal ``batches`` in order and store them through the sink writer, one record each."""
    chains = ChainStore({}, {})
    records = []
    for offset, batch in enumerate(batches):
        sealed = seal(kind, encode(kind.batch_schema, batch), chains)
        records.append(SinkRecord(Source(topic, 0, offset), sealed.value))
    assert await SinkWriter(ch, sink).write(records) == []


async def trace_verdict(ch, trace="t"):
    """The verdict on the trace's stored links read as dicts, which the links read as Avro and
    hashed from their bytes (the verify route's fast path) must match."""
    repository = ChainRepository(ch)
    verdict = verify(await repository.trace_links("o", trace), TRACE_LINKS.id_column)
    checked = await checked_trace_links(repository, IN_THIS_PROCESS, "o", trace)
    assert checked is not None
    assert verify(checked, TRACE_LINKS.id_column, recompute=itemgetter("recomputed")) == verdict
    return verdict


async def mutate(ch, sql: str) -> None:
    await ch.command(sql.replace("{t}", f"{ch.database}.events").replace("{a}", f"{ch.database}.audit_events"),
                     settings={"mutations_sync": 2})


def trace_batches(n: int = 6, per: int = 2, trace: str = "t") -> list[dict]:
    return [{"org_id": "o", "trace_id": trace, "events": [event(i, trace) for i in range(s, s + per)]}
            for s in range(1, n + 1, per)]


async def test_stored_chain_verifies_and_keeps_arrival_order(clickhouse):
    await store_chain(clickhouse, TRACE_CHAIN, trace_batches())
    rows = await ChainRepository(clickhouse).trace_links("o", "t")
    # occurred_at runs backwards: the chain keeps arrival order, timestamps stay data
    assert [r["event_id"] for r in rows] == [f"e{i}" for i in range(1, 7)]
    assert [r["seq"] for r in rows] == list(range(1, 7)) and rows[0]["prev_hash"] == GENESIS
    assert (await trace_verdict(clickhouse)).valid
    assert await ChainRepository(clickhouse).trace_links("other-org", "t") == []


async def test_links_of_another_hash_version_are_left_to_the_dict_path(clickhouse):
    await store_chain(clickhouse, TRACE_CHAIN, trace_batches())
    repository = ChainRepository(clickhouse)
    assert len(await checked_trace_links(repository, IN_THIS_PROCESS, "o", "t")) == 6
    assert await checked_trace_links(repository, IN_THIS_PROCESS, "o", "nothing") == []
    await mutate(clickhouse, "ALTER TABLE {t} UPDATE hash_version = 1 WHERE event_id = 'e3'")
    assert await checked_trace_links(repository, IN_THIS_PROCESS, "o", "t") is None
    assert not verify(await repository.trace_links("o", "t"), TRACE_LINKS.id_column).valid  # as v1 it differs


async def test_changed_metadata_names_that_event(clickhouse):
    await store_chain(clickhouse, TRACE_CHAIN, trace_batches())
    await mutate(clickhouse, "ALTER TABLE {t} UPDATE metadata = mapUpdate(metadata, map('i', 'x')) "
                             "WHERE event_id = 'e4'")
    v = await trace_verdict(clickhouse)
    assert (v.valid, v.first_invalid_event) == (False, "e4") and "content" in v.reason


async def test_changed_input_or_cost_names_that_event(clickhouse):
    await store_chain(clickhouse, TRACE_CHAIN, trace_batches())
    await mutate(clickhouse, "ALTER TABLE {t} UPDATE cost = 0.0005 WHERE event_id = 'e2'")
    assert (await trace_verdict(clickhouse)).first_invalid_event == "e2"


async def test_deleted_event_names_the_one_after_it(clickhouse):
    await store_chain(clickhouse, TRACE_CHAIN, trace_batches())
    await mutate(clickhouse, "ALTER TABLE {t} DELETE WHERE event_id = 'e3'")
    v = await trace_verdict(clickhouse)
    assert (v.valid, v.first_invalid_event, v.event_count) == (False, "e4", 3)


async def test_an_inserted_event_is_named(clickhouse):
    await store_chain(clickhouse, TRACE_CHAIN, trace_batches())
    await mutate(clickhouse, "INSERT INTO {t} SELECT * REPLACE ('forged' AS event_id, now64(3) AS ingested_at) "
                             "FROM {t} WHERE seq = 2")
    assert (await trace_verdict(clickhouse)).first_invalid_event == "forged"


async def test_an_exact_duplicate_row_is_named(clickhouse):
    await store_chain(clickhouse, TRACE_CHAIN, trace_batches())
    await mutate(clickhouse, "INSERT INTO {t} SELECT * REPLACE (now64(3) AS ingested_at) FROM {t} WHERE seq = 5")
    v = await trace_verdict(clickhouse)
    assert (v.valid, v.first_invalid_event) == (False, "e5") and "seq 5" in v.reason


async def test_reordered_events_are_named(clickhouse):
    await store_chain(clickhouse, TRACE_CHAIN, trace_batches())
    await mutate(clickhouse, "ALTER TABLE {t} UPDATE seq = if(event_id = 'e2', 3, 2) WHERE event_id IN ('e2', 'e3')")
    assert (await trace_verdict(clickhouse)).first_invalid_event == "e3"


async def test_truncated_tail_is_caught_against_a_checkpointed_head(clickhouse):
    await store_chain(clickhouse, TRACE_CHAIN, trace_batches())
    rows = await ChainRepository(clickhouse).trace_links("o", "t")
    head = (rows[-1]["seq"], rows[-1]["hash"])
    await mutate(clickhouse, "ALTER TABLE {t} DELETE WHERE event_id IN ('e5', 'e6')")
    truncated = await ChainRepository(clickhouse).trace_links("o", "t")
    assert verify(truncated, "event_id").valid  # without a checkpoint a cut tail looks whole
    assert not verify(truncated, "event_id", expected_head=head).valid


def audit_event(i: int, **kw) -> dict:
    return {"id": f"a{i}", "org_id": "o", "actor": "u", "action": "key.created", "target": f"k{i}",
            "metadata": {"n": str(i)}, "occurred_at": T0 + i * 1000} | kw


async def audit_verdict(ch, lo: int, hi: int):
    span = await ChainRepository(ch).audit_span("o", T0 + lo * 1000, T0 + hi * 1000)
    return verify_span(span.rows, AUDIT_LINKS.id_column, span.first_seq, span.anchor)


async def test_audit_log_spans_verify_and_name_the_first_bad_entry(clickhouse):
    batches = [{"org_id": "o", "events": [audit_event(i), audit_event(i + 1)]} for i in range(1, 11, 2)]
    await store_chain(clickhouse, AUDIT_CHAIN, batches, sink=AUDIT_EVENTS_SINK)
    span = await ChainRepository(clickhouse).audit_span("o", T0 + 4000, T0 + 6000)
    assert (span.first_seq, span.last_seq) == (4, 6) and len(span.rows) == 4  # plus the link after
    assert (await audit_verdict(clickhouse, 4, 6)).valid
    assert await ChainRepository(clickhouse).audit_span("other", 0, T0 * 2) is None
    await mutate(clickhouse, "ALTER TABLE {a} UPDATE target = 'k-forged' WHERE id = 'a5'")
    v = await audit_verdict(clickhouse, 4, 6)
    assert (v.valid, v.first_invalid_event) == (False, "a5")
    assert (await audit_verdict(clickhouse, 7, 10)).valid  # spans after it are untouched
    await mutate(clickhouse, "ALTER TABLE {a} DELETE WHERE id = 'a6'")  # the last entry of the span
    assert (await audit_verdict(clickhouse, 4, 6)).first_invalid_event == "a5"
    assert (await audit_verdict(clickhouse, 6, 8)).first_invalid_event == "a7"


async def test_audit_span_whose_anchor_was_deleted_is_reported(clickhouse):
    batches = [{"org_id": "o", "events": [audit_event(i) for i in range(1, 6)]}]
    await store_chain(clickhouse, AUDIT_CHAIN, batches, sink=AUDIT_EVENTS_SINK)
    await mutate(clickhouse, "ALTER TABLE {a} DELETE WHERE id = 'a2'")
    span = await ChainRepository(clickhouse).audit_span("o", T0 + 3000, T0 + 4000)
    assert span.first_seq == 3 and span.anchor is None
    v = await audit_verdict(clickhouse, 3, 4)
    assert (v.valid, v.first_invalid_event) == (False, "a3") and "seq 3" in v.reason


async def test_a_half_stored_sealed_record_is_completed_with_the_right_links(clickhouse):
    chains = ChainStore({}, {})
    records = [SinkRecord(Source("sealed-events", 1, offset),
                          seal(TRACE_CHAIN, encode("TraceEventBatch", batch), chains).value)
               for offset, batch in enumerate(trace_batches(n=9, per=3))]
    assert await SinkWriter(clickhouse, TRACE_EVENTS_SINK).write(records) == []
    # as if the crash hit mid-insert: the middle of a record and a whole record are missing
    await mutate(clickhouse, "ALTER TABLE {t} DELETE WHERE event_id IN ('e5', 'e7', 'e8', 'e9')")
    restarted = SinkWriter(clickhouse, TRACE_EVENTS_SINK)
    assert await restarted.write(records) == []
    rows = await ChainRepository(clickhouse).trace_links("o", "t")
    assert [r["event_id"] for r in rows] == [f"e{i}" for i in range(1, 10)]
    assert verify(rows, "event_id").valid and restarted.rows_skipped == 5
