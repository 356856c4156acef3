"""The API's own mutations in the org's audit log: each one appends an entry (actor: the key id, or
``operator`` for the operator key), published on ``audit-events`` and chained by the worker like any
ingested entry. The actions are listed in the README.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from api.context import PRODUCER
from schemas.model import validate_audit_event
from schemas.producer import audit_records
from schemas.topics import AUDIT_EVENTS


def entry_id(kind: str) -> str:
    """A fresh id for an entry of ``kind`` (``export``, ``outcome``…): unique without coordination."""
    return f"{kind}.{uuid.uuid4().hex}"


async def publish_audit(request: web.Request, org_id: str, entry: str, actor: str, action: str, target: str,
                        metadata: dict[str, str], at: int) -> None:
    """Publish one entry of the org's audit log; raises ``BrokerUnavailable`` (a 503) when the broker
    does not acknowledge it."""
    datum = validate_audit_event({"id": entry, "actor": actor, "action": action, "target": target,
                                  "metadata": metadata, "occurred_at": at}, org_id=org_id, now=at)
    await request.app[PRODUCER].send_records(AUDIT_EVENTS, audit_records(org_id, [datum]))
