"""Webhook subscriptions: ``/v1/webhooks`` (create, list), ``/v1/webhooks/{webhook_id}`` (read,
change, delete) and ``…/rotate-secret``; scope ``webhooks:manage`` (or ``admin``), the key's org only.

Every change is the subscription's whole new state, one record on ``webhook-subscriptions``
(keyed by id, ``version`` one higher), and one entry of the org's audit log. Reads come from
this process's view of that topic (``schemas.subscriptions``); each write is answered once the view
has read it back. The signing secret is shown by the create and the rotation only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from api.audit_trail import publish_audit
from api.auth import authenticate, require_scope
from api.body import json_body
from api.context import DELIVERIES, PRODUCER, SETTINGS, SUBSCRIPTIONS, VERIFIER, WEBHOOKS
from api.errors import ApiError, bad_param, not_found
from api.params import encode_cursor, int_param, key_cursor, reject_unknown
from schemas.codec import encode
from schemas.model import ValidationError
from schemas.ssrf import check_url, resolve_allowed
from schemas.subscriptions import Subscription
from schemas.timefmt import format_ms, now_ms
from schemas.topics import WEBHOOK_SUBSCRIPTIONS
from schemas.webhooks import EVENT_TYPES, Filter, new_secret, random_id, unexpired
from sinks.repositories.webhooks import Health

log = logging.getLogger(__name__)

SCOPE = "webhooks:manage"
MAX_DESCRIPTION = 500
#: Statuses a PATCH may set (``deleted`` is the DELETE's).
SETTABLE_STATUSES = ("active", "disabled")
CREATE_FIELDS = ("url", "event_types", "description", "filter")
PATCH_FIELDS = (*CREATE_FIELDS, "status")
#: How long a rotated-out secret still signs deliveries (receivers switch meanwhile).
SECRET_GRACE_MS = 24 * 3_600_000
#: ``limit`` of the list: default, least, most.
LIMIT = (50, 1, 200)
#: How long a URL's host may take to resolve (400 naming ``url`` after).
RESOLVE_TIMEOUT_SECONDS = 5.0
#: Outstanding dead letters a subscription shows (newest first) beside their count.
RECENT_DEAD_LETTERS = 10
#: How long the view of the process may take to load the topic before a route answers 503.
LOAD_TIMEOUT_SECONDS = 10.0


async def caller(request: web.Request) -> tuple[str, str]:
    """(org_id, key id) of a caller holding ``webhooks:manage`` (401/403 otherwise)."""
    principal = await authenticate(request, request.app[VERIFIER])
    org_id = require_scope(principal, SCOPE)
    return org_id, principal.key_id


async def view_ready(request: web.Request) -> None:
    """503 while this process is still reading the subscriptions' topic (at start)."""
    try:
        async with asyncio.timeout(LOAD_TIMEOUT_SECONDS):
            await request.app[SUBSCRIPTIONS].ready.wait()
    except TimeoutError:
        raise ApiError(503, "unavailable", "webhook subscriptions are still loading; retry later") from None


async def checked_url(request: web.Request, value: Any) -> str:
    """``value`` as a webhook URL may be: absolute http(s), resolving to allowed addresses (400 naming ``url``)."""
    if not isinstance(value, str):
        raise bad_param("url", "required: an http(s) URL")
    try:
        allow_private = request.app[SETTINGS].webhook_allow_private_networks
        url = check_url(value, allow_private=allow_private)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            await resolve_allowed(parts.hostname or "", port, allow_private)
    except ValueError as exc:  # refused: the scheme, the form, or where it resolves to
        raise bad_param("url", str(exc)) from None
    except OSError as exc:  # socket.gaierror: no such host
        raise bad_param("url", f"the host does not resolve ({exc.strerror or exc})") from None
    except TimeoutError:
        raise bad_param("url", f"the host did not resolve within {RESOLVE_TIMEOUT_SECONDS:g} s") from None
    return url


