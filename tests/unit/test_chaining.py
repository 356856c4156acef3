"""Sealing raw records: links, retries, long chains, and the sealed record's layout."""

import io

import fastavro
import pytest

from schemas.codec import DecodeError, decode, encode
from schemas.integrity import GENESIS, verify
from schemas.model import validate_trace_event
from schemas.producer import trace_records
from schemas.registry import schema
from streams.chaining import (
    AUDIT_CHAIN,
    BUCKET,
    TRACE_CHAIN,
    ChainStore,
    Head,
    kafka_key_of,
    replay_sealed,
    restore_sealed,
)
from streams.chaining import seal as seal_only


def seal(kind, value, store):
    """Seal and save the head, as the agent does once the sealed record is durable."""
    out = seal_only(kind, value, store)
    if out.advance is not None:
        out.advance.save(store)
    return out


def trace_event(i: int, trace: str = "t1", org: str = "o1") -> dict:
    """A valid event of ``trace``, set after validation: a record written to Kafka without the
    edge's checks may hold any trace id (a NUL in the table key test)."""
    return validate_trace_event({"event_id": f"e{i}", "trace_id": "t", "type": "SPAN",
                                 "occurred_at": "2026-11-23T10:00:00.000Z", "metadata": {"i": str(i)}},
                                org_id=org, now=0) | {"trace_id": trace}


def records(events: list[dict]) -> list[bytes]:
    return [value for _, value in trace_records(events)]


def stored_rows(sealed_values: list[bytes]) -> list[dict]:
    """What the sink's view makes of sealed records: events with seq / prev_hash / hash (hex) / hash_version."""
    rows = []
    for value in sealed_values:
        d = decode(value).datum
        assert decode(value).schema == "SealedTraceEventBatch"
        prev = d["prev_hash"]
        for i, (event, digest) in enumerate(zip(d["events"], d["hashes"], strict=True)):
            rows.append(event | {"seq": d["first_seq"] + i, "prev_hash": prev.hex(), "hash": digest.hex(),
                                 "hash_version": d["hash_version"]})
            prev = digest
    return rows


def test_a_sealed_batch_is_the_raw_batch_plus_links_and_verifies():
    store = ChainStore({}, {})
    out = [seal(TRACE_CHAIN, v, store) for v in records([trace_event(i) for i in range(1, 4)])]
    assert [s.linked for s in out] == [3] and out[0].key == b"t1"
    raw = records([trace_event(i) for i in range(1, 4)])[0]
    assert out[0].value[10:].startswith(raw[10:])  # the raw body is passed through
    rows = stored_rows([out[0].value])
    assert [r["seq"] for r in rows] == [1, 2, 3] and rows[0]["prev_hash"] == GENESIS
    assert verify(rows, "event_id").valid
    # fastavro reads the sealed record with the published schema
    parsed = fastavro.schemaless_reader(io.BytesIO(out[0].value[10:]), schema("SealedTraceEventBatch").wire)
    assert parsed["first_seq"] == 1 and len(parsed["hashes"]) == 3


def test_chains_continue_across_records_and_retries_get_no_link():
    store = ChainStore({}, {})
    first = seal(TRACE_CHAIN, records([trace_event(1), trace_event(2)])[0], store)
    retry = seal(TRACE_CHAIN, records([trace_event(2), trace_event(3), trace_event(3)])[0], store)
    again = seal(TRACE_CHAIN, records([trace_event(1)])[0], store)
    assert (retry.linked, retry.retried) == (1, 2)
    assert again.value is None and again.retried == 1
    rows = stored_rows([first.value, retry.value])
    assert [r["event_id"] for r in rows] == ["e1", "e2", "e3"]
    assert verify(rows, "event_id").valid


def test_retries_are_recognised_after_ids_are_archived():
    heads, archive = {}, {}
    store = ChainStore(heads, archive)
    n = BUCKET * 3 + 5
    sealed = [seal(TRACE_CHAIN, v, store).value for i in range(0, n, 20)
              for v in records([trace_event(j) for j in range(i, min(i + 20, n))])]
    assert len(archive) == 3  # full buckets moved out of the head
    assert len(next(iter(heads.values()))) <= 40 + 8 * (BUCKET + 20)
    fresh = ChainStore(heads, archive)  # e.g. after a restart: nothing cached
    assert seal(TRACE_CHAIN, records([trace_event(7)])[0], fresh).value is None
    more = seal(TRACE_CHAIN, records([trace_event(n)])[0], fresh)
    assert more.linked == 1
    assert verify(stored_rows([*sealed, more.value]), "event_id").valid


