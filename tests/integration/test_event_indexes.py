"""The event list's selective filters are served by skip indexes (migration 0010): the
conditions ``EventFilter`` writes are ones ClickHouse can prune granules with, and the
pages they give are the same as without the indexes."""

from __future__ import annotations

import json

import pytest

from schemas.timefmt import format_ms
from sinks.repositories.events import EventFilter, EventRepository
from tests.integration.test_traces_read_model import T0

ROWS = 30_000  # four granules of 8,192 rows; the rare values are in the last one only
ORG = "acme"


async def store(clickhouse) -> None:
    """``ROWS`` events one second apart; the last 10 have a rare user, tag and metadata value."""
    rare = f"number >= {ROWS - 10}"
    await clickhouse.command(f"""
INSERT INTO {clickhouse.database}.events (org_id, occurred_at, event_id, trace_id, type, user_id, tags, metadata,
    _topic, _partition, _offset)
SELECT '{ORG}', fromUnixTimestamp64Milli(toInt64({T0} + number * 1000), 'UTC'),
    concat('e', leftPad(toString(number), 6, '0')),
    concat('t', toString(intDiv(number, 10))), 'SPAN', if({rare}, 'rare-user', concat('user-', toString(number % 500))),
    if({rare}, ['common', 'rare-tag'], ['common']), map('customer', if({rare}, 'rare-customer', 'c-1')),
    'sealed-events', 0, number
FROM numbers({ROWS})""")


def index_use(explain: list[str], index: str) -> str:
    """The ``Granules: kept/all`` line of ``index`` in an ``EXPLAIN indexes=1`` plan."""
    lines = [line.strip(" │└─├") for line in explain]
    at = lines.index(f"Name: {index}")
    return next(line for line in lines[at:] if line.startswith("Granules:"))


@pytest.mark.parametrize(("flt", "index"), [
    (EventFilter(user_id="rare-user"), "idx_user_id"),
    (EventFilter(tag="rare-tag"), "idx_tags"),
    (EventFilter(metadata=("customer", "rare-customer")), "idx_metadata_values"),
])
async def test_a_rare_value_reads_only_the_granules_that_hold_it(clickhouse, flt, index):
    await store(clickhouse)
    conditions, params = flt.conditions()
    explain = await clickhouse.query(
        f"EXPLAIN indexes = 1 SELECT count() FROM {clickhouse.database}.events "
        f"WHERE org_id = {{org:String}} AND {' AND '.join(conditions)}", params | {"org": ORG})
    assert index_use([row[0] for row in explain.rows], index) == "Granules: 1/4"

    page = await EventRepository(clickhouse).page(ORG, flt, 50)
    events = [json.loads(doc) for doc in page.events]
    assert [e["event_id"] for e in events] == [f"e{n:06d}" for n in range(ROWS - 10, ROWS)]
    assert events[0]["occurred_at"] == format_ms(T0 + (ROWS - 10) * 1000)
    assert (await EventRepository(clickhouse).page("other-org", flt, 50)).events == []
