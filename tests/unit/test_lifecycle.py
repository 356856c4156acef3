"""The trace lifecycle: final_outcome rules, command decisions, and that replaying a chain
rebuilds the same state (what the agent relies on after a crash)."""

from __future__ import annotations

import json

from schemas.codec import encode
from schemas.lifecycle import (
    TraceState,
    Verdict,
    completion_notice,
    decide,
    expiry_commands,
    fold,
)
from schemas.model import validate_trace_event
from streams.chaining import TRACE_CHAIN, ChainStore, replay_sealed, seal

TTL = 60_000
T0 = 1_795_000_000_000  # 2026-11


def event(i: int, kind: str, approval: str | None = None, at: int = T0) -> dict:
    return validate_trace_event({"event_id": f"e{i}", "trace_id": "t1", "type": kind, "occurred_at": at,
                                 "approval_request_id": approval}, org_id="o1", now=0)


def command(action: str = "outcome", status: str | None = "success", request_id: str = "r1",
            approval: str | None = None) -> dict:
    return {"request_id": request_id, "org_id": "o1", "trace_id": "t1", "action": action, "status": status,
            "approval_request_id": approval, "metadata": {"k": "v"}, "issued_at": T0 + 5_000}


def state_of(*kinds: str, approval: str | None = "ap") -> TraceState:
    state = TraceState()
    fold(state, [event(i, k, approval) for i, k in enumerate(kinds)], TTL)
    return state


def test_final_outcome_rules():
    assert state_of("trace_initiated").final_outcome == "in_progress"
    assert state_of("approval_requested").pending == {"ap": T0 + TTL}
    assert state_of("approval_requested", "approval_granted").pending == {}
    denied = state_of("policy_evaluated", "operation_denied")
    assert (denied.closed, denied.final_outcome, denied.completed_at, denied.closed_by) == (True, "denied", T0, "e1")
    # a producer's own trace_closed: its outcome field, else what its operation events say
    assert state_of("operation_failed", "trace_closed").final_outcome == "blocked"
    assert state_of("approval_requested", "approval_granted", "operation_executed",
                    "trace_closed").final_outcome == "completed_with_approval"
    # closing clears open approvals (nothing left to expire) and later closes change nothing
    late = state_of("approval_requested", "trace_closed", "operation_denied")
    assert (late.final_outcome, late.pending) == ("completed_with_approval", {})
    assert late.closed_by == "e1"


def test_outcome_commands():
    assert decide(command(), 0, TraceState()).verdict == Verdict.NOT_FOUND
    applied = decide(command(status="error"), 3, state_of("trace_initiated"))
    assert applied.verdict == Verdict.APPLIED
    assert [(e["type"], e["outcome"], e["status"]) for e in applied.events] == [
        ("operation_failed", None, "error"), ("trace_closed", "blocked", "closed")]
    assert applied.events[0]["metadata"] == {"k": "v"} and applied.events[1]["occurred_at"] == T0 + 5_000
    with_approval = decide(command(), 3, state_of("approval_requested", "approval_granted"))
    assert with_approval.events[-1]["outcome"] == "completed_with_approval"

    closed = TraceState()
    fold(closed, applied.events, TTL)
    again = decide(command(status="error"), 5, closed)  # the same command, redelivered
    assert (again.verdict, again.events) == (Verdict.APPLIED, [])
    other = decide(command(request_id="r2"), 5, closed)
    assert other.verdict == Verdict.CONFLICT and "blocked" in other.message and other.events == []


def test_expire_commands():
    pending = {b"trace\x00o1\x00t1": json.dumps({"ap": T0 + 2_000, "later": T0 + 9_000}).encode()}
    due = list(expiry_commands(pending.items(), now_ms=T0 + 5_000))
    assert [(c["trace_id"], c["approval_request_id"], c["issued_at"]) for c in due] == [("t1", "ap", T0 + 2_000)]
    state = state_of("approval_requested")
    expired = decide(command("expire", None, "", "ap"), 1, state)
    assert expired.verdict is None
    assert [(e["type"], e["outcome"]) for e in expired.events] == [("approval_expired", None),
                                                                   ("trace_closed", "expired")]
    # decided meanwhile, or another approval: nothing to do
    assert decide(command("expire", None, "", "ap"), 2, state_of("approval_requested", "approval_denied")).events == []
    assert decide(command("expire", None, "", "other"), 1, state).events == []


def test_sealing_keeps_state_and_pending_and_replay_rebuilds_them():
    store, behind = ChainStore({}, {}), ChainStore({}, {})
    first = encode("TraceEventBatch", {"org_id": "o1", "trace_id": "t1",
                                       "events": [event(1, "trace_initiated"), event(2, "approval_requested", "ap")]})
    out = seal(TRACE_CHAIN, first, store)
    assert out.advance.state.pending == {"ap": T0 + TTL * 1_440} and not out.advance.closed  # default TTL 24 h
    out.advance.save(store)
    replay_sealed(out.value, behind).save(behind)
    assert store.pending == behind.pending and list(store.pending) == [b"trace\x00o1\x00t1"]

    decision = decide(command(), store.head(b"trace\x00o1\x00t1").seq, store.state(b"trace\x00o1\x00t1"))
    closing = seal(TRACE_CHAIN, encode("TraceEventBatch", {"org_id": "o1", "trace_id": "t1",
                                                           "events": decision.events}), store)
    assert closing.advance.closed and closing.advance.state.final_outcome == "completed_with_approval"
    closing.advance.save(store)
    assert store.pending == {}  # the open approval went with the close
    replayed = replay_sealed(closing.value, behind)  # a crash lost the head write: replay rebuilds it
    assert replayed.closed
    replayed.save(behind)
    assert (behind.heads, behind.states, behind.pending) == (store.heads, store.states, {})
    notice = completion_notice(replayed.chain, replayed.state)
    assert notice["id"] == "trace.completed:o1:t1" and json.loads(notice["data"])["final_outcome"] == \
        "completed_with_approval"
    # plain events never load or write a state
    plain = seal(TRACE_CHAIN, encode("TraceEventBatch", {"org_id": "o1", "trace_id": "t2",
                                                         "events": [event(9, "SPAN") | {"trace_id": "t2"}]}),
                 store)
    assert plain.advance.state is None
