"""Records written before TraceEvent had app_id (schemas/previous/v2), as bytes on a real broker
topic when the new version starts: raw batches and single events are sealed in the current schema,
sealed batches are stored as they are, every event reads with app_id null, and the chains (old
links and new ones after them) verify from what ClickHouse holds."""

from __future__ import annotations

import json

from schemas.codec import MAGIC, decode, encode
from schemas.integrity import GENESIS, link_hash, verify
from schemas.registry import previous_schemas, schema
from sinks.migrate import migrate, migrations
from sinks.repositories.chains import ChainRepository
from sinks.repositories.events import EventRepository
from sinks.writer import TRACE_EVENTS_SINK, SinkRecord, SinkWriter, Source
from streams.chaining import TRACE_CHAIN, ChainStore
from tests.integration.test_embedded_broker import create_topic, unique
from tests.integration.test_lost_sealed_records import publish, read_partition
from tests.integration.test_rollups import H0
from tests.unit.test_chaining import seal


def old_event(trace: str, i: int) -> dict:
    """An event as the earlier schema holds it: no app_id."""
    return {"event_id": f"{trace}-e{i}", "org_id": "o", "trace_id": trace, "parent_id": None, "class": None,
            "type": "SPAN", "name": f"step {i}", "occurred_at": H0 + i, "end_time": None, "status": None,
            "model": None, "model_config": None, "user_id": None, "session_id": None, "agent_id": None,
            "agent_name": None, "actor_type": None, "actor_name": None, "prompt_name": None, "description": None,
            "outcome": None, "input": '{"q":1.5}', "output": None, "messages": None, "tools": None,
            "tool_choice": None, "input_tokens": 3, "output_tokens": None, "total_tokens": None, "cost": 1e-07,
            "cost_currency": None, "scores": {"q": 0.5}, "tags": ["x"], "metadata": {"i": str(i)},
            "policy_version": None, "approval_request_id": None, "authority_model": None,
            "requested_operation": None, "target_integration": None, "resource_scope": None,
            "data_classification": None, "policy_rule_id": None, "parent_trace_id": None}


def earlier(name: str, datum: dict) -> bytes:
    """``datum`` single-object encoded with the schema before app_id."""
    writer = previous_schemas(name)[-1]
    assert "app_id" not in {f["name"] for f in writer.raw.get("fields", [])}
    return MAGIC + writer.fingerprint + writer.codec.encode(datum)


def sealed_before(trace: str, events: list[dict]) -> bytes:
    """A sealed batch as the chain agent wrote it before app_id: links hashed over the events as they were."""
    hashes, prev = [], GENESIS
    for seq, event in enumerate(events, 1):
        prev = link_hash(event, seq, prev)
        hashes.append(bytes.fromhex(prev))
    return earlier("SealedTraceEventBatch", {
        "org_id": "o", "trace_id": trace, "events": events, "first_seq": 1, "prev_hash": bytes.fromhex(GENESIS),
        "hashes": hashes, "started_at": events[0]["occurred_at"], "final_outcome": None, "completed_at": None,
        "hash_version": 2})


