"""A trace's lifecycle (seed 003): what its governance events make of it, and the
commands on a trace the chain agent decides (record an outcome, expire an approval).

Pure logic. The state is a fold over the trace's chained events, so whatever replays
a chain (``streams.chaining.replay_sealed``) rebuilds it exactly. Commands become
events of the chain themselves (``operation_executed``/``operation_failed`` then
``trace_closed``; ``approval_expired`` then ``trace_closed``), with ids derived from
the command, so a redelivered command is recognised instead of applied twice.

final_outcome: ``in_progress`` until the trace closes; then ``executed`` or
``completed_with_approval`` (an approval was requested) on success, ``blocked`` on
error, ``denied`` when an ``operation_denied`` event arrives, ``expired`` when an
approval request stayed undecided past the TTL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any

from schemas.registry import record_fields
from schemas.timefmt import format_ms

IN_PROGRESS = "in_progress"
FINAL_OUTCOMES = frozenset({"executed", "completed_with_approval", "blocked", "denied", "expired"})
#: The event types that change a trace's lifecycle state; other events never load it.
LIFECYCLE_TYPES = frozenset({"approval_requested", "approval_granted", "approval_denied", "operation_executed",
                             "operation_failed", "operation_denied", "trace_closed"})
OUTCOME_STATUSES = ("success", "error")


class Verdict(StrEnum):
    """What the chain agent says about a command (the API answers 204, 404 or 409)."""

    APPLIED = "applied"
    NOT_FOUND = "not_found"  # no such trace
    CONFLICT = "conflict"  # the trace is closed already, by another outcome


@dataclass
class TraceState:
    """Where a trace stands. ``pending`` maps open approval request ids to their deadline (ms)."""

    closed: bool = False
    final_outcome: str = IN_PROGRESS
    completed_at: int | None = None
    closed_by: str | None = None  # event id of the closing event
    has_approval: bool = False
    operation: str | None = None  # the last operation_executed / operation_failed
    pending: dict[str, int] = field(default_factory=dict)

    def pack(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def unpack(cls, value: bytes) -> TraceState:
        return cls(**json.loads(value))

    def apply(self, event: Mapping[str, Any], approval_ttl_ms: int) -> bool:
        """Fold one chained event into the state; True when it closed the trace."""
        kind = event["type"]
        if kind == "approval_requested":
            self.has_approval = True
            if not self.closed:
                self.pending[event["approval_request_id"] or event["event_id"]] = event["occurred_at"] + approval_ttl_ms
        elif kind in ("approval_granted", "approval_denied"):
            if event["approval_request_id"] is None:
                self.pending.clear()
            else:
                self.pending.pop(event["approval_request_id"], None)
        elif kind in ("operation_executed", "operation_failed"):
            self.operation = kind
        elif kind == "operation_denied":
            return self._close("denied", event)
        elif kind == "trace_closed":
            outcome = event["outcome"]
            return self._close(outcome if outcome in FINAL_OUTCOMES else self._derived_outcome(), event)
        return False

    def _derived_outcome(self) -> str:
        if self.operation == "operation_failed":
            return "blocked"
        return "completed_with_approval" if self.has_approval else "executed"

    def _close(self, outcome: str, event: Mapping[str, Any]) -> bool:
        if self.closed:
            return False
        self.closed, self.final_outcome = True, outcome
        self.completed_at, self.closed_by = event["occurred_at"], event["event_id"]
        self.pending.clear()
        return True


def fold(state: TraceState, events: Iterable[Mapping[str, Any]], approval_ttl_ms: int) -> bool:
    """Apply ``events`` in order; True when one of them closed the trace."""
    closed = False
    for event in events:
        closed |= state.apply(event, approval_ttl_ms)
    return closed


def touches_lifecycle(events: Iterable[Mapping[str, Any]]) -> bool:
    return any(e["type"] in LIFECYCLE_TYPES for e in events)


@dataclass(frozen=True)
class Decision:
    """The agent's answer to a command: a verdict (None: nobody asked) and the events to chain."""

    verdict: Verdict | None
    message: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)


def decide(command: Mapping[str, Any], chain_length: int, state: TraceState) -> Decision:
    """Decide ``command`` against a chain of ``chain_length`` links in ``state``."""
    if command["action"] == "outcome":
        return _decide_outcome(command, chain_length, state)
    if command["action"] == "expire":
        approval = command["approval_request_id"]
        if state.closed or approval not in state.pending:
            return Decision(None)
        expired = _event(command, "approval_expired", status="expired", approval_request_id=approval,
                         description=f"Approval request {approval} was not decided in time")
        return Decision(None, events=[expired, _closing(command, "expired")])
    return Decision(None)


