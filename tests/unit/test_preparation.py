"""``prepare``: an ingest body becomes encoded records, accepted ids and per-item rejections."""

import json

import pytest

from api.preparation import PreparationPool, prepare
from schemas.codec import decode
from schemas.edge import edge_encoder


def run(body, kind="trace", max_events=10, max_event_bytes=4 * 1024 * 1024):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return prepare(kind, raw, "acme", "http:POST /v1/events", max_events, max_event_bytes)


def test_valid_events_become_one_record_per_trace_in_order():
    p = run([{"event_id": f"e{i}", "trace_id": f"t{i % 2}"} for i in range(5)])
    assert p.error is None and p.rejected == [] and p.reports == []
    assert p.accepted == ["e0", "e1", "e2", "e3", "e4"]
    batches = {key: decode(value).datum for key, value in p.records}
    assert [e["event_id"] for e in batches[b"t0"]["events"]] == ["e0", "e2", "e4"]
    assert {b["org_id"] for b in batches.values()} == {"acme"}


def test_invalid_items_are_rejected_by_index_and_reported():
    p = run({"events": [{"trace_id": "t", "event_id": "ok"}, {"trace_id": 5}, "nope"]})
    assert p.accepted == ["ok"]
    assert p.rejected == [{"index": 1, "field": "trace_id", "reason": "expected a string, got integer"},
                          {"index": 2, "field": "(event)", "reason": "expected an object, got string"}]
    assert [r["index"] for r in p.reports] == [1, 2] and p.reports[0]["payload"] == '{"trace_id": 5}'


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "invalid_json"), ({"x": 1}, 400, "validation_error"), ([], 400, "validation_error"),
    ([{"trace_id": "t"}] * 11, 413, "batch_too_large"), ([{"trace_id": 1}], 400, "validation_error"),
    (b"[" * 100_000, 400, "invalid_json"),
])
def test_refused_requests_say_why(body, status, code):
    p = run(body)
    assert p.error[:2] == (status, code) and p.records == []


def test_events_the_fast_path_declines_are_decided_by_validation():
    """Lone surrogates, huge numbers, nulls and an id-less event: the same answer as validate."""
    p = run([{"trace_id": "t", "name": "\ud800"}, {"trace_id": "t", "cost": 10**400},
             {"trace_id": "t", "event_id": "e2", "cost": 2, "tags": ["a"]}, {"trace_id": "t", "type": None},
             {"trace_id": "t"}])
    assert [(r["index"], r["field"]) for r in p.rejected] == [(0, "name"), (1, "cost"), (3, "type")]
    (key, value), = p.records
    events = decode(value).datum["events"]
    assert key == b"t" and [e["event_id"] for e in events] == p.accepted and p.accepted[0] == "e2"
    assert events[0]["cost"] == 2.0 and events[0]["tags"] == ["a"] and events[1]["type"] == "EVENT"


def test_malformed_json_is_reported_with_its_payload():
    p = run(b"{not json")
    assert p.reports[0]["field"] == "(body)" and p.reports[0]["payload"] == "{not json"


def test_audit_events_are_keyed_by_org():
    p = run([{"id": "a1", "actor": "ann", "action": "x", "target": "y"}], kind="audit")
    assert [key for key, _ in p.records] == [b"acme"] and p.accepted == ["a1"]
    assert decode(p.records[0][1]).schema == "AuditEventBatch"


async def test_worker_process_gives_the_same_answer_as_inline():
    pool = PreparationPool(1)
    await pool.start()
    try:
        raw = json.dumps([{"event_id": "e", "trace_id": "t", "occurred_at": "2026-11-23T10:00:00Z"}]).encode()
        in_process = await pool.prepare("trace", raw, "acme", "s", 10, 4096)
        assert in_process == prepare("trace", raw, "acme", "s", 10, 4096)
    finally:
        await pool.stop()


def test_an_event_above_the_size_limit_is_rejected_by_index_and_the_rest_accepted():
    big = {"event_id": "big", "trace_id": "t", "metadata": {"k": "x" * 5000}}
    p = run([{"event_id": "small", "trace_id": "t"}, big], max_event_bytes=4096)
    assert p.error is None and p.accepted == ["small"]
    assert [(r["index"], r["field"]) for r in p.rejected] == [(1, "(event)")]
    assert "limit is 4096" in p.rejected[0]["reason"] and p.reports[0]["index"] == 1
    assert [decode(v).datum["events"][0]["event_id"] for _, v in p.records] == ["small"]


def test_the_limit_is_the_events_encoded_size_inclusive():
    event = {"event_id": "e", "trace_id": "t", "occurred_at": 1_790_000_000_000, "metadata": {"k": "x" * 3000}}
    size = len(edge_encoder("TraceEvent").encode(event, "acme", 0)[0])
    assert run([event], max_event_bytes=size).accepted == ["e"]
    assert run([event], max_event_bytes=size - 1).error[0] == 413


def test_only_oversized_events_is_a_413_naming_each():
    p = run([{"trace_id": "t", "input": "y" * 3000}, {"trace_id": "t", "output": "z" * 3000}], max_event_bytes=2048)
    assert p.error is not None and p.error[0] == 413 and p.error[1] == "event_too_large"
    assert [r["index"] for r in p.error[3]["rejected"]] == [0, 1] and p.records == []


def test_oversized_and_malformed_events_without_a_valid_one_is_a_400():
    p = run([{"trace_id": "t", "input": "y" * 3000}, {"trace_id": 5}], max_event_bytes=2048)
    assert p.error is not None and p.error[0] == 400
