from schemas import producer
from schemas.producer import chunk_events, group_by_trace


def test_group_by_trace_keeps_arrival_order():
    evs = [{"org_id": "o", "trace_id": t, "n": i} for i, t in enumerate("abab")]
    groups = group_by_trace(evs)
    assert [e["n"] for e in groups[("o", "a")]] == [0, 2]
    assert [e["n"] for e in groups[("o", "b")]] == [1, 3]


def test_same_trace_id_in_two_orgs_is_two_groups():
    groups = group_by_trace([{"org_id": "x", "trace_id": "t"}, {"org_id": "y", "trace_id": "t"}])
    assert len(groups) == 2


def test_chunks_respect_event_count(monkeypatch):
    monkeypatch.setattr(producer, "MAX_EVENTS_PER_RECORD", 3)
    chunks = list(chunk_events([{"i": str(i)} for i in range(7)]))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [e["i"] for c in chunks for e in c] == [str(i) for i in range(7)]


def test_chunks_respect_bytes():
    big = {"input": "x" * (producer.MAX_RECORD_BYTES // 2)}
    assert [len(c) for c in chunk_events([big, big, big])] == [1, 1, 1]
