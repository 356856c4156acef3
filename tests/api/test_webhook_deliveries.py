"""Webhook dispatch through the in-process API: ``POST /v1/webhooks/test`` and ``…/replay`` (the
``WebhookDelivery`` records they enqueue), ``GET …/deliveries`` and the health and dead letters the
subscriptions show, read from attempts and dead letters the sink writer stored; every 400, 404,
the tenancy and the scopes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.params import encode_cursor
from schemas.codec import decode
from schemas.timefmt import format_ms, now_ms, parse_ms
from schemas.topics import WEBHOOK_DELIVERIES
from schemas.webhooks import delivery_id
from tests.api.test_webhooks import URL, audit_entries, create, manager, records
from tests.support.in_process import Pipeline, RecordingProducer
from tests.support.service import ADMIN_KEY, uid
from tests.support.webhook_records import attempt, delivery, failed_through

pytestmark = pytest.mark.asyncio(loop_scope="session")

SEED_URL = "https://93.184.215.14/agentronics"


def enqueued(producer: RecordingProducer, sub_id: str) -> list[dict[str, Any]]:
    """The ``WebhookDelivery`` records published to ``webhook-deliveries`` for ``sub_id``, in order; each
    record's key is checked to be the subscription id."""
    out = []
    for s in producer.sent:
        if s.topic == WEBHOOK_DELIVERIES:
            datum = decode(s.value).datum
            if datum["subscription_id"] == sub_id:
                assert s.key == sub_id.encode() and decode(s.value).schema == "WebhookDelivery"
                out.append(datum)
    return out


def field_of(answer: tuple[int, Any]) -> str:
    status, body = answer
    assert status == 400, body
    return body["error"]["details"]["field"]


# --- POST /v1/webhooks/test ------------------------------------------------------------------------


async def test_the_seed_request_creates_a_test_subscription_and_enqueues_one_delivery(api, producer):
    org, key = await manager(api)
    before = now_ms()
    status, body = await api.post("/v1/webhooks/test", key, {"url": SEED_URL, "payload": {"ping": True}})
    after = now_ms()
    assert status == 202, body
    assert set(body) == {"delivery_id", "subscription_id", "secret"} and body["secret"].startswith("whsec_")
    sub_id = body["subscription_id"]

    status, sub = await api.get(f"/v1/webhooks/{sub_id}", key)
    assert status == 200 and sub["url"] == SEED_URL and sub["event_types"] == ["webhook.test"]
    assert sub["description"] == "created by POST /v1/webhooks/test" and sub["status"] == "active"
    assert [w["id"] for w in (await api.get("/v1/webhooks", key))[1]["webhooks"]] == [sub_id]
    (record,) = records(producer, sub_id)
    assert record["secrets"] == [{"secret": body["secret"], "expires_at": None}]
    (entry,) = audit_entries(producer, org)
    assert entry["action"] == "webhook.created" and entry["target"] == sub_id

    (sent,) = enqueued(producer, sub_id)
    assert sent["id"] == body["delivery_id"] == delivery_id(sent["event_id"], sub_id)
    assert sent["event_id"].startswith("webhook.test:")
    assert sent["org_id"] == org and sent["type"] == "webhook.test" and sent["attempts"] == 0
    assert sent["last_error"] == "" and before <= sent["due_at"] == sent["created_at"] <= after
    assert json.loads(sent["payload"]) == {"type": "webhook.test", "timestamp": format_ms(sent["created_at"]),
                                           "data": {"ping": True}}


async def test_a_second_test_of_the_url_reuses_the_subscription_without_its_secret(api, producer):
    org, key = await manager(api)
    _, first = await api.post("/v1/webhooks/test", key, {"url": SEED_URL, "payload": {"n": 1}})
    status, second = await api.post("/v1/webhooks/test", key, {"url": SEED_URL})  # payload defaults to {}
    assert status == 202 and set(second) == {"delivery_id", "subscription_id"}
    assert second["subscription_id"] == first["subscription_id"] and second["delivery_id"] != first["delivery_id"]
    assert len(records(producer, first["subscription_id"])) == 1  # no second subscription, no change
    one, two = enqueued(producer, first["subscription_id"])
    assert json.loads(one["payload"])["data"] == {"n": 1} and json.loads(two["payload"])["data"] == {}
    assert [e["action"] for e in audit_entries(producer, org)] == ["webhook.created"]


