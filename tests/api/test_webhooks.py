"""Webhook subscriptions through the in-process API: every route's answers and 400s, the records
published on ``webhook-subscriptions`` and ``audit-events``, tenancy, the scope matrix, and the
rows the sink writer stores in ClickHouse (no secrets)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from schemas.codec import decode
from schemas.timefmt import parse_ms
from schemas.topics import AUDIT_EVENTS, WEBHOOK_SUBSCRIPTIONS
from sinks.repositories.webhooks import WebhookRepository
from sinks.writer import WEBHOOK_SUBSCRIPTIONS_SINK, SinkRecord, SinkWriter, Source
from tests.support.in_process import Pipeline, RecordingProducer
from tests.support.service import ADMIN_KEY, Api, uid

pytestmark = pytest.mark.asyncio(loop_scope="session")

URL = "https://93.184.215.14/hooks/tracehouse"  # a public address: resolves without DNS
DAY_MS = 24 * 3_600_000


async def manager(api: Api, *scopes: str) -> tuple[str, str]:
    """A new org and a key of it holding ``scopes`` (default: webhooks:manage and audit:read)."""
    org = uid("wh-org")
    return org, await api.org_key(org, list(scopes) or ["webhooks:manage", "audit:read"])


async def create(api: Api, key: str, **fields: Any) -> dict[str, Any]:
    status, body = await api.post("/v1/webhooks", key, {"url": URL, "event_types": ["trace.completed"]} | fields)
    assert status == 201, body
    return body


def records(producer: RecordingProducer, sub_id: str) -> list[dict[str, Any]]:
    """The ``webhook-subscriptions`` records published for ``sub_id``, in order."""
    found = [decode(s.value).datum for s in producer.sent if s.topic == WEBHOOK_SUBSCRIPTIONS]
    return [r for r in found if r["id"] == sub_id]


def audit_entries(producer: RecordingProducer, org_id: str) -> list[dict[str, Any]]:
    """The ``webhook.*`` audit entries published for ``org_id``, in order (not its keys' creation)."""
    entries: list[dict[str, Any]] = []
    for s in producer.sent:
        if s.topic == AUDIT_EVENTS:
            batch = decode(s.value).datum
            if batch["org_id"] == org_id:
                entries += [e for e in batch["events"] if e["action"].startswith("webhook.")]
    return entries


async def test_create_answers_the_secret_once_and_a_get_right_after_sees_it(api, producer):
    org, key = await manager(api)
    before = int(time.time() * 1000)
    body = await create(api, key, event_types=["trace.completed", "webhook.test", "trace.completed"],
                        description="ops pager", filter={"type": "SPAN", "agent_id": "agent-7"})
    assert body["id"].startswith("wh_") and len(body["id"]) == 29
    assert body["secret"].startswith("whsec_") and len(body["secret"]) >= 38
    assert body["event_types"] == ["trace.completed", "webhook.test"]  # duplicates dropped, order kept
    assert body["filter"] == {"type": "SPAN", "agent_id": "agent-7"}
    assert body["status"] == "active" and body["disabled_reason"] == "" and body["description"] == "ops pager"
    assert before <= parse_ms(body["created_at"]) == parse_ms(body["updated_at"]) <= int(time.time() * 1000)

    status, got = await api.get(f"/v1/webhooks/{body['id']}", key)
    assert status == 200
    assert "secret" not in got and got == {k: v for k, v in body.items() if k != "secret"} | {
        "last_success_at": None, "last_failure_at": None, "consecutive_failures": 0, "breaker": "closed",
        "dead_letters": {"count": 0, "recent": []}}

    (record,) = records(producer, body["id"])
    assert record["org_id"] == org and record["version"] == 1 and record["url"] == URL
    assert record["secrets"] == [{"secret": body["secret"], "expires_at": None}]
    (entry,) = audit_entries(producer, org)
    assert entry["action"] == "webhook.created" and entry["target"] == body["id"]
    assert entry["actor"] == key.split("_")[1]  # the key id
    assert entry["metadata"]["url"] == URL and entry["metadata"]["version"] == "1"
    assert body["secret"] not in repr(entry)


async def test_patch_changes_fields_and_status_and_each_change_is_one_version(api, producer):
    org, key = await manager(api)
    sub = await create(api, key)
    status, patched = await api.request("PATCH", f"/v1/webhooks/{sub['id']}", key, json={
        "url": "https://93.184.215.14/other", "event_types": ["audit.event.created"], "description": "d",
        "filter": {"class": "governance"}})
    assert status == 200, patched
    assert patched["url"] == "https://93.184.215.14/other" and patched["event_types"] == ["audit.event.created"]
    assert patched["filter"] == {"class": "governance"} and patched["description"] == "d"
    assert "secret" not in patched and patched["created_at"] == sub["created_at"]
    status, disabled = await api.request("PATCH", f"/v1/webhooks/{sub['id']}", key, json={"status": "disabled"})
    assert status == 200 and disabled["status"] == "disabled" and disabled["disabled_reason"] != ""
    assert disabled["url"] == patched["url"]  # untouched fields stay
    status, active = await api.request("PATCH", f"/v1/webhooks/{sub['id']}", key, json={"status": "active"})
    assert status == 200 and active["status"] == "active" and active["disabled_reason"] == ""
    assert (await api.get(f"/v1/webhooks/{sub['id']}", key))[1]["status"] == "active"

    versions = records(producer, sub["id"])
    assert [r["version"] for r in versions] == [1, 2, 3, 4]
    assert all(r["secrets"] == versions[0]["secrets"] for r in versions)  # a patch keeps the secret
    entries = audit_entries(producer, org)
    assert [e["action"] for e in entries] == ["webhook.created"] + ["webhook.updated"] * 3
    assert entries[1]["metadata"]["changed"] == "description,event_types,filter,url"
    assert entries[2]["metadata"]["changed"] == "disabled_reason,status"


async def test_rotation_shows_the_new_secret_and_keeps_the_old_one_for_a_day(api, producer):
    org, key = await manager(api)
    sub = await create(api, key)
    status, rotated = await api.post(f"/v1/webhooks/{sub['id']}/rotate-secret", key)
    assert status == 200, rotated
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != sub["secret"]
    status, again = await api.post(f"/v1/webhooks/{sub['id']}/rotate-secret", key)
    assert status == 200 and again["secret"] not in (sub["secret"], rotated["secret"])

    first, second, third = records(producer, sub["id"])
    assert second["secrets"][0] == {"secret": rotated["secret"], "expires_at": None}
    (old,) = second["secrets"][1:]
    assert old["secret"] == sub["secret"] and old["expires_at"] == second["updated_at"] + DAY_MS
    # the second rotation keeps both earlier secrets: each one's grace is its own
    assert [s["secret"] for s in third["secrets"]] == [again["secret"], rotated["secret"], sub["secret"]]
    assert third["secrets"][1]["expires_at"] == third["updated_at"] + DAY_MS
    assert third["secrets"][2]["expires_at"] == old["expires_at"]
    assert third["version"] == 3
    entries = [e for e in audit_entries(producer, org) if e["action"] == "webhook.secret_rotated"]
    assert len(entries) == 2 and all(e["target"] == sub["id"] for e in entries)
    assert not any(s in repr(entries) for s in (sub["secret"], rotated["secret"], again["secret"]))


async def test_delete_answers_204_and_the_subscription_is_gone_everywhere(api, producer):
    org, key = await manager(api)
    sub = await create(api, key)
    kept = await create(api, key)
    status, _ = await api.request("DELETE", f"/v1/webhooks/{sub['id']}", key)
    assert status == 204
    assert (await api.get(f"/v1/webhooks/{sub['id']}", key))[0] == 404
    _, listed = await api.get("/v1/webhooks", key)
    assert [w["id"] for w in listed["webhooks"]] == [kept["id"]]
    for method, path, body in [("DELETE", "", None), ("PATCH", "", {"description": "x"}),
                               ("POST", "/rotate-secret", None)]:
        status, answer = await api.request(method, f"/v1/webhooks/{sub['id']}{path}", key, json=body)
        assert status == 404 and answer["error"]["code"] == "not_found", (method, path)
    assert [r["status"] for r in records(producer, sub["id"])] == ["active", "deleted"]
    assert [e["action"] for e in audit_entries(producer, org)] == ["webhook.created"] * 2 + ["webhook.deleted"]


async def test_the_list_pages_newest_first_by_cursor_with_health_fields(api):
    _, key = await manager(api)
    made = [await create(api, key, description=f"n{i}") for i in range(5)]
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        status, page = await api.get("/v1/webhooks", key, **params)
        assert status == 200 and len(page["webhooks"]) <= 2
        seen += page["webhooks"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    newest_first = sorted(made, key=lambda w: (w["created_at"], w["id"]), reverse=True)
    assert [w["id"] for w in seen] == [w["id"] for w in newest_first]
    assert all(w["consecutive_failures"] == 0 and w["dead_letters"] == {"count": 0, "recent": []}
               and w["breaker"] == "closed"
               and w["last_success_at"] is None and w["last_failure_at"] is None and "secret" not in w
               for w in seen)
    status, empty = await api.get("/v1/webhooks", (await manager(api))[1])
    assert status == 200 and empty == {"webhooks": [], "nextCursor": None}


def _field(answer: tuple[int, Any]) -> str:
    status, body = answer
    assert status == 400, body
    return body["error"]["details"]["field"]


@pytest.mark.parametrize(("body", "field"), [
    ({"event_types": ["trace.completed"]}, "url"),
    ({"url": 7, "event_types": ["trace.completed"]}, "url"),
    ({"url": "ftp://93.184.215.14/x", "event_types": ["trace.completed"]}, "url"),
    ({"url": "https://user:pw@93.184.215.14/x", "event_types": ["trace.completed"]}, "url"),
    ({"url": "https://93.184.215.14:99999/x", "event_types": ["trace.completed"]}, "url"),
    ({"url": "https://[::1/x", "event_types": ["trace.completed"]}, "url"),
    ({"url": "https://" + "a" * 3000, "event_types": ["trace.completed"]}, "url"),
    ({"url": "http://127.0.0.1:8080/hook", "event_types": ["trace.completed"]}, "url"),
    ({"url": "http://localhost/hook", "event_types": ["trace.completed"]}, "url"),
    ({"url": "http://10.1.2.3/hook", "event_types": ["trace.completed"]}, "url"),
    ({"url": "http://169.254.169.254/latest/meta-data", "event_types": ["trace.completed"]}, "url"),
    ({"url": "http://[::1]/hook", "event_types": ["trace.completed"]}, "url"),
    ({"url": "http://[::ffff:192.168.0.1]/hook", "event_types": ["trace.completed"]}, "url"),
    ({"url": "http://no-such-host.invalid/hook", "event_types": ["trace.completed"]}, "url"),
    ({"url": URL}, "event_types"),
    ({"url": URL, "event_types": []}, "event_types"),
    ({"url": URL, "event_types": "trace.completed"}, "event_types"),
    ({"url": URL, "event_types": ["trace.completed", "trace.exploded"]}, "event_types"),
    ({"url": URL, "event_types": [1]}, "event_types"),
    ({"url": URL, "event_types": ["webhook.test"], "description": "x" * 501}, "description"),
    ({"url": URL, "event_types": ["webhook.test"], "description": 5}, "description"),
    ({"url": URL, "event_types": ["webhook.test"], "filter": []}, "filter"),
    ({"url": URL, "event_types": ["webhook.test"], "filter": {"model": "x"}}, "filter.model"),
    ({"url": URL, "event_types": ["webhook.test"], "filter": {"type": 3}}, "filter.type"),
    ({"url": URL, "event_types": ["webhook.test"], "secret": "whsec_mine"}, "secret"),
    ({"url": URL, "event_types": ["webhook.test"], "status": "active"}, "status"),
])
async def test_create_refuses_each_bad_field_by_name(api, producer, body, field):
    org, key = await manager(api)
    assert _field(await api.post("/v1/webhooks", key, body)) == field
    assert audit_entries(producer, org) == []  # nothing published


async def test_bodies_that_are_not_json_objects_name_the_body(api):
    _, key = await manager(api)
    sub = await create(api, key)
    for method, path in [("POST", "/v1/webhooks"), ("PATCH", f"/v1/webhooks/{sub['id']}")]:
        for raw in (b"{", b"[]", b'"x"', b"", b"\xff"):
            assert _field(await api.request(method, path, key, data=raw)) == "(body)", (method, raw)
        assert _field(await api.request(method, path, key, data=b'{"description": NaN}')) == "description"
        assert _field(await api.request(method, path, key, data=b'{"filter": {"type": "\\ud800"}}')) == "filter.type"


@pytest.mark.parametrize(("body", "field"), [
    ({}, "(body)"),
    ({"status": "deleted"}, "status"),
    ({"status": "paused"}, "status"),
    ({"url": "http://192.168.1.1/"}, "url"),
    ({"event_types": []}, "event_types"),
    ({"description": "y" * 501}, "description"),
    ({"filter": {"agent": "a"}}, "filter.agent"),
    ({"id": "wh_other"}, "id"),
    ({"secrets": []}, "secrets"),
])
async def test_patch_refuses_each_bad_field_by_name_and_changes_nothing(api, producer, body, field):
    _, key = await manager(api)
    sub = await create(api, key)
    assert _field(await api.request("PATCH", f"/v1/webhooks/{sub['id']}", key, json=body)) == field
    assert [r["version"] for r in records(producer, sub["id"])] == [1]


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"cursor": "garbage"}, "cursor"), ({"cursor": "WyJ2MSIsNV0"}, "cursor"), ({"org_id": "x"}, "org_id"),
])
async def test_list_refuses_bad_parameters_by_name(api, params, field):
    _, key = await manager(api)
    assert _field(await api.get("/v1/webhooks", key, **params)) == field


