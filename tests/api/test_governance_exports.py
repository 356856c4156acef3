"""Seed 003's bulk exports through the in-process API over real chdb: the traces CSV (17 columns)
and the SIEM event export (JSON and CSV), parsed back with the csv and json modules and compared
with what the read API says of the same traces; every 400, the 403s, 413, tenancy, route precedence
over a trace id, and a walk over several chunks."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.routes import governance_exports
from api.routes.governance_exports import TRACE_COLUMNS
from schemas.timefmt import format_ms
from sinks.repositories.siem_sql import SIEM_COLUMNS
from tests.support.in_process import Pipeline
from tests.support.service import ADMIN_KEY, Api, uid
from tracehouse.settings import Settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = int(time.time() * 1000) - 3_600_000
HOSTILE = '=HYPERLINK("http://x"),\n"quoted", ünïcode 😀'


def event(trace: str, i: int, kind: str, start: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"{trace}-{i}", "trace_id": trace, "type": kind, "class": "governance",
            "occurred_at": format_ms(start + i * 1000), "actor_type": "agent", "actor_name": "deploy-agent",
            "description": f"{kind} happened", "status": "ok"} | fields


async def raw(client: TestClient, path: str, key: str, **params: str) -> tuple[int, dict[str, str], str]:
    async with client.get(path, params=params, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, dict(r.headers), await r.text()


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dataset(api: Api, pipeline: Pipeline) -> dict[str, Any]:
    org, other = uid("org"), uid("org")
    key = await api.org_key(org, ["traces:read", "traces:write", "audit:read"])
    reviewer = await api.org_key(org, ["reviewer"])
    reader = await api.org_key(org, ["traces:read", "audit:read"])
    other_key = await api.org_key(other, ["traces:read", "traces:write", "reviewer"])
    approved, plain, old = uid("tr"), uid("tr"), uid("tr")
    events = [
        event(approved, 0, "trace_initiated", T0, agent_id="agent-a", agent_name=HOSTILE,
              requested_operation="deploy", target_integration="aws", resource_scope="prod/*",
              data_classification="confidential", policy_rule_id="rule-7"),
        event(approved, 1, "approval_requested", T0, approval_request_id="ap-1", policy_version=3),
        event(approved, 2, "approval_granted", T0, approval_request_id="ap-1", actor_type="human_reviewer",
              actor_name="Bob Smith"),
        event(plain, 0, "trace_initiated", T0 + 600_000, agent_id="agent-b", agent_name="other-agent",
              description=HOSTILE),
        event(old, 0, "trace_initiated", T0 - 86_400_000, agent_id="agent-a"),
        {"event_id": "export-0", "trace_id": "export", "type": "trace_initiated",
         "occurred_at": format_ms(T0 + 300_000)},
    ]
    status, body = await api.post("/v1/events", key, events)
    assert status == 202 and body["rejected"] == [], body
    other_events = [event(uid("tr"), 0, "trace_initiated", T0, agent_id="agent-a")]
    assert (await api.post("/v1/events", other_key, other_events))[0] == 202
    await pipeline.flush()
    await pipeline.outcome(org, approved, "success")
    return {"org": org, "key": key, "reviewer": reviewer, "reader": reader, "other": other_key,
            "approved": approved, "plain": plain, "old": old,
            "range": {"from": format_ms(T0 - 3_600_000), "to": format_ms(T0 + 7_200_000)}}


async def test_the_traces_csv_holds_the_seeds_17_columns_as_the_read_api_says(client, api, dataset):
    status, headers, text = await raw(client, "/api/v1/traces/export", dataset["reviewer"], format="csv",
                                      **dataset["range"])
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"] == (f'attachment; filename="audit-{dataset["range"]["from"]}-to-'
                                              f'{dataset["range"]["to"]}.csv"')
    assert text.splitlines()[0] == ",".join(TRACE_COLUMNS)
    rows = rows_of(text)
    assert [r["trace_id"] for r in rows] == [dataset["plain"], "export", dataset["approved"]]  # newest first
    assert headers["X-Total-Count"] == "3"
    _, detail = await api.get(f"/api/v1/traces/{dataset['approved']}", dataset["key"])
    row = rows[2]
    assert row["agent_name"] == "'" + HOSTILE  # a spreadsheet shows the formula as text
    assert (row["agent_id"], row["operation"], row["target_integration"], row["resource_scope"]) == (
        detail["agent_id"], detail["requested_operation"], detail["target_integration"], detail["resource_scope"])
    assert (row["data_classification"], row["policy_rule_id"], row["policy_version"]) == (
        "confidential", "rule-7", "3")
    assert (row["final_outcome"], row["started_at"], row["completed_at"], row["duration_ms"]) == (
        detail["final_outcome"], detail["started_at"], detail["completed_at"], str(detail["duration_ms"]))
    decision = detail["approval_requests"][0]
    assert (row["approval_required"], row["approver_name"], row["approval_decision"], row["approval_decided_at"]) \
        == ("true", decision["approver_name"], decision["status"], decision["decided_at"]) \
        == ("true", "Bob Smith", "approved", decision["decided_at"])
    plain = rows[0]
    assert (plain["approval_required"], plain["approver_name"], plain["completed_at"], plain["final_outcome"]) == (
        "false", "", "", "in_progress")


async def test_the_traces_csv_filters_by_agent_and_range(client, dataset):
    _, headers, text = await raw(client, "/api/v1/traces/export", dataset["key"] and dataset["reviewer"],
                                 format="csv", agent_id="agent-a", **dataset["range"])
    assert [r["trace_id"] for r in rows_of(text)] == [dataset["approved"]] and headers["X-Total-Count"] == "1"
    everything = {"from": format_ms(T0 - 2 * 86_400_000), "to": dataset["range"]["to"]}
    _, _, text = await raw(client, "/api/v1/traces/export", dataset["reviewer"], format="csv", agent_id="agent-a",
                           **everything)
    assert [r["trace_id"] for r in rows_of(text)] == [dataset["approved"], dataset["old"]]


async def test_the_siem_export_holds_every_event_of_the_range_once(client, api, dataset):
    status, headers, text = await raw(client, "/api/v1/audit/export", dataset["reviewer"], **dataset["range"])
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    objects = json.loads(text)
    _, detail = await api.get(f"/api/v1/traces/{dataset['approved']}", dataset["key"])
    by_id = {o["event_id"]: o for o in objects}
    assert len(by_id) == len(objects) == int(headers["X-Total-Count"]) == 7  # 3 + 2 outcome events + plain + export
    for e in detail["events"]:
        o = by_id[e["id"]]
        assert list(o) == list(SIEM_COLUMNS)
        assert (o["event_type"], o["actor_type"], o["actor_name"], o["description"], o["status"], o["timestamp"],
                o["policy_version"], o["integrity_hash"]) == (
            e["event_type"], e["actor_type"], e["actor_name"], e["description"], e["status"], e["timestamp"],
            e["policy_version"], e["integrity_hash"])
        assert o["trace_id"] == dataset["approved"]
    assert [o["timestamp"] for o in objects] == sorted(o["timestamp"] for o in objects)
    status, headers, text = await raw(client, "/api/v1/audit/export", dataset["reviewer"], format="csv",
                                      **dataset["range"])
    assert status == 200 and headers["Content-Disposition"].startswith('attachment; filename="audit-events-')
    assert text.splitlines()[0] == ",".join(SIEM_COLUMNS)
    def as_cells(o: dict[str, Any]) -> dict[str, str | None]:  # what the CSV holds: text, formulas neutralised
        return {k: None if v is None else "'" + v if isinstance(v, str) and v.startswith("=") else str(v)
                for k, v in o.items()}

    assert [{k: v or None for k, v in r.items()} for r in rows_of(text)] == [as_cells(o) for o in objects]
    assert any(o["description"] == HOSTILE for o in objects)  # the JSON keeps the text as it was


async def test_the_siem_export_as_ocsf_and_cef_holds_the_same_events(client, dataset):
    _, _, whole = await raw(client, "/api/v1/audit/export", dataset["reviewer"], **dataset["range"])
    objects = json.loads(whole)
    status, headers, text = await raw(client, "/api/v1/audit/export", dataset["reviewer"], format="ocsf",
                                      **dataset["range"])
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["metadata"]["uid"] for r in records] == [o["event_id"] for o in objects]
    assert [r["actor"]["user"]["name"] for r in records] == [o["actor_name"] for o in objects]
    status, headers, text = await raw(client, "/api/v1/audit/export", dataset["reviewer"], format="cef",
                                      **dataset["range"])
    assert status == 200 and headers["X-Total-Count"] == str(len(objects))
    lines = text.splitlines()
    assert len(lines) == len(objects) and all(line.startswith("CEF:0|tracehouse|") for line in lines)
    assert [line.split("externalId=")[1].split(" ")[0] for line in lines] == [o["event_id"] for o in objects]


async def test_a_walk_over_many_chunks_returns_every_row_once_in_order(client, dataset, monkeypatch):
    for name in ("CHUNK_ROWS", "FIRST_CHUNK_ROWS", "TRACE_CHUNK_ROWS"):
        monkeypatch.setattr(governance_exports, name, 2)
    for fmt in ("json", "ocsf"):
        _, _, whole = await raw(client, "/api/v1/audit/export", dataset["reviewer"], format=fmt, **dataset["range"])
        ids = [o["event_id"] for o in json.loads(whole)] if fmt == "json" else \
            [json.loads(line)["metadata"]["uid"] for line in whole.splitlines()]
        assert len(ids) == len(set(ids)) == 7 and ids == sorted(ids, key=ids.index)
    _, _, text = await raw(client, "/api/v1/audit/export", dataset["reviewer"], format="csv", **dataset["range"])
    assert [r["event_id"] for r in rows_of(text)] == ids
    _, _, text = await raw(client, "/api/v1/traces/export", dataset["reviewer"], format="csv", **dataset["range"])
    assert [r["trace_id"] for r in rows_of(text)] == [dataset["plain"], "export", dataset["approved"]]


async def test_another_orgs_exports_hold_none_of_this_orgs_rows(client, dataset):
    for path, params in (("/api/v1/traces/export", {"format": "csv"}), ("/api/v1/audit/export", {})):
        status, headers, text = await raw(client, path, dataset["other"], **params, **dataset["range"])
        assert status == 200 and headers["X-Total-Count"] == "1"
        assert dataset["approved"] not in text and dataset["plain"] not in text


async def test_export_is_not_a_trace_id_here(client, api, dataset):
    status, _, text = await raw(client, "/api/v1/traces/export", dataset["reviewer"], format="csv",
                                **dataset["range"])
    assert status == 200 and text.startswith("trace_id,")
    status, body = await api.get("/tenants/" + dataset["org"] + "/traces/export", dataset["key"])
    assert status == 200 and body["traceId"] == "export"  # a trace named export: read on the tenant surface


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/api/v1/traces/export", {"to": "2026-01-01T00:00:00Z", "format": "csv"}, "from"),
    ("/api/v1/traces/export", {"from": "2026-01-01T00:00:00Z", "format": "csv"}, "to"),
    ("/api/v1/traces/export", {"from": "yesterday", "to": "2026-01-01T00:00:00Z", "format": "csv"}, "from"),
    ("/api/v1/traces/export", {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z", "format": "csv"},
     "from"),
    ("/api/v1/traces/export", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}, "format"),
    ("/api/v1/traces/export", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "format": "json"},
     "format"),
    ("/api/v1/traces/export", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "format": "csv",
                               "limit": "5"}, "limit"),
    ("/api/v1/audit/export", {"to": "2026-01-01T00:00:00Z"}, "from"),
    ("/api/v1/audit/export", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "format": "xml"},
     "format"),
])
async def test_every_bad_parameter_is_a_400_naming_it(api, dataset, path, params, field):
    status, body = await api.get(path, dataset["reviewer"], **params)
    assert status == 400 and body["error"]["code"] == "validation_error" and body["error"]["details"]["field"] == field


async def test_exports_need_reviewer_or_admin_and_a_reviewer_writes_nothing(api, dataset):
    for path, params in (("/api/v1/traces/export", {"format": "csv"}), ("/api/v1/audit/export", {}),
                         (f"/api/v1/traces/{dataset['approved']}/export", None)):
        status, body = await api.get(path, dataset["reader"], **(dataset["range"] | (params or {})
                                                                   if params is not None else {}))
        assert status == 403 and body["error"]["details"]["scope"] == "reviewer", (path, body)
        assert (await api.get(path, None))[0] == 401
    assert (await api.get(f"/api/v1/traces/{dataset['approved']}/export", dataset["reviewer"]))[0] == 200
    assert (await api.get("/api/v1/traces", dataset["reviewer"]))[0] == 200  # reviewers read
    status, _ = await api.post("/v1/events", dataset["reviewer"], [{"trace_id": "t", "type": "SPAN"}])
    assert status == 403  # and write nothing


async def test_an_export_above_the_cap_is_413(pipeline, dataset):
    app = create_app(Settings(admin_key=ADMIN_KEY, chain_events=False, ingest_processes=0, export_max_rows=2),
                     pipeline.clickhouse, producer=lambda _: pipeline.producer)
    async with TestClient(TestServer(app)) as small, Api(str(small.make_url("")).rstrip("/")) as api:
        for path, params, what in (("/api/v1/traces/export", {"format": "csv"}, "traces"),
                                   ("/api/v1/audit/export", {}, "events")):
            status, body = await api.get(path, dataset["reviewer"], **params, **dataset["range"])
            assert status == 413 and body["error"]["code"] == "export_too_large", body
            assert body["error"]["details"]["limit"] == 2 and what in body["error"]["message"]


async def test_a_key_stored_twice_is_counted_and_exported_once(client, api, pipeline, monkeypatch):
    """An unchained resend stores an event's key a second time (ReplacingMergeTree merges the two
    later): every export and its X-Total-Count hold it once, whatever the chunks."""
    for name in ("CHUNK_ROWS", "FIRST_CHUNK_ROWS"):
        monkeypatch.setattr(governance_exports, name, 2)
    org = uid("org")
    reviewer, writer = await api.org_key(org, ["reviewer"]), await api.org_key(org, ["traces:write"])
    trace = uid("tr")
    assert (await api.post("/v1/events", writer, [event(trace, i, "step", T0) for i in range(5)]))[0] == 202
    await pipeline.flush()
    ch = pipeline.clickhouse
    await ch.command(f"SYSTEM STOP MERGES {ch.database}.events")  # keep the second rows apart
    try:
        for i in (0, 2, 3):  # a second row of three keys, in parts of their own
            await ch.command(f"INSERT INTO {ch.database}.events SELECT * FROM {ch.database}.events "
                             f"WHERE org_id = '{org}' AND event_id = '{trace}-{i}'")
        stored = await ch.query(f"SELECT count() FROM {ch.database}.events WHERE org_id = '{org}'")
        assert stored.rows[0][0] == 8
        span = {"from": format_ms(T0 - 1000), "to": format_ms(T0 + 10_000)}
        want = [f"{trace}-{i}" for i in range(5)]
        _, headers, text = await raw(client, "/api/v1/audit/export", reviewer, **span)
        assert headers["X-Total-Count"] == "5" and [o["event_id"] for o in json.loads(text)] == want
        _, headers, text = await raw(client, "/api/v1/audit/export", reviewer, format="csv", **span)
        assert headers["X-Total-Count"] == "5" and [r["event_id"] for r in rows_of(text)] == want
        _, _, text = await raw(client, "/api/v1/audit/export", reviewer, format="ocsf", **span)
        assert [json.loads(line)["metadata"]["uid"] for line in text.splitlines()] == want
    finally:
        await ch.command(f"SYSTEM START MERGES {ch.database}.events")
