"""Webhook deliveries: ``POST /v1/webhooks/test`` (seed 000: schedule a test delivery),
``GET /v1/webhooks/{webhook_id}/deliveries`` (the recorded attempts) and ``POST …/replay`` (send dead
letters again); scope ``webhooks:manage`` (or ``admin``), the key's org only.

The API only enqueues: a ``WebhookDelivery`` on ``webhook-deliveries`` keyed by the subscription id,
due at once, which the worker's dispatcher attempts, signs, retries and dead-letters like any other.
Attempts and dead letters are read from ClickHouse (``sinks.repositories.webhook_deliveries``).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

from api.audit_trail import publish_audit
from api.body import json_body
from api.context import DELIVERIES, PRODUCER, SUBSCRIPTIONS
from api.errors import ApiError, bad_param
from api.params import decode_cursor, encode_cursor, enum_param, int_param, is_utf8, reject_unknown
from api.routes.webhooks import (
    LIMIT,
    caller,
    checked_url,
    create_subscription,
    current_secret,
    own,
    view_ready,
)
from schemas.codec import encode
from schemas.model import MAX_ID_LEN
from schemas.timefmt import check_query_ms, format_ms, now_ms
from schemas.topics import WEBHOOK_DELIVERIES
from schemas.webhooks import new_delivery, random_id
from sinks.repositories.webhook_deliveries import OUTCOMES

TEST_TYPE = "webhook.test"
TEST_FIELDS = ("url", "payload")
#: The largest test ``payload``, as compact UTF-8 JSON.
MAX_TEST_PAYLOAD_BYTES = 64 * 1024
#: What a subscription created by the test route says of itself.
TEST_DESCRIPTION = "created by POST /v1/webhooks/test"
#: Most delivery ids one replay names.
MAX_REPLAY_IDS = 1_000
#: Dead letters read (and produced) at a time by a replay of all outstanding ones.
REPLAY_PAGE = 200
#: Delivery ids an audit entry of a replay lists (then ``…``; ``count`` has them all).
AUDITED_IDS = 50
_UINT32 = 2**32 - 1


def _test_payload(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_param("payload", "expected a JSON object")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_TEST_PAYLOAD_BYTES:
        raise bad_param("payload", f"{size} bytes as compact JSON; at most {MAX_TEST_PAYLOAD_BYTES}")
    return value


async def _enqueue(request: web.Request, deliveries: list[dict[str, Any]]) -> None:
    """Produce ``WebhookDelivery`` datums to ``webhook-deliveries``, each keyed by its subscription id."""
    await request.app[PRODUCER].send_records(WEBHOOK_DELIVERIES, [
        (d["subscription_id"].encode(), encode("WebhookDelivery", d)) for d in deliveries])


async def schedule_test(request: web.Request) -> web.Response:
    """Seed 000: schedule a ``webhook.test`` delivery of ``payload`` to ``url``, through the org's active
    subscription of exactly that URL, or a new one (its secret then in the answer)."""
    org_id, key_id = await caller(request)
    body = json_body(await request.read(), "{url, payload}")
    for key in body:
        if key not in TEST_FIELDS:
            raise bad_param(key, f"unknown field; expected {', '.join(TEST_FIELDS)}")
    url = await checked_url(request, body.get("url"))
    data = _test_payload(body.get("payload"))
    await view_ready(request)
    view = request.app[SUBSCRIPTIONS]
    async with view.lock:  # two tests of one new URL create one subscription
        sub = next((s for s in view.of_org(org_id) if s["status"] == "active" and s["url"] == url), None)
        created = sub is None
        if sub is None:
            sub = await create_subscription(request, org_id, key_id, {
                "url": url, "event_types": [TEST_TYPE], "description": TEST_DESCRIPTION})
    now = now_ms()
    delivery = new_delivery(random_id(f"{TEST_TYPE}:"), TEST_TYPE, org_id, sub["id"], now, data, now)
    await _enqueue(request, [delivery])
    answer = {"delivery_id": delivery["id"], "subscription_id": sub["id"]}
    if created:
        answer["secret"] = current_secret(sub)
    return web.json_response(answer, status=202)


def _attempt_cursor(raw: str | None) -> tuple[int, str, int] | None:
    """The (at ms, delivery id, attempt) keyset position inside a cursor of this route."""
    if raw is None:
        return None
    key = decode_cursor(raw)
    if not (isinstance(key, list) and len(key) == 3 and type(key[0]) is int and isinstance(key[1], str)
            and 0 < len(key[1]) <= MAX_ID_LEN and is_utf8(key[1]) and type(key[2]) is int
            and 0 <= key[2] <= _UINT32):
        raise bad_param("cursor", "not a cursor returned by this API")
    try:
        check_query_ms(key[0])
    except ValueError:
        raise bad_param("cursor", "not a cursor returned by this API") from None
    return key[0], key[1], key[2]


async def list_deliveries(request: web.Request) -> web.Response:
    """The subscription's delivery attempts, newest first."""
    q = request.query
    org_id, _, sub = await own(request)
    reject_unknown(q, ("limit", "cursor", "status"))
    limit = int_param(q, "limit", *LIMIT)
    outcome = enum_param(q, "status", OUTCOMES)
    before = _attempt_cursor(q.get("cursor"))
    found = await request.app[DELIVERIES].attempts(org_id, sub["id"], limit + 1, outcome, before)
    page = found[:limit]
    last = page[-1] if page else None
    return web.json_response({
        "attempts": [a | {"at": format_ms(a["at"])} for a in page],
        "nextCursor": encode_cursor([last["at"], last["delivery_id"], last["attempt"]])
        if last is not None and len(found) > limit else None})


