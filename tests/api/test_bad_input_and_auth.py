"""Every bad request gets a JSON error naming what is wrong; keys, scopes and tenancy hold."""

from __future__ import annotations

import uuid

import pytest

from tests.support.service import ADMIN_KEY, Api, uid

pytestmark = pytest.mark.asyncio(loop_scope="session")


def org() -> str:
    return f"org-{uuid.uuid4().hex[:8]}"


async def raw_post(api: Api, path: str, key: str, data: bytes) -> tuple[int, dict]:
    return await api.request("POST", path, key, data=data)


async def test_malformed_json_is_400(api):
    key = await api.org_key(org())
    status, body = await raw_post(api, "/v1/events", key, b'[{"trace_id": ')
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = await raw_post(api, "/v1/events", key, b'{"trace_id": "t"}')
    assert status == 400 and body["error"]["details"]["field"] == "(body)"
    status, body = await raw_post(api, "/v1/events", key, b"[]")
    assert status == 400


async def test_values_json_allows_but_no_event_can_hold_are_rejected_by_field(api):
    """A lone surrogate escape, an integer beyond any double, nesting deeper than the parser goes."""
    key = await api.org_key(org())
    body = b'[{"trace_id": "t", "event_id": "ok"}, {"trace_id": "t", "name": "\\ud800"}, ' \
           b'{"trace_id": "t", "cost": 1' + b"0" * 400 + b"}]"
    status, reply = await raw_post(api, "/v1/events", key, body)
    assert status == 202 and reply["accepted"] == ["ok"], reply
    assert [(r["index"], r["field"]) for r in reply["rejected"]] == [(1, "name"), (2, "cost")]
    status, reply = await raw_post(api, "/v1/events", key, b"[" * 100_000)
    assert status == 400 and reply["error"]["code"] == "invalid_json", reply


async def test_oversize_body_and_batch_are_413(api):
    key = await api.org_key(org())
    big = b'[{"trace_id": "t", "input": "' + b"x" * (11 * 1024 * 1024) + b'"}]'
    status, body = await raw_post(api, "/v1/events", key, big)
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    many = [{"trace_id": "t"}] * 5001
    status, body = await api.post("/v1/events", key, many)
    assert status == 413 and body["error"]["details"]["max_events"] == 5000


async def test_ids_a_path_cannot_name_are_rejected_at_ingest(api):
    key = await api.org_key(uid("org"))
    events = [{"trace_id": "ok-" + uid("tr"), "event_id": uid("e")}, {"trace_id": "."}, {"trace_id": ".."},
              {"trace_id": "tr\n1"}, {"trace_id": "t", "event_id": "e\x00"}, {"trace_id": "t", "parent_id": "\x7f"}]
    status, body = await api.post("/v1/events", key, events)
    assert status == 202 and len(body["accepted"]) == 1, body
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "trace_id"), (2, "trace_id"), (3, "trace_id"), (4, "event_id"), (5, "parent_id")]


@pytest.mark.parametrize("params, field", [
    ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"), ({"limit": "abc"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"cursor": "WyJ2MSIsIngiXQ"}, "cursor"),
    ({"since": "last tuesday"}, "since"), ({"colour": "red"}, "colour"),
    ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
])
async def test_bad_list_parameters_name_the_parameter(api, params, field):
    key = await api.org_key(org())
    status, body = await api.get("/v1/traces", key, **params)
    assert status == 400, body
    assert body["error"]["details"]["field"] == field


async def test_missing_invalid_and_revoked_keys_are_401(api):
    assert (await api.get("/v1/traces"))[0] == 401
    assert (await api.get("/v1/traces", "th_nope_nope"))[0] == 401
    assert (await api.get("/v1/traces", "garbage"))[0] == 401
    status, created = await api.post("/v1/admin/keys", ADMIN_KEY,
                                      {"org_id": org(), "scopes": ["traces:read"], "name": "tmp"})
    key = created["key"]
    assert (await api.get("/v1/traces", key))[0] == 200
    assert (await api.request("DELETE", f"/v1/admin/keys/{created['key_id']}", ADMIN_KEY))[0] == 200
    assert (await api.get("/v1/traces", key))[0] == 401  # the revoking process forgets the key at once