def _event_types(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise bad_param("event_types", f"required: a non-empty array of {', '.join(EVENT_TYPES)}")
    unknown = [t for t in value if t not in EVENT_TYPES]
    if unknown:
        raise bad_param("event_types", f"unknown event type(s) {unknown}; known: {', '.join(EVENT_TYPES)}")
    return list(dict.fromkeys(value))


def _description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise bad_param("description", f"must be a string of at most {MAX_DESCRIPTION} characters")
    return value


def _filter(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    try:
        return Filter.from_json(value).to_json()
    except ValidationError as exc:
        raise bad_param(exc.field, exc.reason) from None


def _status(value: Any) -> str:
    if value not in SETTABLE_STATUSES:
        raise bad_param("status", f"must be one of {', '.join(SETTABLE_STATUSES)}")
    return value


async def _changes(request: web.Request, allowed: tuple[str, ...], *, required: tuple[str, ...] = ()
                   ) -> dict[str, Any]:
    """The validated fields of the JSON body (400 naming the first field at fault)."""
    body = json_body(await request.read(), "{" + ", ".join(allowed) + "}")
    for key in body:
        if key not in allowed:
            raise bad_param(key, "unknown field")
    for key in required:
        if key not in body:
            raise bad_param(key, "required")
    out: dict[str, Any] = {}
    if "url" in body:
        out["url"] = await checked_url(request, body["url"])
    if "event_types" in body:
        out["event_types"] = _event_types(body["event_types"])
    if "description" in body:
        out["description"] = _description(body["description"])
    if "filter" in body:
        out["filter"] = _filter(body["filter"])
    if "status" in body:
        out["status"] = _status(body["status"])
    return out


def _public(sub: Subscription) -> dict[str, Any]:
    """A subscription as the API shows it: no secret."""
    return {"id": sub["id"], "url": sub["url"], "event_types": sub["event_types"],
            "description": sub["description"], "filter": sub["filter"], "status": sub["status"],
            "disabled_reason": sub["disabled_reason"], "created_at": format_ms(sub["created_at"]),
            "updated_at": format_ms(sub["updated_at"])}


def _health(health: Health, recent: list[dict[str, Any]]) -> dict[str, Any]:
    """The health fields, with ``dead_letters``: the outstanding ones' count and the newest of them."""
    return {"last_success_at": None if health.last_success_at is None else format_ms(health.last_success_at),
            "last_failure_at": None if health.last_failure_at is None else format_ms(health.last_failure_at),
            "consecutive_failures": health.consecutive_failures, "breaker": health.breaker,
            "dead_letters": {"count": health.dead_letters,
                             "recent": [d | {"created_at": format_ms(d["created_at"])} for d in recent]}}


async def _healths(request: web.Request, org_id: str, sub_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The health fields of each of the org's subscriptions ``sub_ids``."""
    health = await request.app[WEBHOOKS].health_of(org_id, sub_ids)
    recent = await request.app[DELIVERIES].recent_dead_letters(org_id, sub_ids, RECENT_DEAD_LETTERS)
    return {sub_id: _health(health[sub_id], recent.get(sub_id, [])) for sub_id in sub_ids}


def current_secret(sub: Subscription) -> str:
    return next(s["secret"] for s in sub["secrets"] if s["expires_at"] is None)


async def _publish(request: web.Request, sub: Subscription, actor: str, action: str,
                   metadata: dict[str, str]) -> None:
    """Publish ``sub`` (its new state) and its audit entry, then wait for the view to read it back."""
    app = request.app
    await app[PRODUCER].send_records(WEBHOOK_SUBSCRIPTIONS,
                                     [(sub["id"].encode(), encode("WebhookSubscription", sub))])
    await publish_audit(request, sub["org_id"], f"{sub['id']}.v{sub['version']}", actor, action, sub["id"],
                        metadata | {"version": str(sub["version"])}, sub["updated_at"])
    view = app[SUBSCRIPTIONS]
    if not await view.read_back(sub["id"], sub["version"], app[SETTINGS].command_timeout_seconds):
        # acknowledged by the broker, hence durable: answer, and show it in this process meanwhile
        log.warning("subscription %s v%d not read back in time; applied locally", sub["id"], sub["version"])
        view.apply(sub)


def _described(sub: Subscription) -> dict[str, str]:
    """Audit metadata of a subscription's state (never its secrets)."""
    return {"url": sub["url"], "event_types": ",".join(sub["event_types"]), "status": sub["status"],
            "filter": json.dumps(sub["filter"], sort_keys=True, separators=(",", ":"))}


async def create_subscription(request: web.Request, org_id: str, key_id: str, fields: dict[str, Any]
                              ) -> Subscription:
    """Create a subscription of the validated ``fields`` (``url`` and ``event_types`` at least) and publish it
    with its audit entry; the caller holds the view's lock."""
    now = now_ms()
    sub: Subscription = {
        "id": random_id("wh_"), "org_id": org_id, "url": fields["url"], "event_types": fields["event_types"],
        "description": fields.get("description", ""), "filter": fields.get("filter", {}),
        "secrets": [{"secret": new_secret(), "expires_at": None}], "status": "active", "disabled_reason": "",
        "created_at": now, "updated_at": now, "version": 1}
    await _publish(request, sub, key_id, "webhook.created", _described(sub))
    return sub


async def create_webhook(request: web.Request) -> web.Response:
    org_id, key_id = await caller(request)
    fields = await _changes(request, CREATE_FIELDS, required=("url", "event_types"))
    await view_ready(request)
    async with request.app[SUBSCRIPTIONS].lock:
        sub = await create_subscription(request, org_id, key_id, fields)
    return web.json_response(_public(sub) | {"secret": current_secret(sub)}, status=201)


async def list_webhooks(request: web.Request) -> web.Response:
    org_id, _ = await caller(request)
    q = request.query
    reject_unknown(q, ("limit", "cursor"))
    limit = int_param(q, "limit", *LIMIT)
    after = key_cursor(q.get("cursor"))
    await view_ready(request)
    subs = request.app[SUBSCRIPTIONS].of_org(org_id)
    if after is not None:
        subs = [s for s in subs if (s["created_at"], s["id"]) < after]
    page, more = subs[:limit], len(subs) > limit
    health = await _healths(request, org_id, [s["id"] for s in page])
    return web.json_response({
        "webhooks": [_public(s) | health[s["id"]] for s in page],
        "nextCursor": encode_cursor([page[-1]["created_at"], page[-1]["id"]]) if more else None,
    })


async def own(request: web.Request) -> tuple[str, str, Subscription]:
    """(org_id, key id, the subscription named in the path): 404 when the org has no such one."""
    org_id, key_id = await caller(request)
    await view_ready(request)
    sub = request.app[SUBSCRIPTIONS].get(org_id, request.match_info["webhook_id"])
    if sub is None:
        raise not_found("webhook")
    return org_id, key_id, sub


async def get_webhook(request: web.Request) -> web.Response:
    org_id, _, sub = await own(request)
    health = await _healths(request, org_id, [sub["id"]])
    return web.json_response(_public(sub) | health[sub["id"]])


async def _change(request: web.Request, key_id: str, sub_id: str, org_id: str, action: str,
                  change: Any) -> Subscription:
    """Apply ``change(current) -> (new fields, audit metadata)`` to the newest version, under the lock."""
    view = request.app[SUBSCRIPTIONS]
    async with view.lock:
        current = view.get(org_id, sub_id)
        if current is None:  # deleted meanwhile
            raise not_found("webhook")
        now = max(now_ms(), current["updated_at"])
        fields, metadata = change(current, now)
        new = current | fields | {"updated_at": now, "version": current["version"] + 1}
        await _publish(request, new, key_id, action, metadata)
    return new


async def patch_webhook(request: web.Request) -> web.Response:
    org_id, key_id, sub = await own(request)
    fields = await _changes(request, PATCH_FIELDS)
    if not fields:
        raise bad_param("(body)", f"expected at least one of {', '.join(PATCH_FIELDS)}")

    def change(current: Subscription, now: int) -> tuple[dict[str, Any], dict[str, str]]:
        new = dict(fields)
        if "status" in new:
            new["disabled_reason"] = "" if new["status"] == "active" else "disabled through the API"
        changed = sorted(k for k, v in new.items() if current.get(k) != v)
        return new, _described(current | new) | {"changed": ",".join(changed)}

    new = await _change(request, key_id, sub["id"], org_id, "webhook.updated", change)
    return web.json_response(_public(new))


async def delete_webhook(request: web.Request) -> web.Response:
    org_id, key_id, sub = await own(request)

    def change(current: Subscription, now: int) -> tuple[dict[str, Any], dict[str, str]]:
        return {"status": "deleted", "disabled_reason": ""}, {"url": current["url"]}

    await _change(request, key_id, sub["id"], org_id, "webhook.deleted", change)
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    org_id, key_id, sub = await own(request)
    fresh = new_secret()

    def change(current: Subscription, now: int) -> tuple[dict[str, Any], dict[str, str]]:
        kept = [s | {"expires_at": now + SECRET_GRACE_MS} if s["expires_at"] is None else s
                for s in unexpired(current["secrets"], now)]
        grace = format_ms(now + SECRET_GRACE_MS)
        return {"secrets": [{"secret": fresh, "expires_at": None}, *kept]}, {"previous_expires_at": grace}

    new = await _change(request, key_id, sub["id"], org_id, "webhook.secret_rotated", change)
    return web.json_response(_public(new) | {"secret": fresh})


#: One subscription's path; ``/v1/webhooks/test`` is the test route's (no subscription id is ``test``), so its
#: 405 lists that route's methods only.
ONE_PATH = "/v1/webhooks/{webhook_id:(?!test$)[^/]+}"


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/webhooks", create_webhook)
    app.router.add_get("/v1/webhooks", list_webhooks)
    app.router.add_get(ONE_PATH, get_webhook)
    app.router.add_patch(ONE_PATH, patch_webhook)
    app.router.add_delete(ONE_PATH, delete_webhook)
    app.router.add_post("/v1/webhooks/{webhook_id}/rotate-secret", rotate_secret)