def _replay_ids(raw: bytes) -> list[str] | None:
    """``delivery_ids`` of a replay's body (duplicates dropped), None for all outstanding dead letters."""
    body = json_body(raw or b"{}", '{"delivery_ids"?: [...]}')
    for key in body:
        if key != "delivery_ids":
            raise bad_param(key, "unknown field; expected delivery_ids")
    if "delivery_ids" not in body:
        return None
    ids = body["delivery_ids"]
    if (not isinstance(ids, list) or not 0 < len(ids) <= MAX_REPLAY_IDS
            or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID_LEN for i in ids)):
        raise bad_param("delivery_ids", f"expected an array of 1 to {MAX_REPLAY_IDS} delivery ids "
                                        f"(strings of 1 to {MAX_ID_LEN} characters); omit it to replay "
                                        "every outstanding dead letter")
    return list(dict.fromkeys(ids))


async def replay(request: web.Request) -> web.Response:
    """Send dead letters of the subscription again, with their original ids and payloads."""
    org_id, key_id, sub = await own(request)
    ids = _replay_ids(await request.read())
    if sub["status"] != "active":
        raise ApiError(409, "conflict", f"the subscription is {sub['status']}: set its status to active "
                                        "(PATCH /v1/webhooks/{id}) before replaying")
    repo = request.app[DELIVERIES]
    now = now_ms()
    sent: list[str] = []

    async def send(letters: list[dict[str, Any]]) -> None:
        await _enqueue(request, [d | {"attempts": 0, "due_at": now, "last_error": ""} for d in letters])
        sent.extend(d["id"] for d in letters)

    if ids is not None:
        await send(await repo.dead_letters(org_id, sub["id"], ids, limit=len(ids)))
    else:
        after = None
        while letters := await repo.dead_letters(org_id, sub["id"], limit=REPLAY_PAGE, after=after):
            await send(letters)
            after = (letters[-1]["created_at"], letters[-1]["id"])
    if sent:
        listed = ",".join(sent[:AUDITED_IDS]) + (",…" if len(sent) > AUDITED_IDS else "")
        await publish_audit(request, org_id, f"{sub['id']}.replay.{secrets.token_hex(8)}", key_id,
                            "webhook.replayed", sub["id"],
                            {"count": str(len(sent)), "selection": "outstanding" if ids is None else "by_id",
                             "delivery_ids": listed}, now)
    found = set(sent)
    return web.json_response({"replayed": len(sent), "delivery_ids": sent,
                              "not_found": [i for i in ids or [] if i not in found]}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/webhooks/test", schedule_test)
    app.router.add_get("/v1/webhooks/{webhook_id}/deliveries", list_deliveries)
    app.router.add_post("/v1/webhooks/{webhook_id}/replay", replay)
