"""The ``rollups_hourly`` table (migration 0012): per org, hour, type and outcome, the event
count, errors, tokens and cost, summed over the partial rows the sink's view adds; and the
rollup publisher's marks (``rollup_marks``)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from schemas.timefmt import format_ms
from sinks.clickhouse import ClickHouse

HOUR_MS = 3_600_000
#: (topic, partition) of the sink's source records -> the first offset not yet published.
Marks = dict[tuple[str, int], int]
OrgHour = tuple[str, int]  # (org_id, hour start in epoch millis)

_HOUR_EPOCH_MS_SQL = "toInt64(toUnixTimestamp(hour)) * 1000"
_SUMS = ("sum(events), sum(errors), sum(input_tokens), sum(output_tokens), sum(total_tokens), "
         "sum(cost)")


@dataclass(frozen=True)
class HourBucket:
    """What one hour holds for one (type, outcome) of an org."""

    hour: int  # epoch millis of the hour's start
    type: str
    outcome: str | None
    events: int
    errors: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost: float

    def to_json(self) -> dict[str, Any]:
        """The API's bucket: ``count`` is the number of events (seed 000's name for it)."""
        return {"hour": format_ms(self.hour), "type": self.type, "outcome": self.outcome, "count": self.events,
                "errors": self.errors, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "total_tokens": self.total_tokens, "cost": self.cost}


def _bucket(hour_ms: int, type_: str, outcome: str | None, *sums: Any) -> HourBucket:
    events, errors, input_tokens, output_tokens, total_tokens, cost = sums
    return HourBucket(int(hour_ms), type_, outcome, int(events), int(errors), int(input_tokens),
                      int(output_tokens), int(total_tokens), float(cost))


class RollupRepository:
    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self.table = f"{ch.database}.rollups_hourly"

    async def buckets(self, org_id: str, since_ms: int, until_ms: int | None) -> list[HourBucket]:
        """The org's buckets of the hours from the one holding ``since_ms`` to the one holding
        ``until_ms`` (open-ended when None), by hour, type, outcome."""
        params: dict[str, Any] = {"org": org_id, "since": since_ms // 1000}
        until = ""
        if until_ms is not None:
            until, params["until"] = "AND hour <= toDateTime({until:Int64}, 'UTC')", until_ms // 1000
        rows = await self.ch.query(
            f"SELECT {_HOUR_EPOCH_MS_SQL}, type, outcome, {_SUMS} FROM {self.table} WHERE org_id = {{org:String}} "
            f"AND hour >= toStartOfHour(toDateTime({{since:Int64}}, 'UTC')) {until} "
            "GROUP BY hour, type, outcome ORDER BY hour, type, outcome", params)
        return [_bucket(*row) for row in rows.rows]

    async def changed_since(self, marks: Marks) -> tuple[list[OrgHour], Marks]:
        """The (org, hour) pairs with a partial row at or past ``marks``, and the marks that
        cover every partial row seen (each partition's highest offset seen, plus one)."""
        topics = [t for t, _ in marks]
        parts = [p for _, p in marks]
        nexts = list(marks.values())
        rows = await self.ch.query(
            f"SELECT org_id, {_HOUR_EPOCH_MS_SQL}, _topic, _partition, max(_offset) FROM {self.table} "
            "WHERE _offset >= arrayFirst((t, p, n) -> t = _topic AND p = _partition, "
            "arrayZip({topics:Array(String)}, {parts:Array(UInt32)}, {nexts:Array(UInt64)})).3 "
            "GROUP BY org_id, hour, _topic, _partition",
            {"topics": topics, "parts": parts, "nexts": nexts})
        changed: set[OrgHour] = set()
        seen = dict(marks)
        for org_id, hour, topic, partition, offset in rows.rows:
            changed.add((org_id, int(hour)))
            key = (topic, int(partition))
            seen[key] = max(seen.get(key, 0), int(offset) + 1)
        return sorted(changed), seen

    async def hours(self, keys: list[OrgHour]) -> dict[OrgHour, list[HourBucket]]:
        """The whole current buckets of each (org, hour) in ``keys``."""
        if not keys:
            return {}
        rows = await self.ch.query(
            f"SELECT org_id, {_HOUR_EPOCH_MS_SQL}, type, outcome, {_SUMS} FROM {self.table} "
            "WHERE (org_id, hour) IN arrayZip({orgs:Array(String)}, "
            "arrayMap(s -> toDateTime(s, 'UTC'), {hours:Array(Int64)})) "
            "GROUP BY org_id, hour, type, outcome ORDER BY org_id, hour, type, outcome",
            {"orgs": [o for o, _ in keys], "hours": [h // 1000 for _, h in keys]})
        out: dict[OrgHour, list[HourBucket]] = defaultdict(list)
        for org_id, *row in rows.rows:
            bucket = _bucket(*row)
            out[(org_id, bucket.hour)].append(bucket)
        return dict(out)

    async def marks(self) -> Marks:
        """Where the publisher stopped: per source partition, the first offset not published."""
        rows = await self.ch.query(f"SELECT _topic, _partition, max(next_offset) FROM {self.ch.database}.rollup_marks "
                                   "GROUP BY _topic, _partition")
        return {(t, int(p)): int(n) for t, p, n in rows.rows}

    async def save_marks(self, marks: Marks) -> None:
        if marks:
            rows = (json.dumps({"_topic": t, "_partition": p, "next_offset": n}) for (t, p), n in marks.items())
            await self.ch.insert_formatted("rollup_marks", "\n".join(rows).encode(), "JSONEachRow")