async def test_an_existing_active_subscription_of_the_url_is_used_and_a_disabled_one_is_not(api, producer):
    _, key = await manager(api)
    mine = await create(api, key, event_types=["trace.completed"])  # URL, any event types
    status, body = await api.post("/v1/webhooks/test", key, {"url": URL, "payload": {}})
    assert status == 202 and body["subscription_id"] == mine["id"] and "secret" not in body
    assert enqueued(producer, mine["id"])[0]["type"] == "webhook.test"

    await api.request("PATCH", f"/v1/webhooks/{mine['id']}", key, json={"status": "disabled"})
    status, body = await api.post("/v1/webhooks/test", key, {"url": URL})
    assert status == 202 and body["subscription_id"] != mine["id"] and "secret" in body
    assert len(enqueued(producer, mine["id"])) == 1

    # another org's subscription of the same URL is never used
    _, theirs = await manager(api)
    status, other = await api.post("/v1/webhooks/test", theirs, {"url": URL})
    assert status == 202 and other["subscription_id"] not in (mine["id"], body["subscription_id"])
    assert "secret" in other


@pytest.mark.parametrize(("body", "field"), [
    ({}, "url"),
    ({"payload": {"ping": True}}, "url"),
    ({"url": 5}, "url"),
    ({"url": "http://127.0.0.1:9/hook"}, "url"),
    ({"url": "http://169.254.169.254/latest"}, "url"),
    ({"url": "ftp://93.184.215.14/x"}, "url"),
    ({"url": SEED_URL, "payload": [1, 2]}, "payload"),
    ({"url": SEED_URL, "payload": "ping"}, "payload"),
    ({"url": SEED_URL, "payload": 7}, "payload"),
    ({"url": SEED_URL, "payload": {"big": "x" * (64 * 1024)}}, "payload"),
    ({"url": SEED_URL, "payload": {}, "event_types": ["webhook.test"]}, "event_types"),
])
async def test_the_test_route_refuses_each_bad_field_by_name_and_publishes_nothing(api, producer, body, field):
    org, key = await manager(api)
    sent = len(producer.sent)
    assert field_of(await api.post("/v1/webhooks/test", key, body)) == field
    assert producer.sent[sent:] == [] and audit_entries(producer, org) == []


async def test_the_test_payload_limit_is_64_kib_of_compact_json(api, producer):
    _, key = await manager(api)
    filler = 64 * 1024 - len('{"p":""}')
    status, body = await api.post("/v1/webhooks/test", key, {"url": SEED_URL, "payload": {"p": "x" * filler}})
    assert status == 202, body
    assert json.loads(enqueued(producer, body["subscription_id"])[0]["payload"])["data"]["p"] == "x" * filler
    answer = await api.post("/v1/webhooks/test", key, {"url": SEED_URL, "payload": {"p": "x" * (filler + 1)}})
    assert field_of(answer) == "payload"


async def test_test_bodies_that_are_not_json_objects_name_the_body(api):
    _, key = await manager(api)
    for raw in (b"{", b"[]", b'"x"', b"", b"\xff"):
        assert field_of(await api.request("POST", "/v1/webhooks/test", key, data=raw)) == "(body)", raw
    raw = b'{"url": "' + SEED_URL.encode() + b'", "payload": {"k": NaN}}'
    assert field_of(await api.request("POST", "/v1/webhooks/test", key, data=raw)) == "payload.k"


# --- GET /v1/webhooks/{id}/deliveries --------------------------------------------------------------


