"""The sink writer: batch, insert once, and never store a replayed record twice.

Offsets are committed only after an insert succeeded, so a crash replays records
that may already be stored. Each row carries its source (topic, partition, offset);
the first time a partition shows up after an assignment, the writer loads the ids
stored from that offset on (the replay window, bounded by the commit interval) and
drops those rows from the replay. Reads then never pay for deduplication.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sinks.clickhouse import ClickHouse
from sinks.rows import Source

log = logging.getLogger(__name__)

#: Backoff between failed inserts: doubles from the first value up to the last.
RETRY_BACKOFF = (0.2, 30.0)


@dataclass
class _ReplayWindow:
    """Rows already stored for one partition at or above the first offset seen."""

    stored: set[tuple[int, str]] = field(default_factory=set)
    last_offset: int = -1


@dataclass(frozen=True)
class PendingRow:
    source: Source
    row_id: str
    line: bytes


class SinkWriter:
    """Writes rows of one table; ``id_column`` identifies a row within its source record."""

    def __init__(self, ch: ClickHouse, table: str, id_column: str) -> None:
        self.ch = ch
        self.table = table
        self.id_column = id_column
        self._windows: dict[tuple[str, int], _ReplayWindow] = {}
        self.rows_written = 0
        self.rows_skipped = 0

    def reset(self) -> None:
        """Forget replay windows (call on every partition assignment)."""
        self._windows.clear()

    async def _window(self, topic: str, partition: int, first_offset: int) -> _ReplayWindow:
        key = (topic, partition)
        window = self._windows.get(key)
        if window is None:
            rows = await self.ch.query(
                f"SELECT _offset, {self.id_column} FROM {self.ch.database}.{self.table} "
                "WHERE _topic = {t:String} AND _partition = {p:UInt32} AND _offset >= {o:UInt64}",
                parameters={"t": topic, "p": partition, "o": first_offset},
            )
            stored = {(int(o), i) for o, i in rows.rows}
            window = _ReplayWindow(stored, max((o for o, _ in stored), default=-1))
            self._windows[key] = window
        return window

    async def fresh(self, rows: Iterable[PendingRow]) -> list[PendingRow]:
        """Rows that are not stored yet (drops what a replay would duplicate)."""
        out: list[PendingRow] = []
        for row in rows:
            src = row.source
            window = await self._window(src.topic, src.partition, src.offset)
            if src.offset <= window.last_offset and (src.offset, row.row_id) in window.stored:
                self.rows_skipped += 1
                continue
            out.append(row)
        return out

    async def write(self, rows: list[PendingRow]) -> int:
        """Insert the rows not stored yet, retrying with backoff until ClickHouse takes them."""
        delay, max_delay = RETRY_BACKOFF
        while True:
            try:
                fresh = await self.fresh(rows)
                if fresh:
                    await self.ch.insert_json_rows(self.table, b"\n".join(r.line for r in fresh))
                break
            except Exception as exc:  # any failure: ClickHouse down, table locked, network
                log.warning("writing %s failed (%s); retrying in %.1fs", self.table, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)
        self.rows_written += len(fresh)
        return len(fresh)
