"""The audit log's read surface: ``GET /v1/audit/verify?from=&to=``."""

from __future__ import annotations

import asyncio

from aiohttp import web

from api.context import CHAINS, caller_org
from api.errors import bad_param
from api.params import reject_unknown, time_param
from api.routes.governance import verdict_json
from schemas.integrity import Verdict, verify_span
from schemas.timefmt import format_ms, now_ms
from sinks.repositories.chains import AUDIT_LINKS


async def verify_audit(request: web.Request) -> web.Response:
    """Verify the org's audit chain over the links of events occurring in [from, to]
    (default: everything up to now), anchored to the link before them."""
    org_id = await caller_org(request, "audit:read")
    q = request.query
    reject_unknown(q, ("from", "to"))
    from_ms = time_param(q, "from")
    to_ms = time_param(q, "to")
    from_ms = 0 if from_ms is None else from_ms
    to_ms = now_ms() if to_ms is None else to_ms
    if from_ms > to_ms:
        raise bad_param("from", "must not be after to")
    span = await request.app[CHAINS].audit_span(org_id, from_ms, to_ms)
    body: dict = {"org_id": org_id, "from": format_ms(from_ms), "to": format_ms(to_ms)}
    if span is None:
        return web.json_response(body | {"first_seq": None, "last_seq": None} | verdict_json(Verdict(True, 0)))
    verdict = await asyncio.to_thread(verify_span, span.rows, AUDIT_LINKS.id_column, span.first_seq, span.anchor)
    body |= {"first_seq": span.first_seq, "last_seq": span.last_seq}
    return web.json_response(body | verdict_json(verdict))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/audit/verify", verify_audit)
