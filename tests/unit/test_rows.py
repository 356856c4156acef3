import json

from schemas.timefmt import format_ms, parse_ms
from sinks.rows import Source, ch_time, row_line


def test_ch_time_keeps_milliseconds():
    assert ch_time(1_795_428_000_007) == "1795428000.007"


def test_row_line_carries_source_and_converts_times():
    row = json.loads(row_line({"event_id": "e", "occurred_at": 1_000_123, "end_time": None},
                              Source("trace-events", 2, 41)))
    assert row == {"event_id": "e", "occurred_at": "1000.123", "end_time": None,
                   "_topic": "trace-events", "_partition": 2, "_offset": 41}


def test_iso_round_trip():
    assert format_ms(parse_ms("2026-11-23T10:00:00.123Z")) == "2026-11-23T10:00:00.123Z"