async def test_deliveries_list_the_attempts_newest_first_in_pages(api, pipeline: Pipeline):
    org, key = await manager(api)
    sub = await create(api, key)
    t0 = now_ms() - 60_000
    failing = delivery(org, sub["id"], "e1", t0)
    ok = delivery(org, sub["id"], "e2", t0 + 10)
    await pipeline.webhooks.store(attempts=[
        *failed_through(failing, t0, status=0), attempt(ok, 1, t0 + 500, 503, "retrying"),
        attempt(ok, 2, t0 + 1_500, 204, "delivered", latency_ms=40),
        attempt(delivery("intruder", sub["id"], "x", t0), 1, t0 + 700, 500, "retrying")])  # another org's row

    status, page = await api.get(f"/v1/webhooks/{sub['id']}/deliveries", key)
    assert status == 200 and page["nextCursor"] is None
    assert [(a["event_id"], a["attempt"]) for a in page["attempts"]] == [
        ("e1", 3), ("e2", 2), ("e1", 2), ("e2", 1), ("e1", 1)]
    assert page["attempts"][1] == {"delivery_id": ok["id"], "event_id": "e2", "type": "trace.completed",
                                   "attempt": 2, "at": format_ms(t0 + 1_500), "status_code": 204, "error": "",
                                   "latency_ms": 40, "outcome": "delivered"}
    assert page["attempts"][0]["status_code"] is None and page["attempts"][0]["error"].startswith("ClientConnector")
    assert page["attempts"][0]["outcome"] == "dead_lettered"

    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        status, got = await api.get(f"/v1/webhooks/{sub['id']}/deliveries", key, **params)
        assert status == 200 and len(got["attempts"]) <= 2
        seen += got["attempts"]
        cursor = got["nextCursor"]
        if cursor is None:
            break
    assert seen == page["attempts"]
    _, retrying = await api.get(f"/v1/webhooks/{sub['id']}/deliveries", key, status="retrying")
    assert [(a["event_id"], a["attempt"]) for a in retrying["attempts"]] == [("e1", 2), ("e2", 1), ("e1", 1)]
    _, gone = await api.get(f"/v1/webhooks/{sub['id']}/deliveries", key, status="gone")
    assert gone == {"attempts": [], "nextCursor": None}


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "failed"}, "status"), ({"status": ""}, "status"), ({"limit": "0"}, "limit"),
    ({"limit": "201"}, "limit"), ({"limit": "x"}, "limit"), ({"cursor": "garbage"}, "cursor"),
    ({"cursor": "WyJ2MSIsWzEsIm1zZ194Il1d"}, "cursor"),  # ["v1", [1, "msg_x"]]: a subscription list's shape
    ({"cursor": "WyJ2MSIsWzEsIm1zZ194IiwtMV1d"}, "cursor"),  # attempt -1
    ({"outcome": "delivered"}, "outcome"),
])
async def test_deliveries_refuse_bad_parameters_by_name(api, params, field):
    _, key = await manager(api)
    sub = await create(api, key)
    assert field_of(await api.get(f"/v1/webhooks/{sub['id']}/deliveries", key, **params)) == field


# --- POST /v1/webhooks/{id}/replay ------------------------------------------------------------------


async def _dead_letters(pipeline: Pipeline, org: str, sub_id: str, n: int, t0: int) -> list[dict[str, Any]]:
    """``n`` dead letters of the subscription, each after failing 3 attempts, created 10 ms apart."""
    letters = [delivery(org, sub_id, f"{sub_id}-e{i}", t0 + i * 10, due_at=t0 + i * 10 + 2_000,
                        data={"i": i, "note": "€"}) for i in range(n)]
    await pipeline.webhooks.store(attempts=[a for d in letters for a in failed_through(d, d["created_at"])],
                                  dead_letters=letters)
    return letters