async def test_records_written_before_app_id_are_sealed_stored_and_verify(clickhouse, broker):
    raw_topic, sealed_topic = unique("raw"), unique("sealed")
    for topic in (raw_topic, sealed_topic):
        await create_topic(broker.bootstrap, topic, 1)
    # on the raw topic: a batch of t1 and a single event of t1 written before app_id
    await publish(broker.bootstrap, raw_topic, [
        earlier("TraceEventBatch", {"org_id": "o", "trace_id": "t1", "events": [old_event("t1", 1),
                                                                                 old_event("t1", 2)]}),
        earlier("TraceEvent", old_event("t1", 3))])
    # on the sealed topic: trace t2 sealed before app_id, not yet stored by the sink
    old_sealed = sealed_before("t2", [old_event("t2", 1), old_event("t2", 2)])
    await publish(broker.bootstrap, sealed_topic, [old_sealed])

    raw = await read_partition(broker.bootstrap, raw_topic)
    assert [decode(v).schema for _, v in raw] == ["TraceEventBatch", "TraceEvent"]
    assert all(v[2:10] != schema(decode(v).schema).fingerprint for _, v in raw)  # the earlier versions
    store = ChainStore({}, {})
    sealed = [seal(TRACE_CHAIN, v, store).value for _, v in raw]
    # ... and one written now, with an app_id, continuing t1's chain
    sealed.append(seal(TRACE_CHAIN, encode("TraceEventBatch", {"org_id": "o", "trace_id": "t1", "events": [
        old_event("t1", 4) | {"app_id": "app_abc123"}]}), store).value)
    assert all(v[2:10] == schema("SealedTraceEventBatch").fingerprint for v in sealed)
    await publish(broker.bootstrap, sealed_topic, sealed)

    log = await read_partition(broker.bootstrap, sealed_topic)
    assert log[0][1] == old_sealed
    records = [SinkRecord(Source(sealed_topic, 0, offset), value) for offset, value in log]
    assert await SinkWriter(clickhouse, TRACE_EVENTS_SINK).write(records) == []

    chains = ChainRepository(clickhouse)
    t1, t2 = await chains.trace_links("o", "t1"), await chains.trace_links("o", "t2")
    assert [r["seq"] for r in t1] == [1, 2, 3, 4] and [r["seq"] for r in t2] == [1, 2]
    assert [r["app_id"] for r in t1] == [None, None, None, "app_abc123"] and [r["app_id"] for r in t2] == [None] * 2
    assert verify(t1, "event_id").valid and verify(t2, "event_id").valid
    # the old links are exactly those the earlier agent sealed
    assert [r["hash"] for r in t2] == [h.hex() for h in decode(old_sealed).datum["hashes"]]
    assert t1[0]["hash"] == link_hash(old_event("t1", 1), 1, GENESIS)
    docs = [json.loads(d) for d in await EventRepository(clickhouse).trace("o", "t1")]
    assert [d["app_id"] for d in docs] == [None, None, None, "app_abc123"]


async def test_the_migration_gives_the_documents_stored_before_it_app_id_null(clickhouse):
    """Events stored before migration 0016 keep every field; their documents gain ``"app_id": null``."""
    db = clickhouse.database
    writer = SinkWriter(clickhouse, TRACE_EVENTS_SINK)
    record = encode("TraceEventBatch", {"org_id": "o", "trace_id": "t9", "events": [old_event("t9", 1)]})
    assert await writer.write([SinkRecord(Source("raw", 0, 0), record)]) == []
    before = json.loads((await EventRepository(clickhouse).trace("o", "t9"))[0])
    # back to the table as it was before 0016: 0011's documents, no app_id column
    [doc_0011] = [s for s in migration(11).split(";") if "MODIFY COLUMN _doc" in s]
    await clickhouse.command(doc_0011.replace("{db}", db))
    await clickhouse.command(f"ALTER TABLE {db}.events MATERIALIZE COLUMN _doc SETTINGS mutations_sync = 2")
    await clickhouse.command(f"ALTER TABLE {db}.events DROP INDEX idx_app_id")
    await clickhouse.command(f"ALTER TABLE {db}.events DROP COLUMN app_id SETTINGS mutations_sync = 2")
    stored = json.loads((await EventRepository(clickhouse).trace("o", "t9"))[0])
    assert "app_id" not in stored and stored == {k: v for k, v in before.items() if k != "app_id"}
    await clickhouse.command(f"ALTER TABLE {db}.schema_migrations DELETE WHERE version = 16 "
                             "SETTINGS mutations_sync = 2")
    assert await migrate(clickhouse) == ["0016_app_id.sql"]
    after = json.loads((await EventRepository(clickhouse).trace("o", "t9"))[0])
    assert after == stored | {"app_id": None} and list(after)[-1] == "app_id"
    with_app = encode("TraceEventBatch", {"org_id": "o", "trace_id": "t9", "events": [
        old_event("t9", 2) | {"app_id": "app_1"}]})
    assert await SinkWriter(clickhouse, TRACE_EVENTS_SINK).write([SinkRecord(Source("raw", 0, 1), with_app)]) == []
    docs = [json.loads(d) for d in await EventRepository(clickhouse).trace("o", "t9")]
    assert [d["app_id"] for d in docs] == [None, "app_1"]


def migration(version: int) -> str:
    return next(sql for v, _, sql in migrations() if v == version)
