"""Chains end to end: events posted over HTTP come back verifiable; retries add no link; the
audit log verifies over a time range, per org. Verify's tenancy and parameters of a trace:
tests/api/test_verify.py."""

from __future__ import annotations

import pytest

from tests.support.service import Api, eventually, uid, wait_event_count

pytestmark = pytest.mark.slow


async def verified(api: Api, key: str, trace_id: str, count: int) -> dict:
    return await wait_event_count(api, key, f"/api/v1/traces/{trace_id}/verify", count)


async def test_posted_trace_verifies_and_retries_add_no_link(stack):
    async with Api(stack.url) as api:
        key = await api.org_key(uid("org"))
        trace = uid("tr")
        first = [{"event_id": f"e{i}", "trace_id": trace, "metadata": {"i": str(i)}, "input": {"q": [i]}}
                 for i in range(5)]
        assert (await api.post("/v1/events", key, first))[0] == 202
        await verified(api, key, trace, 5)
        # a producer retry of e3 and e4 with two new events; only the new ones are linked
        again = first[3:] + [{"event_id": f"e{i}", "trace_id": trace} for i in (5, 6)]
        assert (await api.post("/v1/events", key, again))[0] == 202
        body = await verified(api, key, trace, 7)
        assert body["trace_id"] == trace and body["valid"] is True and body["event_count"] == 7
        assert "first_invalid_event" not in body and body["verified_at"].endswith("Z")
        status, detail = await api.get(f"/v1/traces/{trace}", key)
        assert sorted(e["event_id"] for e in detail["events"]) == [f"e{i}" for i in range(7)]


async def test_audit_log_verifies_over_a_time_range_per_org(stack):
    async with Api(stack.url) as api:
        key, other = await api.org_key(uid("org")), await api.org_key(uid("org"))
        entries = [{"id": f"a{i}", "actor": "alice", "action": "key.created", "target": f"k{i}",
                    "metadata": {"n": str(i)}, "occurred_at": f"2026-11-20T10:00:0{i}.000Z"} for i in range(6)]
        assert (await api.post("/v1/audit/events", key, entries[:3]))[0] == 202
        assert (await api.post("/v1/audit/events", key, entries[3:]))[0] == 202

        async def probe():
            return await api.get("/v1/audit/verify", key)
        # seq 1 is the key's own api_key.created entry, written before the six
        _, whole = await eventually(probe, lambda r: r[0] == 200 and r[1]["event_count"] >= 7)
        assert whole["valid"] is True and (whole["first_seq"], whole["last_seq"]) == (1, 7)
        status, span = await api.get("/v1/audit/verify", key, **{"from": "2026-11-20T10:00:02.000Z",
                                                                  "to": "2026-11-20T10:00:03.000Z"})
        assert status == 200 and span["valid"] is True and (span["first_seq"], span["last_seq"]) == (4, 5)
        _, theirs = await eventually(lambda: api.get("/v1/audit/verify", other),
                                     lambda r: r[0] == 200 and r[1]["event_count"] >= 1)
        assert theirs["event_count"] == 1 and (theirs["first_seq"], theirs["last_seq"]) == (1, 1)  # its key only
        status, empty = await api.get("/v1/audit/verify", other, to="2026-11-21T00:00:00Z")
        assert status == 200 and empty["event_count"] == 0 and empty["first_seq"] is None
        for params, field in (({"from": "yesterday"}, "from"), ({"to": "2026-13-01T00:00:00Z"}, "to"),
                              ({"from": "2026-11-21T00:00:00Z", "to": "2026-11-20T00:00:00Z"}, "from"),
                              ({"limit": "3"}, "limit")):
            status, body = await api.get("/v1/audit/verify", key, **params)
            assert status == 400 and body["error"]["details"]["field"] == field, body
        tracer = await api.org_key(uid("org"), scopes=["traces:read"])
        assert (await api.get("/v1/audit/verify", tracer))[0] == 403
