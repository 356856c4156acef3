"""The seeds' read surfaces over one dataset: governance traces (seed 003), tenant traces
(seed 002) and the gateway event list with seed 001's filters. Field-by-field contract
checks, paging by cursor and by offset, every parameter's 400, and tenancy: another org's
key sees nothing of this org's data. The data set is posted to the in-process API and stored
by ``pipeline`` (sealed and written by the worker's code); outcomes as the chain agent decides them."""

from __future__ import annotations

import time
from typing import Any

import pytest
import pytest_asyncio

from schemas.lifecycle import Verdict
from schemas.timefmt import format_ms, parse_ms
from tests.support.conversation import ASSISTANT, SYSTEM, TOOL, TOOLS, USER
from tests.support.in_process import Pipeline
from tests.support.service import Api, all_events, uid

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = int(time.time() * 1000) - 3_600_000  # an hour ago: inside every default window
LONG = "v" * 20_000
AGENT = {"agent_id": "550e8400-agent", "agent_name": "deploy-agent", "authority_model": "delegated",
         "requested_operation": "deploy", "target_integration": "aws", "resource_scope": "production/*"}


def at(ms: int) -> str:
    return format_ms(ms)


def governance_events(trace: str, start: int, *types: str, **first: Any) -> list[dict]:
    events = []
    for i, kind in enumerate(types):
        e = {"event_id": f"{trace}-{i}", "trace_id": trace, "type": kind, "class": "governance",
             "occurred_at": at(start + i * 60_000), "actor_type": "agent", "actor_name": "deploy-agent",
             "description": f"{kind} happened", "status": "ok"}
        if i == 0:
            e |= AGENT | first
        if kind.startswith("approval_"):
            e["approval_request_id"] = "ap-1"
        if kind == "approval_requested":
            e["metadata"] = {"flag_reason": "Confidential data access"}
        if kind == "approval_granted":
            e |= {"actor_type": "human_reviewer", "actor_name": "Bob Smith",
                  "metadata": {"decision_note": "Approved for Q4 deployment"}}
        events.append(e)
    return events




def llm_events(trace: str, start: int) -> list[dict]:
    """Seed 002's example trace as two model calls; the second repeats the conversation."""
    common = {"trace_id": trace, "type": "GENERATION", "prompt_name": "customer_support_agent",
              "model": "claude-3-5-sonnet-20241022", "tags": ["production", "support"], "cost_currency": "USD"}
    return [
        common | {"event_id": f"{trace}-1", "name": "chat", "occurred_at": at(start), "end_time": at(start + 2000),
                  "model_config": {"provider": "anthropic", "temperature": 0.7, "max_tokens": 2048},
                  "messages": [SYSTEM, USER, ASSISTANT], "tools": TOOLS, "tool_choice": "auto",
                  "input_tokens": 100, "output_tokens": 400, "cost": 0.005, "user_id": "user-7",
                  "scores": {"helpfulness": 0.9}, "metadata": {"customer_id": "cust_123"}, "status": "STATUS_CODE_OK"},
        common | {"event_id": f"{trace}-2", "name": "chat", "occurred_at": at(start + 3000),
                  "end_time": at(start + 5000), "messages": [SYSTEM, USER, ASSISTANT, TOOL],
                  "output": {"message": "I found your recent orders and can help you...", "success": True},
                  "input_tokens": 150, "output_tokens": 600, "cost": 0.01,
                  "metadata": {"session_id": "sess_456", "note": LONG}, "status": "STATUS_CODE_OK"},
    ]


class Dataset:
    """One org's traces (and an intruder org with the same trace ids), stored and visible."""

    def __init__(self, org: str, key: str, intruder: str) -> None:
        self.org, self.key, self.intruder = org, key, intruder
        self.approved, self.blocked, self.denied, self.open = (uid("gov") for _ in range(4))
        self.llm, self.failing, self.unicode, self.shuffled = (uid("llm") for _ in range(4))