def test_same_trace_id_in_two_orgs_is_two_chains():
    store = ChainStore({}, {})
    a = seal(TRACE_CHAIN, records([trace_event(1, org="a")])[0], store)
    b = seal(TRACE_CHAIN, records([trace_event(1, org="b")])[0], store)
    assert decode(a.value).datum["first_seq"] == decode(b.value).datum["first_seq"] == 1


def test_a_single_trace_event_record_is_sealed_as_a_batch():
    store = ChainStore({}, {})
    out = seal(TRACE_CHAIN, encode("TraceEvent", trace_event(1)), store)
    assert decode(out.value).schema == "SealedTraceEventBatch" and out.linked == 1


def test_foreign_or_inconsistent_records_are_refused():
    store = ChainStore({}, {})
    with pytest.raises(DecodeError):
        seal(AUDIT_CHAIN, records([trace_event(1)])[0], store)
    batch = {"org_id": "o1", "trace_id": "t1", "events": [trace_event(1, org="o2")]}
    with pytest.raises(DecodeError, match="org_id"):
        seal(TRACE_CHAIN, encode("TraceEventBatch", batch), store)
    assert store.heads == {}


def test_nothing_is_stored_until_the_head_is_saved():
    store = ChainStore({}, {})
    first = seal_only(TRACE_CHAIN, records([trace_event(1)])[0], store)
    again = seal_only(TRACE_CHAIN, records([trace_event(1)])[0], store)
    assert store.heads == {} and first.value == again.value  # deterministic: a replay is identical


@pytest.mark.parametrize("named", [False, True])
def test_head_round_trips(named):
    head = Head(7, bytes(range(32)), bytearray(b"x" * 16), started_at=1_795_428_000_123, agent_named=named)
    assert Head.unpack(head.pack()) == head


def test_a_head_written_before_started_at_still_reads():
    first_layout = (7).to_bytes(8, "big") + bytes(range(32)) + b"x" * 16
    assert Head.unpack(first_layout) == Head(7, bytes(range(32)), bytearray(b"x" * 16), started_at=0)


def summary(value: bytes) -> tuple:
    d = decode(value).datum
    return d["started_at"], d["final_outcome"], d["completed_at"]


def test_sealed_trace_records_carry_the_trace_start_and_close():
    early, late = trace_event(1), trace_event(2)
    early["occurred_at"], late["occurred_at"] = 2_000, 1_000  # the second arrives with an earlier time
    closing = trace_event(3) | {"type": "operation_denied", "occurred_at": 3_000}
    store = ChainStore({}, {})
    first = seal(TRACE_CHAIN, records([early])[0], store)
    second = seal(TRACE_CHAIN, records([late])[0], store)
    third = seal(TRACE_CHAIN, records([closing])[0], store)
    # started_at is the first link's time and never moves; the close is in the record that closed
    assert [summary(o.value) for o in (first, second, third)] == [
        (2_000, None, None), (2_000, None, None), (2_000, "denied", 3_000)]
    # a replayed head gets its start from the sealed record that holds seq 1
    rebuilt = ChainStore({}, {})
    replay_sealed(first.value, rebuilt).save(rebuilt)
    assert rebuilt.head(b"trace\x00o1\x00t1").started_at == 2_000


def test_replay_sealed_restores_a_head_whose_write_was_lost():
    values = records([trace_event(i) for i in range(1, 4)]) + records([trace_event(i) for i in range(4, 6)])
    saved, behind = ChainStore({}, {}), ChainStore({}, {})
    first = seal(TRACE_CHAIN, values[0], saved)
    seal(TRACE_CHAIN, values[0], behind)
    lost = seal_only(TRACE_CHAIN, values[1], saved)  # durable, but its head write is lost in `behind`
    lost.advance.save(saved)

    assert replay_sealed(first.value, behind) is None  # already reflected
    replay_sealed(lost.value, behind).save(behind)
    assert behind.heads == saved.heads
    assert replay_sealed(lost.value, behind) is None
    # the replayed input is now a retry, not a second set of links
    again = seal_only(TRACE_CHAIN, values[1], behind)
    assert (again.value, again.linked, again.retried) == (None, 0, 2)


def test_replay_sealed_leaves_a_head_that_is_not_right_before_the_record():
    values = records([trace_event(i) for i in range(1, 3)]) + records([trace_event(3)])
    saved, empty = ChainStore({}, {}), ChainStore({}, {})
    seal(TRACE_CHAIN, values[0], saved)
    second = seal(TRACE_CHAIN, values[1], saved)
    assert replay_sealed(second.value, empty) is None  # a gap: verify reports it, replay does not paper over it
    with pytest.raises(DecodeError):
        replay_sealed(values[0], empty)  # a raw record is not a sealed one


