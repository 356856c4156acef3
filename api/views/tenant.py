"""Seed 002 (tenant traces) views: the list item from the traces read model, and the detail,
which adds what only the trace's events hold (messages, output, tools, metadata).

Choices where the seed is silent (README "Tenant traces"): ``promptName`` is the first
prompt_name, else the first event name; ``status`` is ``error`` when any event reported
STATUS_CODE_ERROR, else ``completed``; ``duration`` runs from the first link to the close,
or to the last event's end while the trace is open; ``messages`` are the events' messages
in chain order, where an event that repeats the conversation so far adds only its new ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from schemas.timefmt import format_ms

if TYPE_CHECKING:
    from sinks.repositories.traces import Trace

Row = Mapping[str, Any]
#: The first values (traces read model) the list item and the detail show.
LIST_FIRST = ("prompt_name", "name", "model", "model_config")
DETAIL_FIRST = (*LIST_FIRST, "cost_currency")


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _model_config(trace: Trace) -> dict[str, Any] | None:
    config = _json(trace.first["model_config"])
    config = dict(config) if isinstance(config, dict) else {}
    if trace.first["model"] is not None:
        config.setdefault("model", trace.first["model"])
    return config or None


def list_item(trace: Trace) -> dict[str, Any]:
    """The seed's list item."""
    end = trace.completed_at if trace.completed_at is not None else trace.last_event_at
    return {
        "traceId": trace.trace_id,
        "promptName": trace.first["prompt_name"] or trace.first["name"],
        "status": "error" if trace.has_error else "completed",
        "tags": list(trace.tags),
        "inputTokens": trace.input_tokens,
        "outputTokens": trace.output_tokens,
        "totalTokens": trace.total_tokens,
        "cost": trace.cost,
        "duration": end - trace.started_at,
        "modelConfig": _model_config(trace),
        "createdAt": format_ms(trace.started_at),
    }


def conversation(rows: Sequence[Row]) -> list[Any]:
    """The events' messages in chain order; an event whose messages start with the
    conversation so far (a model call sending the whole history) adds only the rest."""
    messages: list[Any] = []
    for row in rows:
        own = _json(row["messages"])
        if not isinstance(own, list):
            continue
        messages += own[len(messages):] if own[:len(messages)] == messages else own
    return messages


def _last(rows: Sequence[Row], name: str) -> Any:
    return next((_json(r[name]) for r in reversed(rows) if r[name] is not None), None)


def _first(rows: Sequence[Row], name: str) -> Any:
    return next((_json(r[name]) for r in rows if r[name] is not None), None)


#: The event columns ``detail`` reads from a trace's stored links: the detail reads only these.
DETAIL_COLUMNS = ("messages", "output", "tools", "tool_choice", "metadata")


def detail(trace: Trace, rows: Sequence[Row]) -> dict[str, Any]:
    """The seed's detail: the list item plus what the events hold (``rows`` in seq order)."""
    metadata: dict[str, str] = {}
    for row in rows:
        metadata.update(row["metadata"])
    item = list_item(trace)
    return {
        "traceId": item["traceId"], "promptName": item["promptName"], "messages": conversation(rows),
        "output": _last(rows, "output"),
        "inputTokens": item["inputTokens"], "outputTokens": item["outputTokens"],
        "totalTokens": item["totalTokens"], "cost": item["cost"], "costCurrency": trace.first["cost_currency"],
        "duration": item["duration"], "modelConfig": item["modelConfig"], "tools": _first(rows, "tools"),
        "toolChoice": _first(rows, "tool_choice"), "status": item["status"], "tags": item["tags"],
        "metadata": metadata, "createdAt": item["createdAt"], "timestamp": trace.started_at,
    }