async def test_replay_sends_every_outstanding_dead_letter_again_with_its_id_and_payload(
        api, producer, pipeline: Pipeline):
    org, key = await manager(api)
    sub = await create(api, key)
    t0 = now_ms() - 600_000
    letters = await _dead_letters(pipeline, org, sub["id"], 3, t0)
    settled = letters[0]  # replayed earlier and delivered since
    await pipeline.webhooks.store(attempts=[attempt(settled, 1, t0 + 300_000, 200, "delivered")])

    for body in (None, {}):
        before = now_ms()
        status, answer = await api.request("POST", f"/v1/webhooks/{sub['id']}/replay", key, json=body)
        assert status == 202, answer
        assert answer == {"replayed": 2, "delivery_ids": [letters[1]["id"], letters[2]["id"]], "not_found": []}
        sent = enqueued(producer, sub["id"])[-2:]
        for original, again in zip(letters[1:], sent, strict=True):
            assert again == original | {"attempts": 0, "due_at": again["due_at"], "last_error": ""}
            assert again["payload"] == original["payload"] and before <= again["due_at"] <= now_ms()
    assert len(enqueued(producer, sub["id"])) == 4
    entries = [e for e in audit_entries(producer, org) if e["action"] == "webhook.replayed"]
    assert len(entries) == 2 and entries[0]["target"] == sub["id"] and entries[0]["actor"] == key.split("_")[1]
    assert entries[0]["metadata"] == {"count": "2", "selection": "outstanding",
                                      "delivery_ids": f"{letters[1]['id']},{letters[2]['id']}"}


async def test_replay_by_id_finds_only_this_subscriptions_dead_letters(api, producer, pipeline: Pipeline):
    org, key = await manager(api)
    sub, other = await create(api, key), await create(api, key)
    t0 = now_ms() - 600_000
    letters = await _dead_letters(pipeline, org, sub["id"], 3, t0)
    (theirs,) = await _dead_letters(pipeline, org, other["id"], 1, t0)
    await pipeline.webhooks.store(attempts=[attempt(letters[0], 1, t0 + 300_000, 200, "delivered")])
    ids = [letters[0]["id"], "msg_unknown", theirs["id"], letters[2]["id"], letters[0]["id"]]
    status, answer = await api.post(f"/v1/webhooks/{sub['id']}/replay", key, {"delivery_ids": ids})
    assert status == 202, answer
    assert answer["replayed"] == 2 and set(answer["delivery_ids"]) == {letters[0]["id"], letters[2]["id"]}
    assert answer["not_found"] == ["msg_unknown", theirs["id"]]
    assert {d["id"] for d in enqueued(producer, sub["id"])} == {letters[0]["id"], letters[2]["id"]}
    assert enqueued(producer, other["id"]) == []
    (entry,) = [e for e in audit_entries(producer, org) if e["action"] == "webhook.replayed"]
    assert entry["metadata"]["selection"] == "by_id" and entry["metadata"]["count"] == "2"


async def test_replay_with_nothing_dead_answers_zero_and_audits_nothing(api, producer):
    org, key = await manager(api)
    sub = await create(api, key)
    status, answer = await api.post(f"/v1/webhooks/{sub['id']}/replay", key, {})
    assert status == 202 and answer == {"replayed": 0, "delivery_ids": [], "not_found": []}
    assert enqueued(producer, sub["id"]) == []
    assert [e["action"] for e in audit_entries(producer, org)] == ["webhook.created"]


async def test_replay_refuses_a_disabled_subscription(api, producer, pipeline: Pipeline):
    org, key = await manager(api)
    sub = await create(api, key)
    await _dead_letters(pipeline, org, sub["id"], 1, now_ms() - 60_000)
    await api.request("PATCH", f"/v1/webhooks/{sub['id']}", key, json={"status": "disabled"})
    status, answer = await api.post(f"/v1/webhooks/{sub['id']}/replay", key, {})
    assert status == 409 and answer["error"]["code"] == "conflict"
    assert enqueued(producer, sub["id"]) == []


@pytest.mark.parametrize(("body", "field"), [
    ({"delivery_ids": []}, "delivery_ids"),
    ({"delivery_ids": "msg_x"}, "delivery_ids"),
    ({"delivery_ids": [1]}, "delivery_ids"),
    ({"delivery_ids": [""]}, "delivery_ids"),
    ({"delivery_ids": ["x" * 257]}, "delivery_ids"),
    ({"delivery_ids": [f"msg_{i}" for i in range(1001)]}, "delivery_ids"),
    ({"delivery_ids": None}, "delivery_ids"),
    ({"ids": ["msg_x"]}, "ids"),
])
async def test_replay_refuses_bad_bodies_by_name(api, producer, body, field):
    _, key = await manager(api)
    sub = await create(api, key)
    assert field_of(await api.post(f"/v1/webhooks/{sub['id']}/replay", key, body)) == field
    for raw in (b"{", b"[]", b"\xff"):
        assert field_of(await api.request("POST", f"/v1/webhooks/{sub['id']}/replay", key, data=raw)) == "(body)"
    assert enqueued(producer, sub["id"]) == []