def test_sealed_offsets_are_kept_per_partition():
    store = ChainStore({}, {})
    assert store.sealed_offset(0) is None
    store.set_sealed_offset(0, 41)
    store.set_sealed_offset(3, 7)
    assert (store.sealed_offset(0), store.sealed_offset(3), store.sealed_offset(1)) == (41, 7, None)


def test_every_table_key_names_the_kafka_key_of_its_chain():
    store = ChainStore({}, {})
    values = [v for i in range(0, BUCKET + 10, 10)
              for v in records([trace_event(j, trace="t\x00#1") for j in range(i, i + 10)])]
    for value in values:
        seal(TRACE_CHAIN, value, store)
    store.set_sealed_offset(3, 42)
    assert {kafka_key_of(k, "heads") for k in store.heads} == {b"t\x00#1", 3}
    assert {kafka_key_of(k, "archive") for k in store.archive} == {b"t\x00#1"}
    audit = {"org_id": "o1", "events": [{"id": "a1", "org_id": "o1", "actor": "x", "action": "y", "target": "z",
                                          "metadata": {}, "occurred_at": 0}]}
    assert kafka_key_of(AUDIT_CHAIN.chain_key(audit), "heads") == b"o1"


def test_an_org_id_holding_nul_is_refused():
    batch = {"org_id": "o\x001", "trace_id": "t1", "events": [trace_event(1, org="o\x001")]}
    with pytest.raises(DecodeError, match="NUL"):
        seal(TRACE_CHAIN, encode("TraceEventBatch", batch), ChainStore({}, {}))


def test_a_batch_written_before_app_id_is_sealed_in_the_current_schema_with_the_same_links():
    """A raw batch of the schema before TraceEvent had app_id (still on the topic at an upgrade) is
    sealed as a current record: its events read with app_id null, linked as they were hashed before."""
    from schemas.codec import MAGIC
    from schemas.integrity import link_hash
    from schemas.registry import previous_schemas

    earlier = previous_schemas("TraceEventBatch")[-1]
    events = [{k: v for k, v in trace_event(i).items() if k != "app_id"} for i in (1, 2)]
    old_value = MAGIC + earlier.fingerprint + earlier.codec.encode({"org_id": "o1", "trace_id": "t1",
                                                                    "events": events})
    out = seal(TRACE_CHAIN, old_value, ChainStore({}, {}))
    assert out.linked == 2 and out.value[2:10] == schema("SealedTraceEventBatch").fingerprint
    rows = stored_rows([out.value])
    assert [r["app_id"] for r in rows] == [None, None]
    assert verify(rows, "event_id").valid
    # the hash is the one of the event as it was written, without app_id
    assert rows[0]["hash"] == link_hash(events[0], 1, GENESIS)
    with_app = seal(TRACE_CHAIN, records([trace_event(3) | {"app_id": "app_abc123"}])[0], ChainStore({}, {}))
    row = stored_rows([with_app.value])[0]
    assert row["app_id"] == "app_abc123" and verify([row], "event_id").valid


def test_only_the_record_holding_the_traces_first_event_naming_an_agent_is_marked():
    """The traces-by-agent index takes a trace's agent from the one record marked agent_named."""
    def agent(i: int, name: str | None) -> dict:
        return trace_event(i) | {"agent_id": name}

    batches = [[agent(1, None)], [agent(2, None), agent(3, "a"), agent(4, "b")], [agent(5, "c")],
               [agent(3, "a"), agent(6, None)]]  # the last one repeats event 3: a retry, not a new first
    store = ChainStore({}, {})
    sealed = [seal(TRACE_CHAIN, records(b)[0], store).value for b in batches]
    assert [decode(v).datum["agent_named"] for v in sealed] == [False, True, False, False]
    assert store.head(b"trace\x00o1\x00t1").agent_named
    # a head rebuilt from the sealed records, or a record rebuilt from stored links, says the same
    rebuilt = ChainStore({}, {})
    for value in sealed:
        replay_sealed(value, rebuilt).save(rebuilt)
    assert rebuilt.heads == store.heads
    restored = ChainStore({}, {})
    for value in sealed:
        again, advance = restore_sealed(TRACE_CHAIN, stored_rows([value]), restored)
        advance.save(restored)
        assert again == value
    # audit chains name no agent: their sealed records have no such field
    audit = seal(AUDIT_CHAIN, encode("AuditEvent", {"id": "a1", "org_id": "o1", "actor": "x", "action": "y",
                                                    "target": "z", "metadata": {}, "occurred_at": 1}),
                 ChainStore({}, {}))
    assert "agent_named" not in decode(audit.value).datum
