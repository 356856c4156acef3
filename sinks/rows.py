"""Decoded Kafka records to ClickHouse JSONEachRow lines (pure functions)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from schemas.codec import Decoded

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
TIMESTAMP_FIELDS = ("occurred_at", "end_time")


@dataclass(frozen=True)
class Source:
    """Where a record came from: the sink's exactly-once key."""

    topic: str
    partition: int
    offset: int


def ch_time(ms: int) -> str:
    """Epoch millis in the form ClickHouse's DateTime64(3) parser reads exactly."""
    return f"{ms // 1000}.{ms % 1000:03d}"


def events_of(decoded: Decoded) -> list[dict[str, Any]]:
    """The event datums inside a batch or single-event record."""
    if decoded.schema.endswith("Batch"):
        return decoded.datum["events"]
    return [decoded.datum]


def row_line(datum: dict[str, Any], source: Source) -> bytes:
    """One JSONEachRow line for ``datum`` with its source coordinates."""
    row = dict(datum)
    for key in TIMESTAMP_FIELDS:
        if row.get(key) is not None:
            row[key] = ch_time(row[key])
    row["_topic"] = source.topic
    row["_partition"] = source.partition
    row["_offset"] = source.offset
    return _dumps(row).encode()


def body_of(lines: Iterable[bytes]) -> bytes:
    return b"\n".join(lines)
