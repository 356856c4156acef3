"""``GET /v1/checkpoints``: the signed checkpoints, newest first, with the key that signed them.

Checkpoints are global (one Merkle root over every org's changed chains): a root and a
leaf count reveal nothing of another org's data, so any valid key may list them.
"""

from __future__ import annotations

from aiohttp import web

from api.auth import authenticate
from api.context import CHECKPOINTS, SETTINGS, VERIFIER
from api.errors import bad_param
from api.params import decode_cursor, encode_cursor, int_param, reject_unknown
from schemas.checkpoints import public_key_of
from tracehouse.settings import Settings


def configured_public_key(settings: Settings) -> str | None:
    """The public half of the checkpoint key in the settings or the data dir (None: not readable here)."""
    return public_key_of(settings.checkpoint_key_path, settings.checkpoint_key)


async def list_checkpoints(request: web.Request) -> web.Response:
    await authenticate(request, request.app[VERIFIER])
    q = request.query
    reject_unknown(q, ("limit", "cursor"))
    limit = int_param(q, "limit", 50, 1, 200)
    before = decode_cursor(q["cursor"]) if "cursor" in q else None
    if before is not None and (type(before) is not int or not 0 < before < 2**63):
        raise bad_param("cursor", "not a cursor returned by this API")
    page = await request.app[CHECKPOINTS].page(limit + 1, before)
    more = len(page) > limit
    page = page[:limit]
    return web.json_response({
        # before the first checkpoint: the key it will be signed with, where this process can read it
        "public_key": page[0].public_key if page else configured_public_key(request.app[SETTINGS]),
        "checkpoints": [c.to_json() for c in page],
        "nextCursor": encode_cursor(page[-1].checkpoint.number) if more else None,
    })


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/checkpoints", list_checkpoints)