async def test_a_thousand_ids_are_accepted(api, pipeline: Pipeline):
    org, key = await manager(api)
    sub = await create(api, key)
    letters = await _dead_letters(pipeline, org, sub["id"], 2, now_ms() - 60_000)
    ids = [d["id"] for d in letters] + [f"msg_{i}" for i in range(998)]
    status, answer = await api.post(f"/v1/webhooks/{sub['id']}/replay", key, {"delivery_ids": ids})
    assert status == 202 and answer["replayed"] == 2 and len(answer["not_found"]) == 998


# --- health and dead letters in GET /v1/webhooks ---------------------------------------------------


async def test_the_subscriptions_show_health_breaker_and_their_outstanding_dead_letters(
        api, pipeline: Pipeline):
    org, key = await manager(api)
    quiet, failing = await create(api, key), await create(api, key)
    t0 = now_ms() - 20_000  # the breaker's cooldown (30 s) has not passed since the last failure
    letters = await _dead_letters(pipeline, org, failing["id"], 12, t0)
    last_failure = max(d["created_at"] + 2_000 for d in letters)

    status, listed = await api.get("/v1/webhooks", key)
    assert status == 200
    by_id = {w["id"]: w for w in listed["webhooks"]}
    shown = by_id[failing["id"]]
    assert shown["consecutive_failures"] == 36 and shown["breaker"] == "open"
    assert shown["last_failure_at"] == format_ms(last_failure) and shown["last_success_at"] is None
    assert shown["dead_letters"]["count"] == 12
    recent = shown["dead_letters"]["recent"]
    assert [d["delivery_id"] for d in recent] == [d["id"] for d in reversed(letters)][:10]
    assert recent[0] == {"delivery_id": letters[11]["id"], "event_id": letters[11]["event_id"],
                         "type": "trace.completed", "created_at": format_ms(letters[11]["created_at"]),
                         "last_error": "HTTP 500", "attempts": 3}
    assert by_id[quiet["id"]]["dead_letters"] == {"count": 0, "recent": []}
    assert by_id[quiet["id"]]["breaker"] == "closed"
    status, one = await api.get(f"/v1/webhooks/{failing['id']}", key)
    assert status == 200 and {k: one[k] for k in shown if k in one} == shown

    # a success closes the breaker and settles the dead letter it delivered
    await pipeline.webhooks.store(attempts=[attempt(letters[11], 1, now_ms(), 200, "delivered")])
    _, one = await api.get(f"/v1/webhooks/{failing['id']}", key)
    assert one["breaker"] == "closed" and one["consecutive_failures"] == 0
    assert parse_ms(one["last_success_at"]) <= now_ms() and one["dead_letters"]["count"] == 11
    assert letters[11]["id"] not in [d["delivery_id"] for d in one["dead_letters"]["recent"]]


async def test_an_old_run_of_failures_leaves_the_breaker_closed(api, pipeline: Pipeline):
    org, key = await manager(api)
    sub = await create(api, key)
    await _dead_letters(pipeline, org, sub["id"], 2, now_ms() - 3_600_000)
    _, got = await api.get(f"/v1/webhooks/{sub['id']}", key)
    assert got["consecutive_failures"] == 6 and got["breaker"] == "closed" and got["dead_letters"]["count"] == 2


# --- tenancy and scopes -----------------------------------------------------------------------------


