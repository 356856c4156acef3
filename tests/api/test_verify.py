"""GET /api/v1/traces/{trace_id}/verify is scoped to the caller's org and validates its parameters."""

from __future__ import annotations

import pytest

from tests.support.service import uid

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_verify_is_scoped_to_the_callers_org(api, pipeline):
    owner, other = await api.org_key(uid("org")), await api.org_key(uid("org"))
    trace = uid("tr")
    assert (await api.post("/v1/events", owner, [{"trace_id": trace}]))[0] == 202
    await pipeline.flush()
    status, body = await api.get(f"/api/v1/traces/{trace}/verify", owner)
    assert status == 200 and body["valid"] is True and body["event_count"] == 1, body
    status, body = await api.get(f"/api/v1/traces/{trace}/verify", other)
    assert status == 404 and body["error"]["code"] == "not_found"
    assert (await api.get(f"/api/v1/traces/{uid('none')}/verify", owner))[0] == 404
    assert (await api.get(f"/api/v1/traces/{trace}/verify", owner, proof="maybe"))[0] == 400
    assert (await api.get(f"/api/v1/traces/{trace}/verify"))[0] == 401
    reader = await api.org_key(uid("org"), scopes=["audit:read"])
    assert (await api.get(f"/api/v1/traces/{trace}/verify", reader))[0] == 403
