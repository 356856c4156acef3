"""Seed 003 (governance traces) list item, from the traces read model.

The detail and the export are derived from the chain itself, in ``schemas.trace_export``,
which the offline verifier (``tracehouse verify-export``) shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from schemas.timefmt import format_ms
from schemas.trace_export import TRACE_FIELDS, iso_or_none

if TYPE_CHECKING:
    from sinks.repositories.traces import Trace

#: The trace fields of the list item: those of the trace object but ``parent_trace_id``.
LIST_FIELDS = TRACE_FIELDS[:-1]


def trace_list_item(trace: Trace) -> dict[str, Any]:
    """The seed's list item, from the traces read model."""
    return {"id": trace.trace_id} | {name: trace.first[name] for name in LIST_FIELDS} | {
        "final_outcome": trace.final_outcome,
        "started_at": format_ms(trace.started_at),
        "completed_at": iso_or_none(trace.completed_at),
        "duration_ms": trace.duration_ms,
        "event_count": trace.event_count,
        "has_approval": trace.has_approval,
    }
