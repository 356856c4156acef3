"""Outcomes (seed 003): the chain agent decides each command; final_outcome rules; approval
expiry by the worker's timer; a trace.completed notice for webhooks."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer

from schemas.codec import decode
from schemas.timefmt import format_ms
from schemas.topics import WEBHOOK_EVENTS
from tests.support.service import Api, Service, eventually, uid, wait_event_count

pytestmark = pytest.mark.slow


def governance(trace: str, *types: str, approval: str | None = None) -> list[dict]:
    now = format_ms(int(time.time() * 1000))
    return [{"event_id": f"{trace}-{i}", "trace_id": trace, "type": t, "occurred_at": now,
             "approval_request_id": approval if t.startswith("approval_") else None}
            for i, t in enumerate(types)]


async def started(api: Api, key: str, *types: str, approval: str | None = None) -> str:
    """A trace of ``types`` events, visible and verified."""
    trace = uid("tr")
    assert (await api.post("/v1/events", key, governance(trace, *types, approval=approval)))[0] == 202
    await wait_event_count(api, key, f"/api/v1/traces/{trace}/verify", len(types))
    return trace


async def closed(api: Api, key: str, trace: str, count: int) -> list[dict]:
    """The trace's events (in time order) once ``count`` are stored; the chain must verify."""
    body = await wait_event_count(api, key, f"/api/v1/traces/{trace}/verify", count)
    assert body["valid"] is True and body["event_count"] == count, body
    status, detail = await api.get(f"/v1/traces/{trace}", key)
    assert status == 200
    return detail["events"]


async def outcome(api: Api, key: str | None, trace: str, body: object) -> tuple[int, object]:
    return await api.post(f"/api/v1/traces/{trace}/outcome", key, body)


async def test_outcome_closes_the_trace_once(stack):
    async with Api(stack.url) as api:
        key = await api.org_key(uid("org"))
        trace = await started(api, key, "trace_initiated", "policy_evaluated", "operation_allowed")
        status, body = await outcome(api, key, trace, {"status": "success", "metadata": {"deployment_id": "d-1",
                                                                                          "attempt": 2}})
        assert (status, body) == (204, None)
        events = await closed(api, key, trace, 5)
        assert [e["type"] for e in events[3:]] == ["operation_executed", "trace_closed"]
        assert events[3]["metadata"] == {"deployment_id": "d-1", "attempt": "2"} and events[3]["status"] == "success"
        assert events[4]["outcome"] == "executed" and events[4]["actor_type"] == "system"
        status, body = await outcome(api, key, trace, {"status": "error"})
        assert status == 409 and body["error"]["code"] == "conflict" and "executed" in body["error"]["message"]


async def test_a_recorded_outcome_is_in_the_audit_log_and_a_refused_one_is_not(stack):
    async with Api(stack.url) as api:
        org = uid("org")
        key = await api.org_key(org)
        trace = await started(api, key, "trace_initiated", "operation_allowed")
        assert (await outcome(api, key, trace, {"status": "error"}))[0] == 204
        assert (await outcome(api, key, trace, {"status": "success"}))[0] == 409
        assert (await outcome(api, key, uid("none"), {"status": "success"}))[0] == 404

        async def exported() -> tuple[int, object]:
            return await api.post("/v1/audit/export", key, {})

        _, rows = await eventually(exported, lambda r: r[0] == 200 and any(
            e["action"] == "trace.outcome_recorded" for e in r[1]))
        (entry,) = [e for e in rows if e["action"] == "trace.outcome_recorded"]
        assert entry["orgId"] == org and entry["actor"] == key.split("_")[1] and entry["target"] == trace
        assert entry["metadata"]["status"] == "error" and entry["id"] == f"outcome.{entry['metadata']['request_id']}"
        # the export itself is audited: a later export shows the one before
        _, rows = await eventually(exported, lambda r: any(e["action"] == "audit.exported" for e in r[1]))
        assert {e["action"] for e in rows} >= {"api_key.created", "trace.outcome_recorded", "audit.exported"}
        assert len([e for e in rows if e["action"] == "trace.outcome_recorded"]) == 1