async def test_scopes_are_enforced(api):
    o = org()
    reader = await api.org_key(o, ["traces:read"])
    writer = await api.org_key(o, ["traces:write"])
    assert (await api.post("/v1/events", reader, [{"trace_id": "t"}]))[0] == 403
    status, body = await api.get("/v1/traces", writer)
    assert status == 403 and body["error"]["details"]["scope"] == "traces:read"
    assert (await api.get("/v1/traces", ADMIN_KEY))[0] == 403  # the operator key has no org


async def test_key_creation_validates_and_is_admin_only(api):
    for body, field in [({"scopes": ["traces:read"]}, "org_id"),
                        ({"org_id": "a", "scopes": ["root"]}, "scopes"),
                        ({"org_id": "a", "scopes": []}, "scopes"),
                        ({"org_id": "a", "scopes": ["traces:read"], "extra": 1}, "extra")]:
        status, resp = await api.post("/v1/admin/keys", ADMIN_KEY, body)
        assert status == 400 and resp["error"]["details"]["field"] == field
    org_key = await api.org_key(org(), ["traces:read", "traces:write"])
    status, _ = await api.post("/v1/admin/keys", org_key, {"org_id": "x", "scopes": ["traces:read"]})
    assert status == 403
    status, listed = await api.get("/v1/admin/keys", ADMIN_KEY, org_id="nobody")
    assert status == 200 and listed["keys"] == []
    # an org's admin key manages its own org's keys only: another org's keys are neither listed nor touched
    mine, theirs = org(), org()
    admin = await api.org_key(mine, ["admin"])
    status, their_key = await api.post("/v1/admin/keys", ADMIN_KEY, {"org_id": theirs, "scopes": ["traces:read"]})
    assert status == 201
    assert (await api.get("/v1/admin/keys", admin, org_id=theirs))[0] == 403
    assert (await api.post("/v1/admin/keys", admin, {"org_id": theirs, "scopes": ["traces:read"]}))[0] == 403
    status, listed = await api.get("/v1/admin/keys", admin)
    assert status == 200 and [k["org_id"] for k in listed["keys"]] == [mine], listed
    status, body = await api.request("DELETE", f"/v1/admin/keys/{their_key['key_id']}", admin)
    assert status == 404 and body["error"]["code"] == "not_found"
    assert (await api.get("/v1/traces", their_key["key"]))[0] == 200  # still valid


async def test_another_orgs_data_never_leaks(api, pipeline):
    a, b = org(), org()
    key_a, key_b = await api.org_key(a), await api.org_key(b)
    trace = f"shared-{uuid.uuid4().hex[:6]}"
    await api.post("/v1/events", key_a, [{"event_id": "secret", "trace_id": trace, "metadata": {"pw": "x"}}])
    await pipeline.flush()
    assert (await api.get(f"/v1/traces/{trace}", key_a))[0] == 200
    status, body = await api.get(f"/v1/traces/{trace}", key_b)
    assert status == 404 and body["error"]["code"] == "not_found"  # 404, not 403: no existence leak
    status, body = await api.get("/v1/traces", key_b)
    assert status == 200 and body["events"] == []
    # the same trace id in org b is org b's own trace
    await api.post("/v1/events", key_b, [{"event_id": "mine", "trace_id": trace}])
    await pipeline.flush()
    _, body = await api.get(f"/v1/traces/{trace}", key_b)
    assert [e["event_id"] for e in body["events"]] == ["mine"]
    _, body = await api.get(f"/v1/traces/{trace}", key_a)
    assert [e["event_id"] for e in body["events"]] == ["secret"]


async def test_unknown_route_is_json_404(api):
    status, body = await api.get("/v1/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"
