"""Key management: POST/GET /v1/admin/keys, DELETE /v1/admin/keys/{key_id}; and
GET /v1/admin/stored-links, what chain workers in other processes ask the ClickHouse owner.

The operator key (TRACEHOUSE_ADMIN_KEY) manages keys of every org; an org key with
the ``admin`` scope manages its own org's keys. Creating and revoking a key appends an entry to the
audit log of the key's org (``api_key.created``, ``api_key.revoked``; never the secret).
"""

from __future__ import annotations

import re

from aiohttp import web

from api.audit_trail import entry_id, publish_audit
from api.auth import SCOPES, Principal, authenticate
from api.body import json_body
from api.context import API_KEYS, CHAINS, VERIFIER
from api.errors import ApiError, bad_param, not_found
from api.params import int_param, reject_unknown
from schemas.timefmt import now_ms
from schemas.topics import SEALED_EVENTS

ORG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


async def _manager(request: web.Request, org_id: str | None) -> Principal:
    principal = await authenticate(request, request.app[VERIFIER])
    if principal.operator:
        return principal
    if "admin" not in principal.scopes:
        raise ApiError(403, "forbidden", "managing keys needs the operator key or the admin scope")
    if org_id is not None and org_id != principal.org_id:
        raise ApiError(403, "forbidden", "an org key manages its own org's keys only")
    return principal


async def create_key(request: web.Request) -> web.Response:
    body = json_body(await request.read(), "{org_id, scopes, name}")
    for key in body:
        if key not in ("org_id", "scopes", "name"):
            raise bad_param(key, "unknown field")
    org_id, scopes, name = body.get("org_id"), body.get("scopes"), body.get("name", "")
    if not isinstance(org_id, str) or not ORG_ID.match(org_id):
        raise bad_param("org_id", "required: 1-128 characters of letters, digits, _ . : -")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise bad_param("scopes", f"required: a non-empty array of {', '.join(SCOPES)}")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise bad_param("scopes", f"unknown scope(s) {unknown}; known: {', '.join(SCOPES)}")
    if not isinstance(name, str) or len(name) > 200:
        raise bad_param("name", "must be a string of at most 200 characters")
    principal = await _manager(request, org_id)
    key, token = await request.app[API_KEYS].create(org_id, sorted(set(scopes)), name)
    await publish_audit(request, org_id, f"{key.key_id}.created", principal.key_id, "api_key.created", key.key_id,
                        {"name": key.name, "scopes": ",".join(key.scopes)}, key.created_at_ms)
    return web.json_response({**key.public(), "key": token}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    reject_unknown(request.query, ("org_id",))
    principal = await _manager(request, request.query.get("org_id"))
    org_id = request.query.get("org_id") or principal.org_id
    if org_id is None:
        raise bad_param("org_id", "required with the operator key")
    keys = await request.app[API_KEYS].list(org_id)
    return web.json_response({"keys": [k.public() for k in keys]})


async def revoke_key(request: web.Request) -> web.Response:
    principal = await _manager(request, None)
    repo = request.app[API_KEYS]
    found = await repo.find(request.match_info["key_id"])
    if found is None or (not principal.operator and found[0].org_id != principal.org_id):
        raise not_found("key")
    key = await repo.revoke(found[0].key_id)
    request.app[VERIFIER].forget(found[0].key_id)
    assert key is not None
    await publish_audit(request, key.org_id, entry_id(f"{key.key_id}.revoked"), principal.key_id, "api_key.revoked",
                        key.key_id, {"name": key.name, "scopes": ",".join(key.scopes),
                                     "already_revoked": "true" if found[0].revoked else "false"}, now_ms())
    return web.json_response(key.public())


async def stored_links(request: web.Request) -> web.Response:
    """The links the sink stored from ``sealed-events[partition]`` at ``offset`` or later, every org's
    (operator key only): a chain worker without ClickHouse reads them before it seals on a partition,
    to restore records the broker lost (``streams.chain.SealedTail``)."""
    principal = await authenticate(request, request.app[VERIFIER])
    if not principal.operator:
        raise ApiError(403, "forbidden", "stored links are for the operator key only")
    reject_unknown(request.query, ("partition", "offset"))
    partition = int_param(request.query, "partition", -1, 0, 2**31 - 1)  # one that does not exist has none
    offset = int_param(request.query, "offset", -1, 0, 2**63 - 1)
    for name, value in (("partition", partition), ("offset", offset)):
        if value < 0:
            raise bad_param(name, "required")
    return web.json_response({"links": await request.app[CHAINS].stored_after(SEALED_EVENTS, partition, offset)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/admin/stored-links", stored_links)
    app.router.add_post("/v1/admin/keys", create_key)
    app.router.add_get("/v1/admin/keys", list_keys)
    app.router.add_delete("/v1/admin/keys/{key_id:[^/]+}", revoke_key)