def _decide_outcome(command: Mapping[str, Any], chain_length: int, state: TraceState) -> Decision:
    trace_id = command["trace_id"]
    if chain_length == 0:
        return Decision(Verdict.NOT_FOUND, f"trace {trace_id} not found")
    if state.closed:
        if state.closed_by == _event_id(command, "trace_closed"):
            return Decision(Verdict.APPLIED)  # this very command, redelivered
        return Decision(Verdict.CONFLICT, f"trace {trace_id} is already finalized ({state.final_outcome})")
    success = command["status"] == "success"
    outcome = ("completed_with_approval" if state.has_approval else "executed") if success else "blocked"
    operation = _event(command, "operation_executed" if success else "operation_failed", status=command["status"],
                       metadata=dict(command["metadata"]),
                       description="Operation completed successfully" if success else "Operation execution failed")
    return Decision(Verdict.APPLIED, events=[operation, _closing(command, outcome)])


def _closing(command: Mapping[str, Any], outcome: str) -> dict[str, Any]:
    return _event(command, "trace_closed", status="closed", outcome=outcome,
                  description=f"Trace finalized: {outcome}")


def _event_id(command: Mapping[str, Any], kind: str) -> str:
    """Derived from the command, so a redelivered command yields the same ids."""
    ref = command["request_id"] if command["action"] == "outcome" else command["approval_request_id"]
    return f"th-{command['action']}-{ref}-{kind}"


def _event(command: Mapping[str, Any], kind: str, **fields: Any) -> dict[str, Any]:
    """A TraceEvent datum written by tracehouse itself (actor: system)."""
    return _blank_event() | {
        "event_id": _event_id(command, kind), "org_id": command["org_id"], "trace_id": command["trace_id"],
        "class": "governance", "type": kind, "name": kind, "occurred_at": command["issued_at"],
        "actor_type": "system", "actor_name": "tracehouse",
    } | fields


@cache
def _defaults() -> tuple[tuple[str, Any], ...]:
    return tuple((f["name"], f.get("default")) for f in record_fields("TraceEvent"))


def _blank_event() -> dict[str, Any]:
    event = dict(_defaults())
    event["scores"], event["tags"], event["metadata"] = {}, [], {}
    return event


def expiry_commands(pending: Iterable[tuple[bytes, bytes]], now_ms: int) -> Iterator[dict[str, Any]]:
    """``expire`` commands for the approvals past their deadline, from the pending table's
    items (chain key ``trace\\0org\\0trace_id`` -> JSON ``{approval id: deadline}``)."""
    for chain, value in pending:
        org_id, trace_id = trace_of(chain)
        for approval, deadline in json.loads(value).items():
            if deadline <= now_ms:
                yield {"request_id": "", "org_id": org_id, "trace_id": trace_id, "action": "expire", "status": None,
                       "approval_request_id": approval, "metadata": {}, "issued_at": deadline}


def trace_of(chain: bytes) -> tuple[str, str]:
    """(org_id, trace_id) of a trace chain key (``trace\\0org\\0trace_id``)."""
    _kind, org_id, trace_id = chain.decode().split("\x00", 2)
    return org_id, trace_id


def completion_notice(chain: bytes, state: TraceState) -> dict[str, Any]:
    """The ``trace.completed`` WebhookEvent datum of trace ``chain``, which just closed."""
    org_id, trace_id = trace_of(chain)
    data = {"trace_id": trace_id, "final_outcome": state.final_outcome, "has_approval": state.has_approval,
            "completed_at": format_ms(state.completed_at or 0)}
    return {"id": f"trace.completed:{org_id}:{trace_id}", "type": "trace.completed", "org_id": org_id,
            "occurred_at": state.completed_at, "data": json.dumps(data, separators=(",", ":"))}


def approval_notice(chain: bytes, event: Mapping[str, Any]) -> dict[str, Any]:
    """The ``approval.requested`` WebhookEvent datum of an ``approval_requested`` event just chained
    onto trace ``chain``: an approver has something to decide."""
    org_id, trace_id = trace_of(chain)
    data = {"trace_id": trace_id, "event_id": event["event_id"], "approval_request_id": event["approval_request_id"],
            "occurred_at": format_ms(event["occurred_at"]), "type": event["type"], "class": event.get("class"),
            "agent_id": event.get("agent_id"), "agent_name": event.get("agent_name"),
            "requested_operation": event.get("requested_operation"), "description": event.get("description"),
            "metadata": dict(event.get("metadata") or {})}
    return {"id": f"approval.requested:{org_id}:{trace_id}:{event['event_id']}", "type": "approval.requested",
            "org_id": org_id, "occurred_at": event["occurred_at"], "data": json.dumps(data, separators=(",", ":"))}
