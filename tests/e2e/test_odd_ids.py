"""Every trace id ingest accepts can be read, verified, closed and exported on every
per-trace route, percent-encoded in the path (ids a path cannot name are refused at ingest:
tests/api/test_bad_input_and_auth.py)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.support.service import Api, eventually, uid, wait_event_count

pytestmark = pytest.mark.slow

#: characters a URL path must percent-encode, or that a route pattern might not match
ODD = ("{", "a{b}c", "a/b", "100%", "a b", "é中🙂", "...", "x?y#z")


async def test_odd_trace_ids_are_readable_on_every_route(stack):
    async with Api(stack.url) as api:
        org = uid("org")
        key = await api.org_key(org, ["traces:read", "traces:write", "admin"])
        prefix = uid("tr")
        ids = [f"{prefix}{odd}" for odd in ODD] + list(ODD[:1])
        events = [{"event_id": f"{i}-e", "trace_id": trace_id, "type": "trace_initiated", "class": "governance",
                   "actor_type": "agent", "actor_name": "bot", "agent_id": "agent-1"}
                  for i, trace_id in enumerate(ids)]
        status, body = await api.post("/v1/events", key, events)
        assert status == 202 and len(body["accepted"]) == len(ids) and body["rejected"] == [], body
        for trace_id in ids:
            path = quote(trace_id, safe="")
            verified = await wait_event_count(api, key, f"/api/v1/traces/{path}/verify", 1)
            assert verified["trace_id"] == trace_id and verified["valid"] is True
            status, gateway = await api.get(f"/v1/traces/{path}", key)
            assert status == 200 and gateway["trace_id"] == trace_id, gateway
            status, tenant = await api.get(f"/tenants/{org}/traces/{path}", key)
            assert status == 200 and tenant["traceId"] == trace_id, tenant
            assert (await api.post(f"/api/v1/traces/{path}/outcome", key, {"status": "success"}))[0] == 204

            async def closed(path: str = path):
                return await api.get(f"/api/v1/traces/{path}", key)
            status, detail = await eventually(closed, lambda r: r[1].get("final_outcome") == "executed")
            assert detail["id"] == trace_id
            status, export = await api.get(f"/api/v1/traces/{path}/export", key)
            assert status == 200 and export["trace"]["id"] == trace_id, export
            assert json.dumps(export["trace"]["id"]) == json.dumps(trace_id)
