"""Governance traces (seed 003): list and read traces, verify a trace, record its outcome."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any
from urllib.parse import quote

from aiohttp import web

from api.audit_trail import publish_audit
from api.auth import authenticate, require_scope
from api.body import json_body
from api.chain_checks import checked_trace_links
from api.commands import CommandVerdict
from api.context import CHAINS, CHECKPOINTS, PREPARATION, PRODUCER, SETTINGS, TRACES, VERDICTS, VERIFIER, caller_org
from api.errors import ApiError, bad_param, not_found
from api.paging import paging, read_page
from api.params import bool_param, enum_param, int_param, reject_unknown, str_param, time_range
from api.views.governance import LIST_FIELDS, trace_list_item
from schemas import lifecycle
from schemas.canonical import canonical_json
from schemas.codec import encode
from schemas.integrity import Verdict, stored_link_hash, verify
from schemas.lifecycle import FINAL_OUTCOMES, IN_PROGRESS, OUTCOME_STATUSES
from schemas.merkle import audit_path
from schemas.producer import BrokerUnavailable
from schemas.timefmt import format_ms, now_ms
from schemas.topics import CHECKPOINT_REQUESTS, TRACE_EVENTS
from schemas.trace_export import VIEW_COLUMNS, approval_requests, event_view, trace_export, trace_view
from sinks.repositories.chains import TRACE_LINKS
from sinks.repositories.checkpoints import CheckpointRepository, Coverage
from sinks.repositories.traces import TraceQuery, first_value_is, outcome_is

log = logging.getLogger(__name__)

LIST_PARAMS = ("agent_id", "outcome", "from", "to", "limit", "offset", "cursor")
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
#: The seed's outcome filter values; ``pending`` is the seed's word for in_progress.
OUTCOME_FILTERS = ("pending", IN_PROGRESS, *sorted(FINAL_OUTCOMES))


def trace_query(query: Mapping[str, str]) -> TraceQuery:
    """The list's filters: agent_id, outcome, and from/to on started_at."""
    since_ms, until_ms = time_range(query, "from", "to")
    filters = []
    agent_id = str_param(query, "agent_id")
    if agent_id is not None:
        filters.append(first_value_is("agent_id", agent_id))
    outcome = enum_param(query, "outcome", OUTCOME_FILTERS)
    if outcome is not None:
        filters.append(outcome_is(IN_PROGRESS if outcome == "pending" else outcome))
    return TraceQuery(since_ms, until_ms, tuple(filters))