async def post(api: Api, key: str, events: list[dict]) -> None:
    status, body = await api.post("/v1/events", key, events)
    assert status == 202, body


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def data(api: Api, pipeline: Pipeline) -> Dataset:
    org, other = uid("org"), uid("org")
    d = Dataset(org, await api.org_key(org), await api.org_key(other))
    await post(api, d.key, governance_events(d.approved, T0, "trace_initiated", "identity_resolved",
                                             "policy_evaluated", "sensitive_operation_detected",
                                             "approval_requested", "approval_granted"))
    await post(api, d.key, governance_events(d.blocked, T0 + 1000, "trace_initiated", "operation_allowed",
                                             agent_id="agent-2", agent_name="audit-bot"))
    await post(api, d.key, governance_events(d.denied, T0 + 2000, "trace_initiated", "operation_denied"))
    await post(api, d.key, governance_events(d.open, T0 + 3000, "trace_initiated", "policy_evaluated"))
    await post(api, d.key, llm_events(d.llm, T0 + 4000))
    await post(api, d.key, [{"trace_id": d.failing, "type": "SPAN", "name": "summarize-docs",
                             "occurred_at": at(T0 + 5000), "model": "gpt-4o", "status": "STATUS_CODE_ERROR",
                             "tags": ["batch"], "scores": {"quality": 0.2}, "user_id": "user-9"}])
    await post(api, d.key, [{"trace_id": d.unicode, "type": "EVENT", "name": "résumé ✓ 日本語",
                             "prompt_name": "подсказка", "occurred_at": at(T0 + 6000),
                             "metadata": {"ключ": "значение ✓", "long": LONG}}])
    # out of order: the later event arrives first, in its own request
    await post(api, d.key, [{"event_id": f"{d.shuffled}-b", "trace_id": d.shuffled, "type": "SPAN",
                             "occurred_at": at(T0 + 9000)}])
    await post(api, d.key, [{"event_id": f"{d.shuffled}-a", "trace_id": d.shuffled, "type": "SPAN",
                             "occurred_at": at(T0 + 7000)}])
    # the intruder org writes a trace under one of our trace ids
    await post(api, d.intruder, [{"trace_id": d.approved, "type": "trace_initiated", "occurred_at": at(T0),
                                  "agent_id": "intruder"}])
    assert await pipeline.outcome(d.org, d.approved, "success") is Verdict.APPLIED
    assert await pipeline.outcome(d.org, d.blocked, "error") is Verdict.APPLIED
    _, listed = await api.get("/api/v1/traces", d.key, limit=100)
    counts = {d.approved: 8, d.blocked: 4, d.denied: 2, d.open: 2, d.llm: 2, d.failing: 1, d.unicode: 1,
              d.shuffled: 2}
    assert {t["id"]: t["event_count"] for t in listed["data"]} == counts
    return d


# --- governance traces (seed 003) ---------------------------------------------------------

async def test_governance_list_item_matches_the_seed(api, data):
    status, body = await api.get("/api/v1/traces", data.key, agent_id=AGENT["agent_id"],
                                 outcome="completed_with_approval")
    assert status == 200
    assert body["pagination"] == {"total": 1, "limit": 20, "offset": 0, "next_cursor": None}
    (item,) = body["data"]
    assert item == {"id": data.approved, **AGENT, "final_outcome": "completed_with_approval",
                    "started_at": at(T0), "completed_at": item["completed_at"],
                    "duration_ms": item["duration_ms"], "event_count": 8, "has_approval": True}
    assert item["duration_ms"] == parse_ms(item["completed_at"]) - T0 > 0


