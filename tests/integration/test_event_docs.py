"""Event documents (migrations 0009, 0011): the JSON object ClickHouse keeps of every stored
event is exactly the event's columns rendered as the API's JSON, so the event reads take one column."""

from __future__ import annotations

import json
from typing import Any

from schemas.registry import record_fields
from schemas.timefmt import datetime_ms, format_ms
from sinks.repositories.events import EventFilter, EventRepository
from tests.integration.test_traces_read_model import T0, Pipeline, event

EVENT_COLUMNS = tuple(f["name"] for f in record_fields("TraceEvent"))
#: Columns that hold canonical JSON text, embedded as JSON in the documents.
JSON_COLUMNS = frozenset(f["name"] for f in record_fields("TraceEvent") if f.get("tracehouse.json"))
TIME_COLUMNS = ("occurred_at", "end_time")


def from_columns(row: dict[str, Any]) -> dict[str, Any]:
    """The event JSON made from the columns one by one (what the reads returned before 0009)."""
    out = dict(row)
    for key in TIME_COLUMNS:
        if out[key] is not None:
            out[key] = format_ms(datetime_ms(out[key]))
    for key in JSON_COLUMNS:
        if out[key] is not None:
            out[key] = json.loads(out[key])
    return out


EVENTS = [
    event("t1", 1),
    event("t1", 2, type="GENERATION", name="ünïcødé \"quoted\" \\ back\nline", model="m-1",
          model_config='{"temperature":0.2,"stop":["\\n"]}', input='{"q":"hello","n":[1,2.5,null]}',
          output='"the answer"', messages='[{"role":"user","content":"hi 👋"}]', tools='[{"name":"search"}]',
          tool_choice='"auto"', input_tokens=2**40, output_tokens=0, total_tokens=2**40, cost=0.1 + 0.2,
          cost_currency="USD", scores={"quality": 0.95, "tiny": 1e-300}, tags=["a", "ß"],
          metadata={"k": "v" * 20_000, "ключ": "значение"}, end_time=T0 + 2500, status="STATUS_CODE_OK",
          user_id="u-1", policy_version=7, agent_id="agent-1", requested_operation="crm.update",
          app_id="app_ü \"1\""),
    event("t2", 1, org="other", occurred_at=T0 + 999, scores={"s": -0.0}),
]


async def test_a_doc_renders_as_the_columns_do(clickhouse):
    p = Pipeline(clickhouse)
    await p.store(EVENTS[:2], EVENTS[2:])
    rows = await clickhouse.query(
        f"SELECT {', '.join(EVENT_COLUMNS)}, _doc FROM {clickhouse.database}.events ORDER BY org_id, occurred_at")
    docs = [json.loads(r.pop("_doc")) for r in rows.dicts()]
    assert len(docs) == 3 and all(list(d) == list(EVENT_COLUMNS) for d in docs)  # the schema's order
    assert docs == [from_columns(r) for r in (await clickhouse.query(
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM {clickhouse.database}.events ORDER BY org_id, occurred_at")).dicts()]
    generation = next(d for d in docs if d["type"] == "GENERATION")
    assert generation["input_tokens"] == 2**40 and generation["cost"] == 0.1 + 0.2
    assert generation["scores"] == {"quality": 0.95, "tiny": 1e-300}
    assert generation["model_config"] == {"temperature": 0.2, "stop": ["\n"]}
    assert generation["end_time"] == format_ms(T0 + 2500) and generation["metadata"]["ключ"] == "значение"


async def test_pages_and_traces_read_the_docs(clickhouse):
    p = Pipeline(clickhouse)
    await p.store(EVENTS[:2], EVENTS[2:])
    repo = EventRepository(clickhouse)
    page = await repo.page("o", EventFilter(), 1)
    assert [json.loads(e)["event_id"] for e in page.events] == ["t1-e1"] and page.next_key == (T0 + 1000, "t1-e1")
    rest = await repo.page("o", EventFilter(), 5, page.next_key)
    assert [json.loads(e)["event_id"] for e in rest.events] == ["t1-e2"] and rest.next_key is None
    assert await repo.trace("o", "t1") == page.events + rest.events
    assert await repo.trace("o", "t2") == []  # another org's trace
