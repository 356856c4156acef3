from schemas import producer
from schemas.codec import decode
from schemas.producer import group_by_trace, pack_batches
from schemas.registry import schema


def test_group_by_trace_keeps_arrival_order():
    evs = [{"org_id": "o", "trace_id": t, "n": i} for i, t in enumerate("abab")]
    groups = group_by_trace(evs)
    assert [e["n"] for e in groups[("o", "a")]] == [0, 2]
    assert [e["n"] for e in groups[("o", "b")]] == [1, 3]


def test_same_trace_id_in_two_orgs_is_two_groups():
    groups = group_by_trace([{"org_id": "x", "trace_id": "t"}, {"org_id": "y", "trace_id": "t"}])
    assert len(groups) == 2


def trace_event(i: int, **kw) -> dict:
    return {"event_id": f"e{i}", "org_id": "o", "trace_id": "t", "type": "SPAN",
            "occurred_at": 1_795_428_000_000, "scores": {}, "tags": [], "metadata": {}} | kw


def batch_records(schema_name: str, header: dict, events: list[dict]) -> list[bytes]:
    encode_event = schema("TraceEvent").codec.encode
    return list(pack_batches(schema_name, header, [encode_event(e) for e in events]))


def ids(records: list[bytes]) -> list[list[str]]:
    return [[e["event_id"] for e in decode(r).datum["events"]] for r in records]


def test_records_respect_event_count(monkeypatch):
    monkeypatch.setattr(producer, "MAX_EVENTS_PER_RECORD", 3)
    records = list(batch_records("TraceEventBatch", {"org_id": "o", "trace_id": "t"},
                                 [trace_event(i) for i in range(7)]))
    assert ids(records) == [["e0", "e1", "e2"], ["e3", "e4", "e5"], ["e6"]]


def test_records_respect_bytes_and_keep_order():
    big = "x" * (producer.MAX_RECORD_BYTES // 3)
    events = [trace_event(i, input=big if i in (1, 2, 4) else None) for i in range(6)]
    records = list(batch_records("TraceEventBatch", {"org_id": "o", "trace_id": "t"}, events))
    assert all(len(r) <= producer.MAX_RECORD_BYTES for r in records)
    assert [e for chunk in ids(records) for e in chunk] == [f"e{i}" for i in range(6)]
    assert len(records) >= 2


def test_one_event_bigger_than_a_record_still_travels_alone():
    huge = trace_event(0, input="x" * (producer.MAX_RECORD_BYTES + 10))
    records = list(batch_records("TraceEventBatch", {"org_id": "o", "trace_id": "t"}, [huge, trace_event(1)]))
    assert ids(records) == [["e0"], ["e1"]]
