"""Hostile parameters, bodies and ids through HTTP against the in-process API (tests/api/conftest.py,
real chdb): every one answers a 4xx naming what is wrong, never a 500 or the router's 404."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient
from yarl import URL

from api.body import MAX_DEPTH
from api.routes.governance import MAX_OUTCOME_METADATA_BYTES
from tests.support.service import ADMIN_KEY

ORG = "acme-hostile"


pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def key(client: TestClient) -> str:
    r = await client.post("/v1/admin/keys", json={"org_id": ORG, "name": "t", "scopes": [
        "traces:read", "traces:write", "audit:read", "admin"]}, headers=_auth(ADMIN_KEY))
    assert r.status == 201, await r.text()
    return (await r.json())["key"]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _call(client: TestClient, method: str, path: str, key: str, data: bytes | None = None) -> tuple[int, Any]:
    """``path`` is sent as written (already percent-encoded)."""
    r = await client.request(method, URL(path, encoded=True), data=data, headers=_auth(key))
    return r.status, await r.json(content_type=None)


def _cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(["v1", key]).encode()).decode().rstrip("=")


LISTS = ("/v1/traces", "/api/v1/traces", f"/tenants/{ORG}/traces")


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("position", [
    [10**20, "x"], [-10**15, "x"], [-62_135_596_800_000, "x"],  # year 1
    [253_402_300_800_000, "x"], [2**63, "x"], [True, "x"], [1, "\ud800"], [1, "x" * 257], [1, ""],
])
async def test_cursor_out_of_range_is_400_naming_cursor(client, key, path, position):
    status, body = await _call(client, "GET", f"{path}?cursor={_cursor(position)}", key)
    assert status == 400 and body["error"]["details"]["field"] == "cursor", body


async def test_deeply_nested_cursor_is_400(client, key):
    deep = base64.urlsafe_b64encode(b'["v1",' + b"[" * 3000 + b"]" * 3000 + b"]").decode()
    status, body = await _call(client, "GET", f"/v1/traces?cursor={deep}", key)
    assert status == 400 and body["error"]["details"]["field"] == "cursor", body


TIME_PARAMS = [("/v1/traces", "since"), ("/v1/traces", "until"), ("/v1/traces", "startDate"),
               ("/v1/traces", "endDate"), ("/api/v1/traces", "from"), ("/api/v1/traces", "to"),
               ("/v1/audit/verify", "from"), ("/v1/audit/verify", "to"), ("/v1/metrics", "since"),
               ("/v1/metrics", "until")]


@pytest.mark.parametrize("path, param", TIME_PARAMS)
@pytest.mark.parametrize("value", ["0001-01-01", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00%2B14:00",
                                   "1969-12-31T23:59:59.999Z", "2300-01-01T00:00:00Z"])
async def test_time_outside_the_supported_range_is_400_naming_it(client, key, path, param, value):
    status, body = await _call(client, "GET", f"{path}?{param}={value}", key)
    assert status == 400 and body["error"]["details"]["field"] == param, body
    assert "1970-01-01T00:00:00Z .. 2299-12-31T23:59:59.999Z" in body["error"]["message"], body


@pytest.mark.parametrize("path, param", TIME_PARAMS)
@pytest.mark.parametrize("value", ["1970-01-01T00:00:00Z", "2299-12-31T23:59:59.999Z"])
async def test_time_at_the_range_ends_is_served(client, key, path, param, value):
    status, body = await _call(client, "GET", f"{path}?{param}={value}", key)
    if (path, param, value[:4]) == ("/v1/audit/verify", "from", "2299"):  # after ``to``, which defaults to now
        assert status == 400 and body["error"]["details"]["field"] == "from", body
    else:
        assert status == 200, body


async def test_default_windows_before_1970_start_at_1970(client, key):
    status, body = await _call(client, "GET", "/v1/metrics?until=1970-01-01T05:00:00Z", key)
    assert status == 200 and body["since"] == "1970-01-01T00:00:00.000Z", body
    status, body = await _call(client, "GET", "/v1/traces?endDate=1970-01-02T00:00:00Z&model=m", key)
    assert status == 200 and body["events"] == [], body


def _outcome(metadata: bytes) -> bytes:
    return b'{"status": "success", "metadata": ' + metadata + b"}"


@pytest.mark.parametrize("raw, field", [
    (_outcome(b'{"a": NaN}'), "metadata.a"),
    (_outcome(b'{"a": 1e400}'), "metadata.a"),
    (_outcome(b'{"a": [1, -Infinity]}'), "metadata.a[1]"),
    (_outcome(b'{"a": "\\ud800"}'), "metadata.a"),
    (_outcome(b'{"\\ud800": "a"}'), "metadata.\\ud800"),
    (_outcome(b'{"a": "' + b"x" * (5 * 1024 * 1024) + b'"}'), "metadata.a"),
    (_outcome(b'{"a": "' + b"x" * 40_000 + b'", "b": "' + b"x" * 40_000 + b'"}'), "metadata"),
    (_outcome(b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"),
     "metadata.a" + "[0]" * (MAX_DEPTH - 2)),
    (_outcome(b'{"a": ' + b"[" * 100_000 + b"}"), "(body)"),
    (b"[" * 100_000, "(body)"),
    (b'{"status": "\\ud800"}', "status"),
    (b"\xff\xfe", "(body)"),
])
async def test_hostile_outcome_body_is_400_naming_the_field(client, key, raw, field):
    status, body = await _call(client, "POST", "/api/v1/traces/t-1/outcome", key, raw)
    assert status == 400 and body["error"]["details"]["field"] == field, body


async def test_outcome_body_within_the_limits_passes_validation(client, key):
    nested = b"[" * (MAX_DEPTH - 2) + b"]" * (MAX_DEPTH - 2)
    big = b'"' + b"x" * (MAX_OUTCOME_METADATA_BYTES - 10) + b'"'
    for metadata in (b'{"a": ' + nested + b"}", b'{"a": ' + big + b"}", b'{"a": 1.5, "b": "\\u00e9"}'):
        status, body = await _call(client, "POST", "/api/v1/traces/t-1/outcome", key, _outcome(metadata))
        assert status == 503, body  # validated; only the missing chain agents refuse it


@pytest.mark.parametrize("raw, field", [
    (b'{"org_id": "o1", "scopes": ["traces:read"], "name": "\\ud800"}', "name"),
    (b'{"org_id": "o1", "scopes": ["traces:read"], "name": NaN}', "name"),
    (b'{"org_id": "\\ud800", "scopes": ["traces:read"]}', "org_id"),
    (b"[" * 100_000, "(body)"),
    (b"\xff", "(body)"),
])
async def test_hostile_key_body_is_400_naming_the_field(client, raw, field):
    status, body = await _call(client, "POST", "/v1/admin/keys", ADMIN_KEY, raw)
    assert status == 400 and body["error"]["details"]["field"] == field, body


#: ids ingest accepts that a URL path must carry percent-encoded
ODD_IDS = {"{": "%7B", "a{b}c": "a%7Bb%7Dc", "a/b": "a%2Fb", "100%": "100%25", "a b": "a%20b",
           "\u00e9\u4e2d\U0001f600": "%C3%A9%E4%B8%AD%F0%9F%98%80", "...": "..."}


@pytest.mark.parametrize("trace_id", ODD_IDS)
@pytest.mark.parametrize("route", ["/v1/traces/{}", "/api/v1/traces/{}", "/api/v1/traces/{}/verify",
                                   "/api/v1/traces/{}/export", f"/tenants/{ORG}/traces/{{}}"])
async def test_every_per_trace_route_reaches_its_handler_for_any_id(client, key, route, trace_id):
    """Unknown here, so 404: from the handler (naming the decoded id), not the router."""
    status, body = await _call(client, "GET", route.format(ODD_IDS[trace_id]), key)
    assert status == 404 and body["error"]["message"] == f"trace {trace_id} not found", body


@pytest.mark.parametrize("trace_id", ODD_IDS)
async def test_outcome_route_reaches_its_handler_for_any_id(client, key, trace_id):
    status, body = await _call(client, "POST", f"/api/v1/traces/{ODD_IDS[trace_id]}/outcome", key,
                               b'{"status": "success"}')
    assert status == 503, body  # the handler's answer without chain agents; the router's would be 404


@pytest.mark.parametrize("tenant", ["%7B", "a%7Bb%7D", "a%2Fb", "%C3%A9"])
async def test_tenant_routes_reach_their_handler_for_any_tenant(client, key, tenant):
    for path in (f"/tenants/{tenant}/traces", f"/tenants/{tenant}/traces/t-1"):
        status, body = await _call(client, "GET", path, key)
        assert status == 404 and body["error"]["message"].startswith("tenant "), body


async def test_key_revocation_reaches_its_handler_for_any_key_id(client):
    status, body = await _call(client, "DELETE", "/v1/admin/keys/a%7Bb%7D", ADMIN_KEY)
    assert status == 404 and body["error"]["message"] == "key not found", body


#: every query parameter of every route, each sent every hostile value
QUERY_PARAMS = {
    "/v1/metrics": ("since", "until"),
    "/v1/traces": ("limit", "cursor", "class", "type", "since", "until", "startDate", "endDate", "model", "status",
                   "name", "minScore", "maxScore", "userId", "tag", "metadata_key", "metadata_value"),
    "/v1/traces/export": ("format", "limit", "lightweight", "cursor", "type", "startDate", "endDate", "model",
                          "status", "name", "minScore", "maxScore", "userId", "tag", "metadata_key",
                          "metadata_value"),
    "/api/v1/traces": ("agent_id", "outcome", "from", "to", "limit", "offset", "cursor"),
    f"/tenants/{ORG}/traces": ("page", "per_page", "search", "cursor"),
    "/api/v1/traces/t-1/verify": ("proof",),
    "/v1/audit/verify": ("from", "to"),
    "/v1/checkpoints": ("limit", "cursor"),
    "/v1/admin/keys": ("org_id",),
}
#: parameters whose 400 may name their partner
PAIRED = {"metadata_key": ("metadata_key", "metadata_value"), "metadata_value": ("metadata_key", "metadata_value")}
HOSTILE_VALUES = ("9" * 5000, "99999999999999999999", "-99999999999999999999", "-1", "NaN", "inf", "1e400", "",
                  "x" * 5000, "%ff", "%00", "%ed%a0%80", "%7B%7D", "0001-01-01", _cursor(10**30), _cursor(-5),
                  _cursor([1, 2]))


@pytest.mark.parametrize("path", QUERY_PARAMS)
async def test_no_query_value_gets_a_500(client, key, path):
    for param in QUERY_PARAMS[path]:
        for value in HOSTILE_VALUES:
            status, body = await _call(client, "GET", f"{path}?{param}={value}", key)
            assert status in (200, 400, 403, 404), (param, value, body)  # 403: another org's keys
            if status == 400:
                assert body["error"]["details"]["field"] in PAIRED.get(param, (param,)), (param, value, body)


async def test_repeated_parameters_are_served(client, key):
    status, body = await _call(client, "GET", "/v1/traces?limit=5&limit=7&since=2026-01-01", key)
    assert status == 200, body


async def _raw(client: TestClient, head: bytes) -> bytes:
    """Send ``head`` (request line and headers, not percent-encoded) as raw bytes; the reply's status line."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head + b"\r\nConnection: close\r\n\r\n")
    await writer.drain()
    status = await reader.readline()
    writer.close()
    return status


@pytest.mark.parametrize("header", [b"Bearer \xff\xfe", b"Bearer th_\xff_\xff", b"Bearer \xed\xa0\x80",
                                    b"Bearer " + "é".encode() * 100, b"\xff \xff", b"Bearer th_a_" + b"x" * 5000])
async def test_undecodable_authorization_is_401(client, header):
    status = await _raw(client, b"GET /v1/traces HTTP/1.1\r\nHost: x\r\nAuthorization: " + header)
    assert status.startswith(b"HTTP/1.1 401"), status


@pytest.mark.parametrize("path", [b"/v1/traces/\xff\xfe", b"/api/v1/traces/\xed\xa0\x80/verify",
                                  b"/v1/traces?since=\xff", b"/tenants/\xff/traces"])
async def test_undecodable_raw_path_bytes_are_not_a_500(client, key, path):
    status = await _raw(client, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key.encode())
    assert status[9:12] in (b"400", b"404"), status
