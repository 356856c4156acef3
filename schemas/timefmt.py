"""Timestamps: ISO 8601 at the edge, integer epoch milliseconds (UTC) everywhere inside."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Accepted range for event timestamps: 2000-01-01 .. 2100-01-01.
MIN_MS = 946_684_800_000
MAX_MS = 4_102_444_800_000
#: Accepted range for times in queries and cursors: 1970-01-01 .. 2299-12-31T23:59:59.999Z, what
#: both ClickHouse time types hold (DateTime64(3) ends with 2299, the rollups' DateTime starts at 1970).
QUERY_MIN_MS = 0
QUERY_MAX_MS = 10_413_792_000_000
QUERY_RANGE = "1970-01-01T00:00:00Z .. 2299-12-31T23:59:59.999Z"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_ms(value: str) -> int:
    """Parse ISO 8601 (``Z`` or an offset; naive means UTC) into epoch millis; ValueError if not."""
    if not isinstance(value, str) or len(value) < 10:
        raise ValueError("expected an ISO 8601 timestamp such as 2026-11-23T10:00:00.123Z")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from None
    return datetime_ms(dt)


def check_query_ms(ms: int) -> int:
    """``ms`` if a query may use it (``QUERY_RANGE``); ValueError if not."""
    if not QUERY_MIN_MS <= ms < QUERY_MAX_MS:
        raise ValueError(f"outside the supported range {QUERY_RANGE}")
    return ms


def format_ms(ms: int) -> str:
    """Epoch millis as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    secs, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{millis:03d}Z"


def datetime_ms(dt: datetime) -> int:
    """A datetime (naive means UTC, as clickhouse-connect returns them) as epoch millis."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def ms_datetime(ms: int) -> datetime:
    """Epoch millis as an aware UTC datetime (for query parameters)."""
    secs, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(secs, UTC).replace(microsecond=millis * 1000)