async def test_final_outcome_follows_approvals_errors_and_denials(stack):
    async with Api(stack.url) as api:
        key = await api.org_key(uid("org"))
        approved = await started(api, key, "trace_initiated", "approval_requested", "approval_granted",
                                 approval="ap-1")
        failed = await started(api, key, "trace_initiated", "operation_allowed")
        denied = await started(api, key, "trace_initiated", "policy_evaluated", "operation_denied")
        assert (await outcome(api, key, approved, {"status": "success"}))[0] == 204
        assert (await outcome(api, key, failed, {"status": "error"}))[0] == 204
        status, body = await outcome(api, key, denied, {"status": "success"})
        assert status == 409 and "denied" in body["error"]["message"]
        assert (await closed(api, key, approved, 5))[-1]["outcome"] == "completed_with_approval"
        last_two = (await closed(api, key, failed, 4))[-2:]
        assert [(e["type"], e["outcome"]) for e in last_two] == [("operation_failed", None),
                                                                 ("trace_closed", "blocked")]


async def test_racing_outcomes_have_exactly_one_winner(stack):
    async with Api(stack.url) as api:
        key = await api.org_key(uid("org"))
        trace = await started(api, key, "trace_initiated")
        answers = await asyncio.gather(*(outcome(api, key, trace, {"status": s})
                                         for s in ("success", "error") * 4))
        assert sorted(status for status, _ in answers) == [204] + [409] * 7
        events = await closed(api, key, trace, 3)
        assert [e["type"] for e in events].count("trace_closed") == 1


async def test_outcome_errors_name_the_field_and_hide_other_orgs(stack):
    async with Api(stack.url) as api:
        key, other = await api.org_key(uid("org")), await api.org_key(uid("org"))
        trace = await started(api, key, "trace_initiated")
        for body, field in (({}, "status"), ({"status": "ok"}, "status"), ({"status": "success", "extra": 1}, "extra"),
                            ({"status": "success", "metadata": [1]}, "metadata")):
            status, answer = await outcome(api, key, trace, body)
            assert status == 400 and answer["error"]["details"]["field"] == field, answer
        status, answer = await api.request("POST", f"/api/v1/traces/{trace}/outcome", key, data=b"{nope")
        assert status == 400 and answer["error"]["code"] == "invalid_json"
        assert (await outcome(api, key, uid("none"), {"status": "success"}))[0] == 404
        assert (await outcome(api, other, trace, {"status": "success"}))[0] == 404  # another org's trace
        assert (await outcome(api, None, trace, {"status": "success"}))[0] == 401
        reader = await api.org_key(uid("org"), scopes=["traces:read"])
        assert (await outcome(api, reader, trace, {"status": "success"}))[0] == 403
        assert (await outcome(api, key, trace, {"status": "success"}))[0] == 204  # nothing above closed it


async def test_undecided_approval_expires_the_trace(stack):
    async with Api(stack.url) as api:
        key = await api.org_key(uid("org"))
        pending = await started(api, key, "trace_initiated", "approval_requested", approval="ap-late")
        decided = await started(api, key, "trace_initiated", "approval_requested", "approval_denied",
                                approval="ap-in-time")
        events = await closed(api, key, pending, 4)  # the TTL is 3 s on the test stack
        assert [(e["type"], e["outcome"]) for e in events[2:]] == [("approval_expired", None),
                                                                    ("trace_closed", "expired")]
        assert events[2]["approval_request_id"] == "ap-late"
        assert (await outcome(api, key, pending, {"status": "success"}))[0] == 409
        assert (await outcome(api, key, decided, {"status": "success"}))[0] == 204  # decided in time: not expired
        assert (await closed(api, key, decided, 5))[-1]["outcome"] == "completed_with_approval"


async def test_closing_a_trace_notifies_webhooks_once_per_trace(stack: Service):
    # read from the topic's end, positioned before the traces close: the stack trims what the
    # dispatcher committed every 2 s, so a reader starting from the earliest record could reach a
    # notice only after it was trimmed (the session's other tests leave a backlog before it)
    consumer = AIOKafkaConsumer(WEBHOOK_EVENTS, bootstrap_servers=stack.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        await eventually(lambda: asyncio.sleep(0, consumer.assignment()), bool)
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
        async with Api(stack.url) as api:
            org = uid("org")
            key = await api.org_key(org)
            traces = [await started(api, key, "trace_initiated") for _ in range(2)]
            for trace in traces:
                assert (await outcome(api, key, trace, {"status": "success"}))[0] == 204
        notices: dict[str, dict] = {}

        async def probe() -> dict:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    datum = decode(record.value).datum
                    if datum["org_id"] == org:
                        notices[datum["id"]] = datum
            return notices
        await eventually(probe, lambda n: len(n) == 2)
    finally:
        await consumer.stop()
    assert {n["type"] for n in notices.values()} == {"trace.completed"}
    assert sorted(notices) == sorted(f"trace.completed:{org}:{t}" for t in traces)