async def test_governance_list_filters_order_and_pages(api, data):
    _, everything = await api.get("/api/v1/traces", data.key)
    ids = [t["id"] for t in everything["data"]]
    assert ids == [data.shuffled, data.unicode, data.failing, data.llm, data.open, data.denied, data.blocked,
                   data.approved]  # newest first
    assert everything["pagination"]["total"] == 8
    outcomes = {t["id"]: t["final_outcome"] for t in everything["data"]}
    assert (outcomes[data.blocked], outcomes[data.denied], outcomes[data.open]) == ("blocked", "denied",
                                                                                  "in_progress")
    open_one = next(t for t in everything["data"] if t["id"] == data.open)
    assert (open_one["completed_at"], open_one["duration_ms"], open_one["has_approval"]) == (None, None, False)
    for params, want in [
        ({"outcome": "blocked"}, [data.blocked]),
        ({"outcome": "denied"}, [data.denied]),
        ({"outcome": "pending"}, [data.shuffled, data.unicode, data.failing, data.llm, data.open]),
        ({"agent_id": "agent-2"}, [data.blocked]),
        ({"agent_id": "nobody"}, []),
        ({"from": at(T0 + 1000), "to": at(T0 + 3000)}, [data.open, data.denied, data.blocked]),
        ({"agent_id": AGENT["agent_id"], "outcome": "in_progress"}, [data.open]),
    ]:
        status, body = await api.get("/api/v1/traces", data.key, **params)
        assert status == 200 and [t["id"] for t in body["data"]] == want, params
        assert body["pagination"]["total"] == len(want), params
    # offset pages and cursor pages give the same order
    by_offset = []
    for offset in (0, 3, 6):
        _, body = await api.get("/api/v1/traces", data.key, limit=3, offset=offset)
        assert body["pagination"] == body["pagination"] | {"total": 8, "limit": 3, "offset": offset}
        by_offset += [t["id"] for t in body["data"]]
    by_cursor, cursor = [], None
    while True:
        _, body = await api.get("/api/v1/traces", data.key, limit=3, **({"cursor": cursor} if cursor else {}))
        by_cursor += [t["id"] for t in body["data"]]
        cursor = body["pagination"]["next_cursor"]
        if cursor is None:
            break
    assert by_offset == by_cursor == ids


async def test_governance_detail_matches_the_seed(api, data):
    status, body = await api.get(f"/api/v1/traces/{data.approved}", data.key)
    assert status == 200
    assert {k: body[k] for k in (*AGENT, "parent_trace_id", "final_outcome", "started_at")} == {
        **AGENT, "parent_trace_id": None, "final_outcome": "completed_with_approval", "started_at": at(T0)}
    assert [e["event_type"] for e in body["events"]] == [
        "trace_initiated", "identity_resolved", "policy_evaluated", "sensitive_operation_detected",
        "approval_requested", "approval_granted", "operation_executed", "trace_closed"]
    first = body["events"][0]
    assert first == {"id": f"{data.approved}-0", "event_type": "trace_initiated", "actor_type": "agent",
                     "actor_name": "deploy-agent", "description": "trace_initiated happened", "status": "ok",
                     "timestamp": at(T0), "policy_version": None, "approval_request_id": None,
                     "metadata": None, "integrity_hash": first["integrity_hash"]}
    assert first["integrity_hash"].startswith("sha256:") and len(first["integrity_hash"]) == 71
    assert body["approval_requests"] == [{
        "id": "ap-1", "status": "approved", "flag_reason": "Confidential data access", "approver_name": "Bob Smith",
        "decision_note": "Approved for Q4 deployment", "decided_at": at(T0 + 5 * 60_000)}]
    assert body["duration_ms"] == parse_ms(body["completed_at"]) - T0 > 0
    # the list and the detail agree on the trace's fields
    _, listed = await api.get("/api/v1/traces", data.key, agent_id=AGENT["agent_id"],
                              outcome="completed_with_approval")
    assert {k: v for k, v in listed["data"][0].items() if k not in ("event_count", "has_approval")} == {
        k: body[k] for k in listed["data"][0] if k not in ("event_count", "has_approval")}


async def test_an_out_of_order_trace_starts_at_its_first_link(api, data):
    _, body = await api.get(f"/api/v1/traces/{data.shuffled}", data.key)
    assert [e["timestamp"] for e in body["events"]] == [at(T0 + 9000), at(T0 + 7000)]  # arrival order
    assert body["started_at"] == at(T0 + 9000)


# --- tenant traces (seed 002) -------------------------------------------------------------

async def test_tenant_list_matches_the_seed(api, data):
    status, body = await api.get(f"/tenants/{data.org}/traces", data.key, search="customer_support")
    assert status == 200
    assert {k: body[k] for k in ("page", "per_page", "has_more")} == {"page": 1, "per_page": 20, "has_more": False}
    assert body["data"] == [{
        "traceId": data.llm, "promptName": "customer_support_agent", "status": "completed",
        "tags": ["production", "support"], "inputTokens": 250, "outputTokens": 1000, "totalTokens": 1250,
        "cost": 0.015, "duration": 5000,
        "modelConfig": {"provider": "anthropic", "temperature": 0.7, "max_tokens": 2048,
                        "model": "claude-3-5-sonnet-20241022"},
        "createdAt": at(T0 + 4000)}]
    _, by_model = await api.get(f"/tenants/{data.org}/traces", data.key, search="GPT-4")
    assert [(t["traceId"], t["status"], t["promptName"]) for t in by_model["data"]] == [
        (data.failing, "error", "summarize-docs")]
    _, by_unicode = await api.get(f"/tenants/{data.org}/traces", data.key, search="ПОДСКАЗ")
    assert [t["traceId"] for t in by_unicode["data"]] == [data.unicode]