async def test_another_org_never_sees_nor_changes_a_subscription(api, producer):
    _, key = await manager(api)
    theirs_org, theirs = await manager(api)
    sub = await create(api, key)
    assert (await api.get("/v1/webhooks", theirs))[1]["webhooks"] == []
    path = f"/v1/webhooks/{sub['id']}"
    for method, suffix, body in [("GET", "", None), ("PATCH", "", {"description": "mine now"}),
                                 ("DELETE", "", None), ("POST", "/rotate-secret", None)]:
        status, answer = await api.request(method, path + suffix, theirs, json=body)
        assert status == 404 and answer["error"]["code"] == "not_found", (method, suffix)
    assert [r["version"] for r in records(producer, sub["id"])] == [1]
    assert audit_entries(producer, theirs_org) == []
    status, still = await api.get(path, key)
    assert status == 200 and still["description"] == "" and still["status"] == "active"
    assert (await api.get("/v1/webhooks/wh_doesnotexist", key))[0] == 404


ROUTES = [("POST", "/v1/webhooks", {"url": URL, "event_types": ["webhook.test"]}), ("GET", "/v1/webhooks", None),
          ("GET", "/v1/webhooks/{id}", None), ("PATCH", "/v1/webhooks/{id}", {"description": "x"}),
          ("POST", "/v1/webhooks/{id}/rotate-secret", None), ("DELETE", "/v1/webhooks/{id}", None)]