async def test_another_org_gets_404_and_sees_nothing(api, producer, pipeline: Pipeline):
    org, key = await manager(api)
    sub = await create(api, key)
    letters = await _dead_letters(pipeline, org, sub["id"], 1, now_ms() - 60_000)
    _, theirs = await manager(api)
    for method, path, body in [("GET", "/deliveries", None), ("POST", "/replay", {}),
                               ("POST", "/replay", {"delivery_ids": [letters[0]["id"]]})]:
        status, answer = await api.request(method, f"/v1/webhooks/{sub['id']}{path}", theirs, json=body)
        assert status == 404 and answer["error"]["code"] == "not_found", (method, path)
    assert (await api.get("/v1/webhooks/wh_doesnotexist/deliveries", key))[0] == 404
    assert (await api.post("/v1/webhooks/wh_doesnotexist/replay", key, {}))[0] == 404
    assert enqueued(producer, sub["id"]) == []
    await api.request("DELETE", f"/v1/webhooks/{sub['id']}", key)
    assert (await api.get(f"/v1/webhooks/{sub['id']}/deliveries", key))[0] == 404
    assert (await api.post(f"/v1/webhooks/{sub['id']}/replay", key, {}))[0] == 404


async def test_scope_matrix_of_the_dispatch_routes(api, producer):
    org = uid("wh-scopes")
    owner = await api.org_key(org, ["webhooks:manage"])
    admin = await api.org_key(org, ["admin"])
    sub = await create(api, owner)
    routes = [("POST", "/v1/webhooks/test", {"url": SEED_URL}), ("GET", f"/v1/webhooks/{sub['id']}/deliveries", None),
              ("POST", f"/v1/webhooks/{sub['id']}/replay", {})]
    others = [await api.org_key(org, [s]) for s in ("traces:read", "traces:write", "audit:read", "audit:write")]
    sent = len(producer.sent)
    for method, path, body in routes:
        assert (await api.request(method, path, None, json=body))[0] == 401, path
        assert (await api.request(method, path, "th_nope_nope", json=body))[0] == 401, path
        assert (await api.request(method, path, ADMIN_KEY, json=body))[0] == 403, path
        for other in others:
            status, answer = await api.request(method, path, other, json=body)
            assert status == 403 and answer["error"]["details"]["scope"] == "webhooks:manage", path
    assert producer.sent[sent:] == []
    for key in (owner, admin):
        for method, path, body in routes:
            status, _ = await api.request(method, path, key, json=body)
            assert status in (200, 202), (method, path, status)


async def test_other_methods_on_the_new_paths_answer_405_with_their_own_methods(api, client):
    _, key = await manager(api)
    sub = await create(api, key)
    for method, path, allowed in [("GET", "/v1/webhooks/test", "POST"), ("PATCH", "/v1/webhooks/test", "POST"),
                                  ("DELETE", f"/v1/webhooks/{sub['id']}/replay", "POST"),
                                  ("POST", f"/v1/webhooks/{sub['id']}/deliveries", "GET,HEAD")]:
        response = await client.request(method, path, headers={"Authorization": f"Bearer {key}"})
        assert response.status == 405, (method, path)
        assert response.headers["Allow"] == allowed, (method, path)
    assert (await api.get("/v1/webhooks/testing", key))[0] == 404  # only "test" itself is the test route


async def test_hostile_ids_and_cursors_are_answered_never_a_500(api, producer):
    _, key = await manager(api)
    sub = await create(api, key)
    odd = ["a\u0000b", "'; DROP TABLE x; --", "\\", "{org:String}", "é\u2028", "x" * 256]
    status, answer = await api.post(f"/v1/webhooks/{sub['id']}/replay", key, {"delivery_ids": odd})
    assert status == 202 and answer == {"replayed": 0, "delivery_ids": [], "not_found": odd}
    for odd_id in odd:
        cursor = encode_cursor([now_ms(), odd_id, 3])
        status, page = await api.get(f"/v1/webhooks/{sub['id']}/deliveries", key, cursor=cursor)
        assert status == 200 and page == {"attempts": [], "nextCursor": None}, odd_id
    for bad in ([0, "", 1], [-1, "m", 1], [10**20, "m", 1], [1, "m", 2**32], [1, "m", 1.5], [True, "m", 1],
                [1, "m"], {"at": 1}):
        assert field_of(await api.get(f"/v1/webhooks/{sub['id']}/deliveries", key,
                                      cursor=encode_cursor(bad))) == "cursor", bad
    assert enqueued(producer, sub["id"]) == []