async def test_tenant_pages(api, data):
    seen = []
    for page in (1, 2, 3):
        _, body = await api.get(f"/tenants/{data.org}/traces", data.key, page=page, per_page=3)
        assert (body["page"], body["per_page"], body["has_more"]) == (page, 3, page < 3)
        seen += [t["traceId"] for t in body["data"]]
    _, everything = await api.get("/api/v1/traces", data.key)
    assert seen == [t["id"] for t in everything["data"]]
    _, empty = await api.get(f"/tenants/{data.org}/traces", data.key, page=9, per_page=3)
    assert (empty["data"], empty["has_more"]) == ([], False)


async def test_tenant_detail_matches_the_seed(api, data):
    status, body = await api.get(f"/tenants/{data.org}/traces/{data.llm}", data.key)
    assert status == 200
    assert body == {
        "traceId": data.llm, "promptName": "customer_support_agent", "messages": [SYSTEM, USER, ASSISTANT, TOOL],
        "output": {"message": "I found your recent orders and can help you...", "success": True},
        "inputTokens": 250, "outputTokens": 1000, "totalTokens": 1250, "cost": 0.015, "costCurrency": "USD",
        "duration": 5000, "modelConfig": {"provider": "anthropic", "temperature": 0.7, "max_tokens": 2048,
                                          "model": "claude-3-5-sonnet-20241022"},
        "tools": TOOLS, "toolChoice": "auto", "status": "completed", "tags": ["production", "support"],
        "metadata": {"customer_id": "cust_123", "session_id": "sess_456", "note": LONG},
        "createdAt": at(T0 + 4000), "timestamp": T0 + 4000}
    _, uni = await api.get(f"/tenants/{data.org}/traces/{data.unicode}", data.key)
    assert uni["metadata"] == {"ключ": "значение ✓", "long": LONG} and uni["promptName"] == "подсказка"
    assert (uni["messages"], uni["output"], uni["modelConfig"], uni["costCurrency"]) == ([], None, None, None)


# --- gateway event list with seed 001's filters --------------------------------------------

async def test_gateway_list_takes_seed_001_filters(api, pipeline, data):
    def ids(events):
        return sorted({e["trace_id"] for e in events})
    cases = [
        ({"type": "GENERATION"}, [data.llm]),
        ({"type": "all", "userId": "user-9"}, [data.failing]),
        ({"model": "gpt-4o"}, [data.failing]),
        ({"status": "STATUS_CODE_ERROR"}, [data.failing]),
        ({"name": "RÉSUMÉ"}, [data.unicode]),
        ({"minScore": "0.8"}, [data.llm]),
        ({"maxScore": "0.5"}, [data.failing]),
        ({"tag": "support"}, [data.llm]),
        ({"metadata_key": "customer_id", "metadata_value": "cust_123"}, [data.llm]),
        ({"metadata_key": "ключ", "metadata_value": "значение ✓"}, [data.unicode]),
        ({"startDate": at(T0 + 5000), "endDate": at(T0 + 6000)}, sorted([data.failing, data.unicode])),
    ]
    for params, want in cases:
        assert ids(await all_events(api, data.key, **params)) == want, params
    unset = await all_events(api, data.key, status="STATUS_CODE_UNSET", type="SPAN")
    assert ids(unset) == [data.shuffled]
    # seed 001's 30-day default window applies when its filters are used
    old = [{"trace_id": uid("old"), "type": "GENERATION", "model": "gpt-4o",
            "occurred_at": at(T0 - 40 * 86_400_000)}]
    await post(api, data.key, old)
    await pipeline.flush()
    old_ones = await all_events(api, data.key, type="GENERATION", since=at(T0 - 41 * 86_400_000))
    assert old[0]["trace_id"] in ids(old_ones)
    assert old[0]["trace_id"] not in ids(await all_events(api, data.key, model="gpt-4o"))