async def test_scope_matrix(api):
    org = uid("wh-scopes")
    owner = await api.org_key(org, ["webhooks:manage"])
    sub = await create(api, owner)
    admin = await api.org_key(org, ["admin"])
    others = [await api.org_key(org, [s]) for s in ("traces:read", "traces:write", "audit:read", "audit:write")]
    for method, path, body in ROUTES:
        path = path.replace("{id}", sub["id"])
        assert (await api.request(method, path, None, json=body))[0] == 401, (method, path)
        assert (await api.request(method, path, "th_nope_nope", json=body))[0] == 401, (method, path)
        assert (await api.request(method, path, ADMIN_KEY, json=body))[0] == 403, (method, path)
        for other in others:
            status, answer = await api.request(method, path, other, json=body)
            assert status == 403 and answer["error"]["details"]["scope"] == "webhooks:manage", (method, path)
    for key in (owner, admin):  # both hold it: every route answers (delete last)
        made = await create(api, key)
        for method, path, body in ROUTES[1:]:
            status, _ = await api.request(method, path.replace("{id}", made["id"]), key, json=body)
            assert status in (200, 204), (method, path, status)


async def test_the_sink_writer_stores_the_newest_version_without_secrets(api, producer, pipeline: Pipeline):
    org, key = await manager(api)
    sub = await create(api, key, filter={"type": "SPAN"})
    gone = await create(api, key)
    await api.request("PATCH", f"/v1/webhooks/{sub['id']}", key, json={"status": "disabled", "description": "z"})
    await api.post(f"/v1/webhooks/{sub['id']}/rotate-secret", key)
    await api.request("DELETE", f"/v1/webhooks/{gone['id']}", key)
    await pipeline.flush()

    repo = WebhookRepository(pipeline.clickhouse)
    stored = await repo.get(org, sub["id"])
    assert stored is not None
    assert stored["version"] == 3 and stored["status"] == "disabled" and stored["description"] == "z"
    assert stored["filter"] == {"type": "SPAN"} and stored["event_types"] == ["trace.completed"]
    assert stored["created_at"] == parse_ms(sub["created_at"])
    assert await repo.get(org, gone["id"]) is None
    assert await repo.get(uid("intruder"), sub["id"]) is None
    assert [s["id"] for s in await repo.page(org, 10)] == [sub["id"]]
    assert await repo.page(org, 10, (stored["created_at"], stored["id"])) == []
    columns = await pipeline.clickhouse.query(
        f"SELECT name FROM system.columns WHERE database = '{pipeline.clickhouse.database}' "
        "AND table = 'webhook_subscriptions'")
    assert not any("secret" in name for (name,) in columns.rows)
    (health,) = (await repo.health_of(org, [sub["id"]])).values()
    assert health.consecutive_failures == 0 and health.breaker == "closed"

    # the audit log holds every change (and the key's creation), chained
    status, verdict = await api.get("/v1/audit/verify", key)
    assert status == 200 and verdict["valid"] and verdict["event_count"] == 1 + 5


async def test_a_replayed_subscription_record_is_stored_once(api, producer, pipeline: Pipeline):
    _, key = await manager(api)
    sub = await create(api, key)
    await pipeline.flush()
    (sent,) = [s for s in producer.sent
               if s.topic == WEBHOOK_SUBSCRIPTIONS and decode(s.value).datum["id"] == sub["id"]]
    offset = pipeline.subscription_offset - 1
    writer = SinkWriter(pipeline.clickhouse, WEBHOOK_SUBSCRIPTIONS_SINK)  # a new owner of the partition replays it
    assert await writer.write([SinkRecord(Source(WEBHOOK_SUBSCRIPTIONS, 0, offset), sent.value)]) == []
    assert writer.rows_skipped == 1
    rows = await pipeline.clickhouse.query(
        f"SELECT count() FROM {pipeline.clickhouse.database}.webhook_subscriptions WHERE id = {{id:String}}",
        {"id": sub["id"]})
    assert rows.rows[0][0] == 1

