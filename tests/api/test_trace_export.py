"""Seed 001's trace export (``GET /v1/traces/export``) through the in-process API over real chdb:
each format parsed back (json per line, the csv module, OpenAI lines, a JSON array) and compared
field by field with what the event list (``GET /v1/traces``) returns for the same events;
``lightweight``; the ``_export_meta`` line and cursor walks; every filter against the event list's
same filter; every 400, 401, 403; tenancy; hostile CSV cells."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

import pyarrow.parquet as pq
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from api.context import EVENT_EXPORTS
from api.params import decode_cursor
from api.routes import gateway_export
from api.routes.gateway_export import EVENT_FIELDS
from schemas.timefmt import format_ms
from tests.support.conversation import ASSISTANT, SYSTEM, TOOL, TOOLS, USER
from tests.support.in_process import Pipeline
from tests.support.service import Api, all_events, uid

pytestmark = pytest.mark.asyncio(loop_scope="session")

PATH = "/v1/traces/export"
T0 = int(time.time() * 1000) - 3_600_000
HOSTILE = '=HYPERLINK("http://x"),\n"quoted", ünïcode 😀'
#: Fields holding any JSON value: their CSV cell is the value's JSON text.
JSON_FIELDS = ("input", "output", "messages", "tools", "tool_choice", "model_config")
OUTPUT = {"message": "I found your recent orders and can help you...", "success": True}


async def raw(client: TestClient, key: str | None, headers: dict[str, str] | None = None,
              **params: Any) -> tuple[int, dict[str, str], str]:
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    async with client.get(PATH, params={k: str(v) for k, v in params.items()}, headers=auth | (headers or {})) as r:
        return r.status, dict(r.headers), await r.text()


async def raw_bytes(client: TestClient, key: str, **params: Any) -> tuple[int, dict[str, str], bytes]:
    async with client.get(PATH, params={k: str(v) for k, v in params.items()},
                          headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, dict(r.headers), await r.read()


def position(cursor: str) -> list[Any]:
    """The keyset position inside a ``next_cursor`` (the walk's snapshot instant left out)."""
    return decode_cursor(cursor)[:2]


def jsonl(text: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The event lines and the ``_export_meta`` of a jsonl export (which must be its last line)."""
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    assert all("_export_meta" not in line for line in lines[:-1])
    return lines[:-1], lines[-1]["_export_meta"]


def csv_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def csv_value(cell: str, value: Any, field: str) -> Any:
    """The event list's ``value`` as the CSV's ``cell`` reads back, for comparison."""
    if value is None:
        assert cell == "", (field, cell)
        return None
    if field in JSON_FIELDS or isinstance(value, dict | list):
        return json.loads(cell)
    if isinstance(value, bool):
        return cell == "true"
    if isinstance(value, int):
        return int(cell)
    if isinstance(value, float):
        return float(cell)
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(("=", "+", "-", "@", "\t", "\r")) else cell


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def data(api: Api, pipeline: Pipeline) -> dict[str, Any]:
    org, other = uid("org"), uid("org")
    key, other_key = await api.org_key(org), await api.org_key(other)
    llm, plain, span, note, bare, old = (uid(p) for p in ("llm", "plain", "span", "note", "bare", "old"))
    events = [
        {"event_id": f"{llm}-0", "trace_id": llm, "type": "GENERATION", "name": "support chat",
         "occurred_at": format_ms(T0), "end_time": format_ms(T0 + 5000), "status": "STATUS_CODE_OK",
         "model": "claude-3-5-sonnet-20241022", "model_config": {"temperature": 0.7, "max_tokens": 2048},
         "user_id": "user-1", "session_id": "sess_456", "prompt_name": "customer_support_agent",
         "input": {"question": "orders?"}, "messages": [SYSTEM, USER, ASSISTANT, TOOL], "output": OUTPUT,
         "tools": TOOLS, "tool_choice": "auto", "input_tokens": 250, "output_tokens": 1000, "total_tokens": 1250,
         "cost": 0.015, "cost_currency": "USD", "scores": {"quality": 0.9, "speed": 0.6},
         "tags": ["production", "support"], "metadata": {"customer_id": "cust_123", "note": HOSTILE}},
        {"event_id": f"{plain}-0", "trace_id": plain, "type": "GENERATION", "name": "Résumé writer",
         "occurred_at": format_ms(T0 + 1000), "status": "STATUS_CODE_ERROR", "model": "gpt-4o", "user_id": "user-2",
         "input": "write my résumé", "output": "-1 is not a résumé", "scores": {"quality": 0.2},
         "tags": ["staging"], "metadata": {"customer_id": "cust_999"}},
        {"event_id": f"{span}-0", "trace_id": span, "type": "SPAN", "name": HOSTILE, "parent_id": f"{llm}-0",
         "occurred_at": format_ms(T0 + 2000), "status": "STATUS_CODE_OK", "cost": -0.5,
         "input": [1, "two", None], "output": None, "metadata": {"ключ": "значение ✓"}},
        {"event_id": f"{note}-0", "trace_id": note, "type": "EVENT", "name": "user feedback",
         "occurred_at": format_ms(T0 + 2000), "description": "line one\nline two, \"quoted\"", "user_id": "user-1",
         "tags": ["support"]},
        {"event_id": f"{bare}-0", "trace_id": bare, "type": "GENERATION", "name": "no reply yet",
         "occurred_at": format_ms(T0 + 3000), "messages": [USER]},
        {"event_id": f"{old}-0", "trace_id": old, "type": "GENERATION", "model": "gpt-4o",
         "occurred_at": format_ms(T0 - 40 * 86_400_000), "output": "old"},
    ]
    # several events in one millisecond: the cursor's tie-break on event_id
    walk = uid("walk")
    events += [{"event_id": f"{walk}-{i:02d}", "trace_id": walk, "type": "SPAN", "name": f"step {i}",
                "occurred_at": format_ms(T0 + 4000 + (i // 4) * 1000)} for i in range(11)]
    status, body = await api.post("/v1/events", key, events)
    assert status == 202 and body["rejected"] == [], body
    other_events = [{"event_id": f"{uid('x')}-0", "trace_id": uid("theirs"), "type": "GENERATION",
                     "model": "gpt-4o", "occurred_at": format_ms(T0), "output": "theirs", "tags": ["support"]}]
    assert (await api.post("/v1/events", other_key, other_events))[0] == 202
    await pipeline.flush()
    window = {"startDate": format_ms(T0 - 86_400_000), "endDate": format_ms(T0 + 86_400_000)}
    listed = await all_events(api, key, **window)
    assert len(listed) == 16
    return {"org": org, "key": key, "other": other_key, "llm": llm, "plain": plain, "span": span, "note": note,
            "bare": bare, "old": old, "walk": walk, "window": window, "listed": listed}


async def test_jsonl_lines_are_the_event_lists_documents_then_export_meta(client, data):
    status, headers, text = await raw(client, data["key"])  # every default: jsonl, 500, the last 30 days
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    assert headers["Content-Disposition"] == 'attachment; filename="traces-export.jsonl"'
    assert "X-Next-Cursor" not in headers
    events, meta = jsonl(text)
    assert events == data["listed"]  # field by field, in the list's order
    assert meta == {"next_cursor": None, "has_more": False, "count": 16, "limit": 500}


async def test_json_is_an_array_of_the_same_documents_with_the_cursor_in_a_header(client, data):
    status, headers, text = await raw(client, data["key"], format="json", **data["window"])
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(text) == data["listed"] and "X-Next-Cursor" not in headers
    status, headers, text = await raw(client, data["key"], format="json", limit=3, **data["window"])
    assert json.loads(text) == data["listed"][:3]
    _, _, page = await raw(client, data["key"], limit=3, **data["window"])
    # the same position; each walk has its own snapshot instant
    assert position(headers["X-Next-Cursor"]) == position(jsonl(page)[1]["next_cursor"])


async def test_csv_has_a_header_row_and_each_field_of_each_event(client, data):
    status, headers, text = await raw(client, data["key"], format="csv", **data["window"])
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert text.split("\r\n", 1)[0] == ",".join(EVENT_FIELDS)
    columns, rows = csv_rows(text)
    assert columns == list(EVENT_FIELDS) and len(rows) == len(data["listed"])
    for row, event in zip(rows, data["listed"], strict=True):
        assert list(event) == columns
        for field in columns:
            assert csv_value(row[field], event[field], field) == event[field], (field, row[field])


async def test_csv_cells_with_commas_quotes_newlines_unicode_and_formulas_survive(client, data):
    _, _, text = await raw(client, data["key"], format="csv", **data["window"])
    _, rows = csv_rows(text)
    by_id = {r["event_id"]: r for r in rows}
    span, llm, note = by_id[f"{data['span']}-0"], by_id[f"{data['llm']}-0"], by_id[f"{data['note']}-0"]
    assert span["name"] == "'" + HOSTILE  # a spreadsheet shows the formula as text
    assert span["cost"] == "-0.5" and span["output"] == ""  # a negative number stays a number
    assert json.loads(span["metadata"]) == {"ключ": "значение ✓"} and json.loads(span["input"]) == [1, "two", None]
    assert json.loads(llm["metadata"])["note"] == HOSTILE
    assert note["description"] == 'line one\nline two, "quoted"'
    assert by_id[f"{data['plain']}-0"]["output"] == '"-1 is not a résumé"'  # JSON text: no formula, no apostrophe


async def test_lightweight_drops_input_output_and_messages_in_every_format(client, data):
    kept = [f for f in EVENT_FIELDS if f not in ("input", "output", "messages")]  # Input, Output(Object), ToolCalls
    assert len(kept) == len(EVENT_FIELDS) - 3
    light = [{k: e[k] for k in kept} for e in data["listed"]]
    _, _, text = await raw(client, data["key"], lightweight="true", **data["window"])
    events, meta = jsonl(text)
    assert events == light and meta["count"] == 16
    assert all(list(e) == kept for e in events)
    _, _, text = await raw(client, data["key"], format="json", lightweight="true", **data["window"])
    assert json.loads(text) == light
    _, _, text = await raw(client, data["key"], format="csv", lightweight="true", **data["window"])
    columns, rows = csv_rows(text)
    assert columns == kept
    assert [r["event_id"] for r in rows] == [e["event_id"] for e in light]
    _, _, text = await raw(client, data["key"], lightweight="false", **data["window"])
    assert jsonl(text)[0] == data["listed"]


async def test_openai_writes_one_chat_example_per_generation_with_its_tool_calls(client, data):
    status, headers, text = await raw(client, data["key"], format="openai", **data["window"])
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in text.splitlines()]
    # the generations with an assistant message, in order: the bare one (a user message only) gives no line
    assert len(lines) == 2
    generations = {e["event_id"]: e for e in data["listed"] if e["type"] == "GENERATION"}
    assert set(generations) == {f"{data[t]}-0" for t in ("llm", "plain", "bare")}
    llm = generations[f"{data['llm']}-0"]
    assert lines[0] == {
        "messages": [llm["messages"][0], llm["messages"][1],
                     {"role": "assistant", "content": ASSISTANT["content"],
                      "tool_calls": [{"id": "call_1", "type": "function",
                                      "function": {"name": "search_orders",
                                                   "arguments": '{"query":"recent orders"}'}}]},
                     llm["messages"][3],
                     {"role": "assistant", "content": json.dumps(llm["output"], separators=(",", ":"))}],
        "tools": [{"type": "function", "function": {"name": "search_orders", "description": "Search customer orders",
                                                    "parameters": TOOLS[0]["parameters"]}}]}
    assert json.loads(lines[0]["messages"][2]["tool_calls"][0]["function"]["arguments"]) == \
        llm["messages"][2]["tool_calls"][0]["args"]
    plain = generations[f"{data['plain']}-0"]
    assert lines[1] == {"messages": [{"role": "user", "content": plain["input"]},
                                     {"role": "assistant", "content": plain["output"]}]}
    _, _, generations_only = await raw(client, data["key"], format="openai", type="GENERATION", **data["window"])
    _, _, any_type = await raw(client, data["key"], format="openai", type="all", **data["window"])
    assert generations_only == any_type == text


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json", "openai"])
async def test_following_next_cursor_returns_every_event_once_in_order(client, data, monkeypatch, fmt):
    # the larger documents read apart, in several chunks per page
    monkeypatch.setattr(gateway_export, "INLINE_BYTES", 300)
    monkeypatch.setattr(gateway_export, "CHUNK_BYTES", 600)
    want = [e["event_id"] for e in data["listed"]]
    if fmt == "openai":
        want = [e["event_id"] for e in data["listed"] if e["type"] == "GENERATION"]
    seen: list[str] = []
    cursor, pages = None, 0
    while True:
        limit = 1 if fmt == "openai" else 3
        params = data["window"] | {"format": fmt, "limit": limit} | ({"cursor": cursor} if cursor else {})
        status, headers, text = await raw(client, data["key"], **params)
        assert status == 200, text
        pages += 1
        if fmt == "jsonl":
            events, meta = jsonl(text)
            assert meta["next_cursor"] == headers.get("X-Next-Cursor") and meta["count"] == len(events)
            assert meta["has_more"] == (meta["next_cursor"] is not None)
            seen += [e["event_id"] for e in events]
        elif fmt == "csv":
            seen += [r["event_id"] for r in csv_rows(text)[1]]
        elif fmt == "json":
            seen += [e["event_id"] for e in json.loads(text)]
        else:  # a line per generation with a reply: count the pages instead
            seen += [""] * len(text.splitlines())
        cursor = headers.get("X-Next-Cursor")
        if cursor is None:
            break
        assert pages < 20
    if fmt == "openai":
        assert len(seen) == 2 and pages == 3  # 3 generations, one a page; the bare one gives no line
    else:
        assert seen == want and pages == 6  # 16 events, 3 a page


async def test_parquet_holds_the_stored_columns_of_the_same_events(client, data, monkeypatch):
    monkeypatch.setattr(gateway_export, "CHUNK_ROWS", 5)  # a row group per chunk: 16 events in four
    status, headers, body = await raw_bytes(client, data["key"], format="parquet", **data["window"])
    assert status == 200 and headers["Content-Type"] == "application/vnd.apache.parquet"
    assert headers["Content-Disposition"] == 'attachment; filename="traces-export.parquet"'
    parquet = pq.ParquetFile(io.BytesIO(body))
    assert parquet.metadata.num_row_groups == 4
    rows = parquet.read().to_pylist()
    listed = data["listed"]
    assert [r["event_id"] for r in rows] == [e["event_id"] for e in listed]
    for row, event in zip(rows, listed, strict=True):
        assert row["org_id"] == data["org"] and len(row["hash"]) == 64 and row["seq"] >= 1
        assert format_ms(int(row["occurred_at"].timestamp() * 1000)) == event["occurred_at"]
        for field in ("trace_id", "type", "name", "status", "model", "user_id", "cost", "input_tokens"):
            assert row[field] == event.get(field), field
        assert dict(row["scores"] or []) == (event.get("scores") or {})
        assert dict(row["metadata"] or []) == (event.get("metadata") or {})
        assert row["tags"] == (event.get("tags") or [])
        for field in JSON_FIELDS:  # JSON text, as stored
            assert (None if row[field] is None else json.loads(row[field])) == event.get(field), field
    _, _, light_body = await raw_bytes(client, data["key"], format="parquet", lightweight="true", **data["window"])
    light = pq.read_table(io.BytesIO(light_body))
    assert {"input", "output", "messages"}.isdisjoint(light.column_names) and "tools" in light.column_names
    assert light.column("event_id").to_pylist() == [e["event_id"] for e in listed]
    _, _, empty = await raw_bytes(client, data["key"], format="parquet", startDate=format_ms(T0 + 86_400_000))
    assert pq.read_table(io.BytesIO(empty)).num_rows == 0


async def test_a_walk_returns_the_events_stored_when_it_began_each_once_while_ingest_goes_on(
        api, client, pipeline):
    """Events stored during the walk, ahead of its position or behind it, are not in it: a walk is a
    snapshot, so it neither misses nor repeats any event it began with, and it ends."""
    key = await api.org_key(uid("org"))
    trace, late = uid("walked"), uid("late")
    first = [{"event_id": f"{trace}-{i:02d}", "trace_id": trace, "type": "SPAN",
              "occurred_at": format_ms(T0 + (i // 3) * 1000)} for i in range(14)]
    assert (await api.post("/v1/events", key, first))[0] == 202
    await pipeline.flush()
    window = {"startDate": format_ms(T0 - 86_400_000), "endDate": format_ms(T0 + 86_400_000)}
    seen: list[str] = []
    cursor, round_ = None, 0
    while True:
        params = window | {"limit": 3} | ({"cursor": cursor} if cursor else {})
        status, headers, text = await raw(client, key, **params)
        assert status == 200, text
        seen += [e["event_id"] for e in jsonl(text)[0]]
        # between pages: an event before every position, one inside the walk's range, one after it
        newcomers = [{"event_id": f"{late}-{round_}-{i}", "trace_id": late, "type": "SPAN",
                      "occurred_at": format_ms(T0 + offset)} for i, offset in enumerate((-500, 2500, 30_000))]
        assert (await api.post("/v1/events", key, newcomers))[0] == 202
        await pipeline.flush()
        round_ += 1
        cursor = headers.get("X-Next-Cursor")
        if cursor is None:
            break
        assert round_ < 20
    assert seen == [e["event_id"] for e in first] and round_ == 5
    # a new walk holds them all, once each
    status, _, text = await raw(client, key, **window)
    now_listed = [e["event_id"] for e in jsonl(text)[0]]
    assert len(now_listed) == len(set(now_listed)) == len(first) + 3 * round_


async def test_keys_stored_twice_are_exported_once_and_the_walk_goes_on_past_them(api, client, pipeline):
    key = await api.org_key(org := uid("org"))
    trace = uid("twice")
    events = [{"event_id": f"{trace}-{i}", "trace_id": trace, "type": "SPAN", "occurred_at": format_ms(T0 + i)}
              for i in range(7)]
    assert (await api.post("/v1/events", key, events))[0] == 202
    await pipeline.flush()
    ch = pipeline.clickhouse
    await ch.command(f"SYSTEM STOP MERGES {ch.database}.events")  # keep the second rows apart
    try:
        for i in (1, 2, 3, 6):  # a second row of these keys (an unchained resend), not merged yet
            await ch.command(f"INSERT INTO {ch.database}.events SELECT * FROM {ch.database}.events "
                             f"WHERE org_id = '{org}' AND event_id = '{trace}-{i}'")
        window = {"startDate": format_ms(T0 - 1000), "endDate": format_ms(T0 + 1000)}
        for fmt, ids_of in (("jsonl", lambda text: [e["event_id"] for e in jsonl(text)[0]]),
                            ("csv", lambda text: [r["event_id"] for r in csv_rows(text)[1]])):
            seen, cursor = [], None
            for _ in range(10):
                params = window | {"format": fmt, "limit": 2} | ({"cursor": cursor} if cursor else {})
                status, headers, text = await raw(client, key, **params)
                assert status == 200, text
                page = ids_of(text)
                assert len(page) <= 2
                seen += page
                cursor = headers.get("X-Next-Cursor")
                if cursor is None:
                    break
            assert seen == [e["event_id"] for e in events], fmt
    finally:
        await ch.command(f"SYSTEM START MERGES {ch.database}.events")


async def test_a_date_time_cursor_starts_after_that_instant(client, data):
    _, _, text = await raw(client, data["key"], cursor=format_ms(T0 + 2000), **data["window"])
    events, _ = jsonl(text)
    assert events == [e for e in data["listed"] if e["occurred_at"] > format_ms(T0 + 2000)]
    assert len(events) == 12


async def test_every_filter_narrows_as_the_event_lists_same_filter(api, client, data):
    cases = [
        {"type": "GENERATION"}, {"type": "SPAN"}, {"type": "EVENT"}, {"type": "all"},
        {"model": "gpt-4o"}, {"status": "STATUS_CODE_OK"}, {"status": "STATUS_CODE_ERROR"},
        {"status": "STATUS_CODE_UNSET"}, {"name": "RÉSUMÉ"}, {"name": "step"}, {"minScore": "0.8"},
        {"maxScore": "0.5"}, {"minScore": "0.5", "maxScore": "0.7"}, {"userId": "user-1"}, {"tag": "support"},
        {"metadata_key": "customer_id", "metadata_value": "cust_123"},
        {"metadata_key": "ключ", "metadata_value": "значение ✓"},
        {"startDate": format_ms(T0 + 1000), "endDate": format_ms(T0 + 2000)},
        {"startDate": format_ms(T0 - 41 * 86_400_000)}, {"model": "gpt-4o", "type": "GENERATION", "tag": "staging"},
    ]
    for params in cases:
        # the list has no default window with seed 000's type alone: give it the export's
        window = {} if "startDate" in params else {"startDate": format_ms(T0 - 86_400_000)}
        listed = [e["event_id"] for e in await all_events(api, data["key"], **window, **params)]
        _, _, text = await raw(client, data["key"], **params)
        exported = [e["event_id"] for e in jsonl(text)[0]]
        assert exported == listed and exported, (params, exported)
    assert jsonl((await raw(client, data["key"], model="no-such-model"))[2])[0] == []


async def test_the_window_defaults_to_the_last_30_days(client, data):
    _, _, text = await raw(client, data["key"], model="gpt-4o")
    assert [e["trace_id"] for e in jsonl(text)[0]] == [data["plain"]]
    _, _, text = await raw(client, data["key"], model="gpt-4o", startDate=format_ms(T0 - 41 * 86_400_000))
    assert [e["trace_id"] for e in jsonl(text)[0]] == [data["old"], data["plain"]]
    _, _, text = await raw(client, data["key"], endDate=format_ms(T0 + 1000))  # 30 days before endDate
    assert [e["trace_id"] for e in jsonl(text)[0]] == [data["llm"], data["plain"]]


async def test_another_orgs_events_never_appear(client, data):
    _, _, mine = await raw(client, data["key"], tag="support")
    assert {e["org_id"] for e in jsonl(mine)[0]} == {data["org"]}
    for fmt in ("jsonl", "csv", "json", "openai"):
        status, _, theirs = await raw(client, data["other"], format=fmt)
        assert status == 200 and "theirs" in theirs
        assert all(data[t] not in theirs for t in ("llm", "plain", "span", "note", "walk"))


async def test_export_is_matched_before_trace_ids(client, api, data):
    status, _, text = await raw(client, data["key"])
    assert status == 200 and "not found" not in text
    status, body = await api.get(f"/v1/traces/{data['llm']}", data["key"])
    assert status == 200 and body["event_count"] == 1


@pytest.mark.parametrize(("params", "field"), [
    ({"format": "xml"}, "format"), ({"format": "PARQUET"}, "format"), ({"limit": "0"}, "limit"),
    ({"limit": "2001"}, "limit"), ({"limit": "ten"}, "limit"), ({"lightweight": "yes"}, "lightweight"),
    ({"format": "openai", "lightweight": "true"}, "lightweight"), ({"format": "openai", "type": "SPAN"}, "type"),
    ({"startDate": "yesterday"}, "startDate"), ({"endDate": "2026-13-01"}, "endDate"),
    ({"startDate": "1900-01-01T00:00:00Z"}, "startDate"),
    ({"startDate": "2026-01-02T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"}, "startDate"),
    ({"status": "OK"}, "status"), ({"minScore": "high"}, "minScore"), ({"maxScore": "NaN"}, "maxScore"),
    ({"metadata_key": "k"}, "metadata_value"), ({"metadata_value": "v"}, "metadata_key"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"cursor": "1900-01-01T00:00:00Z"}, "cursor"),
    ({"since": "2026-01-01T00:00:00Z"}, "since"), ({"class": "llm"}, "class"), ({"app_id": "app_1"}, "app_id"),
    ({"userId": ""}, "userId"), ({"name": "x" * 257}, "name"),
])
async def test_every_bad_parameter_is_a_400_naming_it(client, data, params, field):
    status, _, text = await raw(client, data["key"], **params)
    body = json.loads(text)
    assert status == 400 and body["error"]["code"] == "validation_error", body
    assert body["error"]["details"]["field"] == field, body


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def apps(api: Api, pipeline: Pipeline) -> dict[str, Any]:
    """An org's events of two applications and of none, and another org's of the same application."""
    org, other = uid("org"), uid("org")
    key, other_key = await api.org_key(org), await api.org_key(other)
    trace = uid("apps")
    # one millisecond holds several, so a cursor walk splits ties
    mine = [{"event_id": f"{trace}-{i:02d}", "trace_id": trace, "type": "SPAN", "name": f"step {i}",
             "occurred_at": format_ms(T0 + (i // 3) * 1000),
             **({"app_id": ("app_abc123", "app_other")[i % 2]} if i % 5 else {})} for i in range(15)]
    status, body = await api.post("/v1/events", key, mine)
    assert status == 202 and body["rejected"] == [], body
    theirs = [{"event_id": f"{uid('x')}-0", "trace_id": uid("theirs"), "type": "SPAN", "app_id": "app_abc123",
               "occurred_at": format_ms(T0)}]
    assert (await api.post("/v1/events", other_key, theirs))[0] == 202
    await pipeline.flush()
    return {"key": key, "other": other_key, "events": mine, "theirs": theirs[0]["event_id"]}


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
async def test_the_app_id_header_exports_exactly_that_apps_events_of_the_org(client, apps, fmt):
    for app in ("app_abc123", "app_other"):
        wanted = [e["event_id"] for e in apps["events"] if e.get("app_id") == app]
        assert len(wanted) >= 5
        status, _, text = await raw(client, apps["key"], {"X-Agentmark-App-Id": app}, format=fmt)
        assert status == 200, text
        if fmt == "jsonl":
            events, meta = jsonl(text)
            assert meta["count"] == len(wanted) and not meta["has_more"]
        elif fmt == "json":
            events = json.loads(text)
        else:
            events = csv_rows(text)[1]
        assert [e["event_id"] for e in events] == wanted  # the other org's event of the app never shows
        assert {e["app_id"] for e in events} == {app}
    # without the header: every event of the org, those of no application (app_id null) included
    _, _, text = await raw(client, apps["key"])
    events, _ = jsonl(text)
    assert [e["event_id"] for e in events] == [e["event_id"] for e in apps["events"]]
    assert [e["app_id"] for e in events] == [e.get("app_id") for e in apps["events"]]
    assert sum(e["app_id"] is None for e in events) == 3


async def test_an_app_of_no_event_or_another_orgs_exports_nothing(client, apps):
    for key, app in ((apps["key"], "app_unknown"), (apps["key"], "APP_ABC123"), (apps["key"], "app_abc12")):
        status, _, text = await raw(client, key, {"X-Agentmark-App-Id": app})
        assert status == 200 and jsonl(text) == ([], {"next_cursor": None, "has_more": False, "count": 0,
                                                      "limit": 500})
    status, _, text = await raw(client, apps["other"], {"X-Agentmark-App-Id": "app_abc123"})
    assert status == 200 and [e["event_id"] for e in jsonl(text)[0]] == [apps["theirs"]]


async def test_a_cursor_walk_with_the_header_stays_in_the_app(client, apps):
    wanted = [e["event_id"] for e in apps["events"] if e.get("app_id") == "app_abc123"]
    seen, cursor = [], None
    for _ in range(len(wanted)):
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        status, headers, text = await raw(client, apps["key"], {"X-Agentmark-App-Id": "app_abc123"}, **params)
        assert status == 200
        events, meta = jsonl(text)
        seen += [e["event_id"] for e in events]
        cursor = meta["next_cursor"]
        assert headers.get("X-Next-Cursor") == cursor
        if cursor is None:
            break
    assert seen == wanted


@pytest.mark.parametrize("value", ["", "   ", "a" * 257])
async def test_an_empty_or_over_long_app_id_header_is_a_400_naming_it(client, apps, value):
    status, _, text = await raw(client, apps["key"], {"X-Agentmark-App-Id": value})
    body = json.loads(text)
    assert status == 400 and body["error"]["code"] == "validation_error", body
    assert body["error"]["details"]["field"] == "X-Agentmark-App-Id"


async def test_the_app_id_header_given_twice_is_a_400_naming_it(client, apps):
    auth = {"Authorization": f"Bearer {apps['key']}"}
    headers = [*auth.items(), ("X-Agentmark-App-Id", "app_abc123"), ("X-Agentmark-App-Id", "app_other")]
    async with client.get(PATH, headers=headers) as r:
        body = await r.json()
        assert r.status == 400 and body["error"]["details"]["field"] == "X-Agentmark-App-Id"
    status, _, _ = await raw(client, apps["key"], {"X-Agentmark-App-Id": "a" * 256})
    assert status == 200  # the longest id


@pytest.mark.parametrize(("app_id", "reason"), [(7, "expected a string"), ("", "1 to 256"), ("a" * 257, "1 to 256"),
                                                ("app\n1", "control characters"), (["app"], "expected a string")])
async def test_a_bad_app_id_is_rejected_at_ingest_naming_it(api, app_id, reason):
    key = await api.org_key(uid("org"))
    status, body = await api.post("/v1/events", key, [{"trace_id": uid("t"), "app_id": "app_ok"},
                                                      {"trace_id": uid("t"), "app_id": app_id}])
    assert status == 202 and len(body["accepted"]) == 1, body
    [rejected] = body["rejected"]
    assert rejected["index"] == 1 and rejected["field"] == "app_id" and reason in rejected["reason"], rejected


async def test_the_export_needs_a_key_with_traces_read(client, api, data):
    assert (await raw(client, None))[0] == 401
    assert (await raw(client, "not-a-key"))[0] == 401
    writer = await api.org_key(data["org"], ["traces:write", "audit:read"])
    status, _, text = await raw(client, writer)
    assert status == 403 and json.loads(text)["error"]["details"]["scope"] == "traces:read"
    reader = await api.org_key(data["org"], ["traces:read"])
    status, _, text = await raw(client, reader)
    assert status == 200 and jsonl(text)[1]["count"] == 16


async def test_a_full_page_of_2000_events_with_the_longest_ids_in_two_chunks(api, client, pipeline):
    org = uid("org")
    key = await api.org_key(org)
    long = "é" + "x" * 250  # ids of up to 256 characters
    events = [{"event_id": f"{long}{i:05d}", "trace_id": f"tr-{i // 100}", "type": "SPAN",
               "occurred_at": format_ms(T0 + (i // 3))} for i in range(2001)]
    for start in range(0, len(events), 500):
        assert (await api.post("/v1/events", key, events[start:start + 500]))[0] == 202
    await pipeline.flush()
    status, headers, text = await raw(client, key, limit=2000)
    page, meta = jsonl(text)
    assert status == 200 and [e["event_id"] for e in page] == [e["event_id"] for e in events[:2000]]
    assert meta["has_more"] and headers["X-Next-Cursor"] == meta["next_cursor"]
    _, _, text = await raw(client, key, format="csv", cursor=meta["next_cursor"])
    assert [r["event_id"] for r in csv_rows(text)[1]] == [events[2000]["event_id"]]


async def test_large_documents_are_read_apart_in_bounded_chunks(client, data, monkeypatch):
    sizes = sorted(len(json.dumps(e, ensure_ascii=False).encode()) for e in data["listed"])
    monkeypatch.setattr(gateway_export, "INLINE_BYTES", sizes[len(sizes) // 2])  # half of them inline
    monkeypatch.setattr(gateway_export, "CHUNK_BYTES", 1)  # each large one in a query of its own
    reads = []
    exports = client.app[EVENT_EXPORTS]
    original = exports.documents

    async def counted(org_id, flt, keys):
        reads.append(len(keys))
        return await original(org_id, flt, keys)

    monkeypatch.setattr(exports, "documents", counted)
    for fmt in ("jsonl", "json", "csv"):
        reads.clear()
        status, _, text = await raw(client, data["key"], format=fmt, **data["window"])
        assert status == 200
        ids = ([e["event_id"] for e in jsonl(text)[0]] if fmt == "jsonl" else
               [e["event_id"] for e in json.loads(text)] if fmt == "json" else
               [r["event_id"] for r in csv_rows(text)[1]])
        assert ids == [e["event_id"] for e in data["listed"]]
        assert 0 < sum(reads) < len(ids) and max(reads) == 1
