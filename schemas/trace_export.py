"""Seed 003 (governance traces) single-trace export and the views it is made of.

Pure functions of a trace's stored links (Avro datums plus seq, prev_hash, hash, in seq
order): the trace summary, its events and approval requests, and the export document
holding them. The API (trace detail and export) and the offline verifier
(``tracehouse verify-export``) both derive them here, so they agree on the same chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from schemas.integrity import as_link
from schemas.lifecycle import TraceState, fold
from schemas.timefmt import format_ms

#: Trace fields taken from the first event that carries them (the list leaves out the last).
TRACE_FIELDS = ("agent_id", "agent_name", "authority_model", "requested_operation", "target_integration",
                "resource_scope", "parent_trace_id")
#: The event columns ``trace_view``, ``event_view`` and ``approval_requests`` read (the chain link's
#: seq and hash come with every stored link): the trace detail reads only these.
VIEW_COLUMNS = ("event_id", "trace_id", "type", "occurred_at", "actor_type", "actor_name", "description", "status",
                "outcome", "policy_version", "approval_request_id", "metadata", *TRACE_FIELDS)
APPROVAL_DECISIONS = {"approval_granted": "approved", "approval_denied": "denied", "approval_expired": "expired"}

Row = Mapping[str, Any]


def _first(rows: Sequence[Row], name: str) -> Any:
    return next((r[name] for r in rows if r.get(name) is not None), None)


def iso_or_none(ms: int | None) -> str | None:
    """``format_ms(ms)``, or None for None."""
    return format_ms(ms) if ms is not None else None


def trace_view(trace_id: str, rows: Sequence[Row]) -> dict[str, Any]:
    """The seed's trace object (detail and export): agent, operation, outcome and timing. A
    trace starts at its first link (seq 1), as in the traces read model."""
    state = TraceState()
    fold(state, rows, approval_ttl_ms=0)
    started = rows[0]["occurred_at"] if rows else None
    completed = state.completed_at
    return {"id": trace_id} | {name: _first(rows, name) for name in TRACE_FIELDS} | {
        "final_outcome": state.final_outcome,
        "started_at": iso_or_none(started),
        "completed_at": iso_or_none(completed),
        "duration_ms": completed - started if completed is not None and started is not None else None,
    }


def event_view(row: Row) -> dict[str, Any]:
    """The seed's event object; ``integrity_hash`` is the chain link's hash."""
    return {
        "id": row["event_id"], "event_type": row["type"], "actor_type": row["actor_type"],
        "actor_name": row["actor_name"], "description": row["description"], "status": row["status"],
        "timestamp": format_ms(row["occurred_at"]), "policy_version": row["policy_version"],
        "approval_request_id": row["approval_request_id"], "metadata": dict(row["metadata"]) or None,
        "integrity_hash": f"sha256:{row['hash']}" if row.get("hash") else None,
    }


def approval_requests(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """One entry per approval request, in request order, with its decision if any."""
    requests: dict[str, dict[str, Any]] = {}
    for row in rows:
        approval = row["approval_request_id"]
        if row["type"] == "approval_requested":
            approval = approval or row["event_id"]
            requests.setdefault(approval, {
                "id": approval, "status": "pending",
                "flag_reason": row["metadata"].get("flag_reason") or row["description"],
                "approver_name": None, "decision_note": None, "decided_at": None})
        elif row["type"] in APPROVAL_DECISIONS and approval in requests and requests[approval]["status"] == "pending":
            requests[approval] |= {
                "status": APPROVAL_DECISIONS[row["type"]],
                "approver_name": row["actor_name"] if row["type"] != "approval_expired" else None,
                "decision_note": row["metadata"].get("decision_note") or row["description"],
                "decided_at": format_ms(row["occurred_at"])}
    return list(requests.values())


def trace_export(trace_id: str, rows: Sequence[Row], proof: dict[str, Any] | None, exported_at: int) -> dict[str, Any]:
    """The single-trace export: the seed's shape plus ``integrity``, what verify-export needs
    offline: every link as stored (the hashed datum with seq, prev_hash, hash) and the
    inclusion proof of the chain's head in a signed checkpoint (null until one covers it)."""
    return {
        "trace": trace_view(trace_id, rows),
        "events": [event_view(r) for r in rows],
        "approval_requests": approval_requests(rows),
        "exported_at": format_ms(exported_at),
        "integrity": {"chain": [as_link(r) for r in rows], "proof": proof},
    }