async def list_traces(request: web.Request) -> web.Response:
    """Traces newest first: ``{data, pagination: {total, limit, offset, next_cursor}}``."""
    org_id = await caller_org(request, "traces:read")
    q = request.query
    reject_unknown(q, LIST_PARAMS)
    limit = int_param(q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = int_param(q, "offset", 0, 0, 2**31)
    page = paging(q, limit, offset, "offset")
    query = trace_query(q)
    repo = request.app[TRACES]
    found, total = await asyncio.gather(read_page(repo, org_id, query, page, LIST_FIELDS), repo.count(org_id, query))
    return web.json_response({
        "data": [trace_list_item(t) for t in found.traces],
        "pagination": {"total": total, "limit": limit, "offset": offset, "next_cursor": found.next_cursor},
    })


async def get_trace(request: web.Request) -> web.Response:
    """One trace with its ordered events and approval requests, derived from its chain."""
    _, trace_id, rows = await stored_chain(request, "traces:read", (), VIEW_COLUMNS)
    return web.json_response(trace_view(trace_id, rows) | {
        "events": [event_view(r) for r in rows], "approval_requests": approval_requests(rows)})


def verdict_json(verdict: Verdict) -> dict:
    """The seed's verify fields: first_invalid_event (and our reason) only when invalid."""
    out: dict = {"valid": verdict.valid, "event_count": verdict.event_count}
    if not verdict.valid:
        out["first_invalid_event"] = verdict.first_invalid_event
        out["reason"] = verdict.reason
    out["verified_at"] = format_ms(now_ms())
    return out


async def stored_chain(request: web.Request, scope: str, params: tuple[str, ...],
                       columns: Sequence[str] | None = None) -> tuple[str, str, list[dict]]:
    """Authenticate, check the query, and load the trace's stored links with ``columns`` of their
    events (all when None; 404 when none in the caller's org)."""
    org_id = await caller_org(request, scope)
    reject_unknown(request.query, params)
    trace_id = request.match_info["trace_id"]
    rows = await request.app[CHAINS].trace_links(org_id, trace_id, columns)
    if not rows:
        raise not_found(f"trace {trace_id}")
    return org_id, trace_id, rows


async def verify_trace(request: web.Request) -> web.Response:
    """Recompute a trace's chain from what ClickHouse holds, against the newest signed
    checkpoint covering it (a truncated tail shows); ``proof=true`` adds the inclusion proof."""
    org_id = await caller_org(request, "traces:read")
    reject_unknown(request.query, ("proof",))
    trace_id = request.match_info["trace_id"]
    with_proof = bool_param(request.query, "proof")
    chains = request.app[CHAINS]
    rows = await checked_trace_links(chains, request.app[PREPARATION], org_id, trace_id)
    recompute = itemgetter("recomputed")
    if rows is None:  # a link hashed as version 1, or content the fast path cannot read: as dicts
        rows, recompute = await chains.trace_links(org_id, trace_id), stored_link_hash
    if not rows:
        raise not_found(f"trace {trace_id}")
    coverage = await request.app[CHECKPOINTS].covering("trace", org_id, trace_id)
    head = (coverage.leaf.seq, coverage.leaf.hash) if coverage else None
    verdict = await asyncio.to_thread(verify, rows, TRACE_LINKS.id_column, expected_head=head, recompute=recompute)
    body = {"trace_id": trace_id} | verdict_json(verdict)
    if with_proof:
        body["proof"] = await inclusion(request.app[CHECKPOINTS], coverage) if coverage else None
    return web.json_response(body)


async def inclusion(repository: CheckpointRepository, coverage: Coverage) -> dict[str, Any]:
    """The signed checkpoint, the chain's leaf in it and its audit path (hex, bottom-up)."""
    hashes = await repository.leaf_hashes(coverage.signed.checkpoint.number)
    path = await asyncio.to_thread(audit_path, hashes, coverage.leaf_index)
    leaf = coverage.leaf
    return {"checkpoint": coverage.signed.to_json(),
            "leaf": {"kind": leaf.kind, "org_id": leaf.org_id, "chain": leaf.chain_id, "seq": leaf.seq,
                     "hash": leaf.hash},
            "leaf_index": coverage.leaf_index, "tree_size": len(hashes), "path": [h.hex() for h in path]}


async def export_trace(request: web.Request) -> web.Response:
    """The single-trace JSON export (seed 003: reviewer or admin) with what ``tracehouse
    verify-export`` needs to check it offline. When no checkpoint covers the trace yet, the
    checkpointer is asked for one and the export waits for it (up to the command timeout), so
    the export verifies offline as it is made."""
    org_id, trace_id, rows = await stored_chain(request, "reviewer", ())
    coverage = await request.app[CHECKPOINTS].covering("trace", org_id, trace_id)
    if coverage is None and request.app[SETTINGS].chain_events:
        coverage = await checkpoint_now(request, org_id, trace_id, rows[-1]["seq"])
    proof = await inclusion(request.app[CHECKPOINTS], coverage) if coverage else None
    body = trace_export(trace_id, rows, proof, now_ms())
    return web.json_response(body, headers={
        "Content-Disposition": f'attachment; filename="trace-{quote(trace_id, safe="")}.json"'})


async def checkpoint_now(request: web.Request, org_id: str, trace_id: str, seq: int) -> Coverage | None:
    """Ask the checkpointer for a checkpoint (``checkpoint-requests``; it signs at most one early
    checkpoint per ``TRACEHOUSE_CHECKPOINT_ON_DEMAND_SECONDS``, so the request is repeated that often)
    and wait until one covers the trace; None when none did within the command timeout."""
    settings = request.app[SETTINGS]
    ask = json.dumps({"org_id": org_id, "trace_id": trace_id, "seq": seq}).encode()
    deadline = time.monotonic() + settings.command_timeout_seconds
    asked = float("-inf")
    while time.monotonic() < deadline:
        if time.monotonic() - asked >= settings.checkpoint_on_demand_seconds:
            await request.app[PRODUCER].send_records(CHECKPOINT_REQUESTS, [(org_id.encode(), ask)])
            asked = time.monotonic()
        await asyncio.sleep(0.2)
        coverage = await request.app[CHECKPOINTS].covering("trace", org_id, trace_id)
        if coverage is not None:
            return coverage
    return None


#: Outcome metadata limits: keys, and bytes of keys plus values as stored (UTF-8; a
#: non-string value is stored as its canonical JSON text).
MAX_OUTCOME_METADATA = 100
MAX_OUTCOME_METADATA_BYTES = 64 * 1024


def outcome_body(raw: bytes) -> tuple[str, dict[str, str]]:
    """``{"status": "success"|"error", "metadata": {...}}`` -> (status, metadata as strings:
    non-string values are kept as their canonical JSON text)."""
    body = json_body(raw, "with status and optional metadata")
    for name in body:
        if name not in ("status", "metadata"):
            raise bad_param(name, "unknown field (allowed: status, metadata)")
    status = body.get("status")
    if status not in OUTCOME_STATUSES:
        raise bad_param("status", "required, one of: success, error")
    metadata: Any = body.get("metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise bad_param("metadata", "must be a JSON object")
    if len(metadata) > MAX_OUTCOME_METADATA:
        raise bad_param("metadata", f"at most {MAX_OUTCOME_METADATA} keys")
    stored = {k: v if isinstance(v, str) else canonical_json(v) for k, v in metadata.items()}
    size = 0
    for k, v in stored.items():
        item = len(k.encode()) + len(v.encode())
        if item > MAX_OUTCOME_METADATA_BYTES:
            raise bad_param(f"metadata.{k}", f"larger than {MAX_OUTCOME_METADATA_BYTES} bytes")
        size += item
    if size > MAX_OUTCOME_METADATA_BYTES:
        raise bad_param("metadata", f"keys and values total more than {MAX_OUTCOME_METADATA_BYTES} bytes")
    return status, stored


async def record_outcome(request: web.Request) -> web.Response:
    """Finalize a trace: the chain agent chains the outcome and trace_closed events, or
    answers 404 (no such trace in the caller's org) or 409 (already finalized). Once applied,
    ``trace.outcome_recorded`` is appended to the org's audit log."""
    principal = await authenticate(request, request.app[VERIFIER])
    org_id = require_scope(principal, "traces:write")
    reject_unknown(request.query, ())
    status, metadata = outcome_body(await request.read())
    app = request.app
    if VERDICTS not in app:
        raise ApiError(503, "unavailable", "outcomes need the chain agents (TRACEHOUSE_CHAIN_EVENTS=true)")
    trace_id = request.match_info["trace_id"]
    request_id = uuid.uuid4().hex
    command = encode("TraceCommand", {
        "request_id": request_id, "org_id": org_id, "trace_id": trace_id, "action": "outcome", "status": status,
        "approval_request_id": None, "metadata": metadata, "issued_at": now_ms()})
    publish = app[PRODUCER].send_records(TRACE_EVENTS, [(trace_id.encode(), command)])
    try:
        verdict: CommandVerdict = await app[VERDICTS].decide(request_id, publish, app[SETTINGS].command_timeout_seconds)
    except TimeoutError:
        raise ApiError(504, "timeout", "the outcome was queued but not decided in time; GET the trace to see whether "
                       "it was recorded (a retry of a recorded outcome answers 409)") from None
    if verdict.verdict is lifecycle.Verdict.APPLIED:
        await _audit_outcome(request, org_id, principal.key_id, trace_id, request_id, status)
        return web.Response(status=204)
    if verdict.verdict is lifecycle.Verdict.NOT_FOUND:
        raise not_found(f"trace {trace_id}")
    raise ApiError(409, "conflict", verdict.message)


async def _audit_outcome(request: web.Request, org_id: str, key_id: str, trace_id: str, request_id: str,
                         status: str) -> None:
    """Append ``trace.outcome_recorded``. The outcome is applied already: when the broker does not take
    the entry the answer stays 204 (a retry would be a 409) and the loss is logged as an error."""
    try:
        await publish_audit(request, org_id, f"outcome.{request_id}", key_id, "trace.outcome_recorded", trace_id,
                            {"status": status, "request_id": request_id}, now_ms())
    except BrokerUnavailable:
        log.error("outcome %s of trace %r (org %r) applied, but its audit entry was not acknowledged",
                  request_id, trace_id, org_id)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/traces", list_traces)
    app.router.add_get("/api/v1/traces/{trace_id:[^/]+}", get_trace)
    app.router.add_get("/api/v1/traces/{trace_id:[^/]+}/verify", verify_trace)
    app.router.add_post("/api/v1/traces/{trace_id:[^/]+}/outcome", record_outcome)
    app.router.add_get("/api/v1/traces/{trace_id:[^/]+}/export", export_trace)