# --- every parameter's 400, and tenancy ----------------------------------------------------

@pytest.mark.parametrize("path, params, field", [
    ("/api/v1/traces", {"limit": "0"}, "limit"),
    ("/api/v1/traces", {"limit": "101"}, "limit"),
    ("/api/v1/traces", {"offset": "-1"}, "offset"),
    ("/api/v1/traces", {"offset": "10001"}, "offset"),
    ("/api/v1/traces", {"outcome": "done"}, "outcome"),
    ("/api/v1/traces", {"from": "yesterday"}, "from"),
    ("/api/v1/traces", {"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
    ("/api/v1/traces", {"agent": "x"}, "agent"),
    ("/api/v1/traces", {"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
    ("/api/v1/traces", {"cursor": "WyJ2MSIsWzEsIngiXV0", "offset": "20"}, "cursor"),
    ("/api/v1/traces", {"agent_id": ""}, "agent_id"),
    ("/tenants/{org}/traces", {"per_page": "0"}, "per_page"),
    ("/tenants/{org}/traces", {"per_page": "101"}, "per_page"),
    ("/tenants/{org}/traces", {"page": "0"}, "page"),
    ("/tenants/{org}/traces", {"page": "102", "per_page": "100"}, "page"),
    ("/tenants/{org}/traces", {"search": "x" * 257}, "search"),
    ("/tenants/{org}/traces", {"sort": "asc"}, "sort"),
    ("/tenants/{org}/traces/{trace}", {"x": "1"}, "x"),
    ("/api/v1/traces/{trace}", {"x": "1"}, "x"),
    ("/v1/traces", {"status": "OK"}, "status"),
    ("/v1/traces", {"minScore": "high"}, "minScore"),
    ("/v1/traces", {"maxScore": "nan"}, "maxScore"),
    ("/v1/traces", {"metadata_key": "k"}, "metadata_value"),
    ("/v1/traces", {"metadata_value": "v"}, "metadata_key"),
    ("/v1/traces", {"since": "2026-01-01T00:00:00Z", "startDate": "2026-01-01T00:00:00Z"}, "startDate"),
    ("/v1/traces", {"startDate": "2026-02-01T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"}, "startDate"),
])
async def test_bad_parameters_are_400_naming_them(api, data, path, params, field):
    status, body = await api.get(path.format(org=data.org, trace=data.llm), data.key, **params)
    assert status == 400 and body["error"]["details"]["field"] == field, body
    if field in ("offset", "page") and params.get(field, "0").lstrip("-").isdigit() and int(params[field]) > 100:
        assert "cursor" in body["error"]["message"]


async def test_another_org_sees_nothing(api, data):
    _, listed = await api.get("/api/v1/traces", data.intruder, limit=100)
    assert [t["id"] for t in listed["data"]] == [data.approved]  # only its own trace under that id
    assert listed["data"][0]["agent_id"] == "intruder" and listed["pagination"]["total"] == 1
    _, detail = await api.get(f"/api/v1/traces/{data.approved}", data.intruder)
    assert [e["id"] for e in detail["events"]] != [e["id"] for e in (await api.get(
        f"/api/v1/traces/{data.approved}", data.key))[1]["events"]]
    assert (await api.get(f"/api/v1/traces/{data.llm}", data.intruder))[0] == 404
    # the tenant in the path must be the key's org: another tenant is 404, existing or not
    for path in (f"/tenants/{data.org}/traces", f"/tenants/{data.org}/traces/{data.llm}",
                 "/tenants/no-such-tenant/traces"):
        status, body = await api.get(path, data.intruder)
        assert status == 404 and body["error"]["code"] == "not_found", path
    status, own = await api.get(f"/tenants/{(await whoami(api, data.intruder))}/traces", data.intruder)
    assert status == 200 and [t["traceId"] for t in own["data"]] == [data.approved]
    assert (await api.get(f"/tenants/{data.org}/traces/{data.llm}", data.key))[0] == 200
    assert await all_events(api, data.intruder, type="GENERATION") == []
    assert (await api.get("/api/v1/traces", None))[0] == 401


async def whoami(api: Api, key: str) -> str:
    """The org of a key, from a trace it can read."""
    _, body = await api.get("/v1/traces", key, limit=1)
    return body["events"][0]["org_id"]
