"""An ingest request body in, Kafka records out: parse, validate, group, encode.

That work is CPU-bound Python (~20 µs per event), and the event loop that runs it
also serves queries and feeds the sink. ``PreparationPool`` therefore runs it in
worker processes (``TRACEHOUSE_INGEST_PROCESSES``; 0 runs it inline), so the
event loop only moves bytes: the body goes in, encoded records come back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf import json_format

from schemas import otlp, otlp_spans
from schemas.edge import Declined, edge_encoder
from schemas.model import ValidationError, validate_audit_event, validate_trace_event
from schemas.producer import audit_batch_records, trace_batch_records
from schemas.timefmt import format_ms, now_ms

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_REPORTED_PAYLOAD = 64 * 1024


@dataclass(frozen=True)
class Prepared:
    """What one request becomes. Plain data: it crosses a process boundary."""

    records: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, value)
    accepted: list[str] = field(default_factory=list)  # ids of the valid events, in request order
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {index, field, reason}
    reports: list[dict[str, Any]] = field(default_factory=list)  # for invalid-events
    #: (status, code, message, details) when the request as a whole is refused
    error: tuple[int, str, str, dict[str, Any] | None] | None = None

    def rejections(self, most: int = 10) -> str:
        """The first ``most`` rejections in one line: ``span 3: trace_id: <reason>; ...; and 4 more``."""
        named = "; ".join(f"span {r['index']}: {r['field']}: {r['reason']}" for r in self.rejected[:most])
        return named + (f"; and {len(self.rejected) - most} more" if len(self.rejected) > most else "")


def prepare(kind: str, raw: bytes, org_id: str, source: str, max_events: int, max_event_bytes: int) -> Prepared:
    """Turn the body of POST /v1/events (``kind="trace"``) or /v1/audit/events (``"audit"``)
    into batch records, with every rejection reported by index. An event whose encoding
    exceeds ``max_event_bytes`` is rejected (field ``(event)``); when every event is, 413."""
    now = now_ms()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return Prepared(
            reports=[{"source": source, "org_id": org_id, "received_at": format_ms(now),
                      "field": "(body)", "reason": f"malformed JSON: {why}",
                      "payload": raw[:MAX_REPORTED_PAYLOAD].decode("utf-8", "replace")}],
            error=(400, "invalid_json", f"request body is not valid JSON: {why}", None))
    if isinstance(body, dict) and set(body) == {"events"}:
        body = body["events"]
    if not isinstance(body, list):
        return Prepared(error=(400, "validation_error", 'body must be a JSON array of events or {"events": [...]}',
                               {"field": "(body)"}))
    if len(body) > max_events:
        return Prepared(error=(413, "batch_too_large",
                               f"{len(body)} events in one request; the limit is {max_events}",
                               {"max_events": max_events}))
    if not body:
        return Prepared(error=(400, "validation_error", "no events in the request", {"field": "(body)"}))

    return _prepare_items(kind, body, org_id, source, now, max_event_bytes)


def prepare_otlp(raw: bytes, media: str, org_id: str, source: str, max_events: int,
                 max_event_bytes: int) -> Prepared:
    """Turn the body of an OTLP/HTTP ``POST /v1/traces`` (``media``: protobuf or JSON) into trace
    batch records, each span an event (``schemas.otlp``); rejections are reported by span index."""
    now = now_ms()
    try:
        request = otlp.decode(raw, media)
    except otlp.UndecodableRequest as exc:
        return Prepared(
            reports=[{"source": source, "org_id": org_id, "received_at": format_ms(now), "field": "(body)",
                      "reason": str(exc), "payload": raw[:MAX_REPORTED_PAYLOAD].decode("utf-8", "replace")}],
            error=(400, "invalid_otlp", str(exc), None))
    count = otlp.span_count(request)
    if count > max_events:
        return Prepared(error=(413, "batch_too_large", f"{count} spans in one request; the limit is {max_events}",
                               {"max_events": max_events}))
    items: list[Any] = []
    for context, span in otlp.spans(request):
        try:
            items.append(otlp_spans.span_event(context, span))
        except ValidationError as exc:
            items.append(_Invalid(exc, json_format.MessageToDict(span)))
    if not items:
        return Prepared()
    prepared = _prepare_items("trace", items, org_id, source, now, max_event_bytes)
    if prepared.error is not None:  # OTLP errors carry a message only: it names the spans
        status, code, message, _ = prepared.error
        return dataclasses.replace(prepared, error=(status, code, f"{message}: {prepared.rejections()}", None))
    return prepared


@dataclass(frozen=True)
class _Invalid:
    """An item already known invalid (an OTLP span whose ids are malformed), with what to report."""

    error: ValidationError
    payload: Any


def _prepare_items(kind: str, items: list[Any], org_id: str, source: str, now: int,
                   max_event_bytes: int) -> Prepared:
    """Validate and encode each item (a JSON event); the records of the valid ones, grouped by trace."""
    event_schema, validate = ("TraceEvent", validate_trace_event) if kind == "trace" else \
        ("AuditEvent", validate_audit_event)
    edge = edge_encoder(event_schema)
    groups: dict[str | None, list[bytes]] = {}  # trace_id (None for audit) -> encoded events
    accepted, rejected, reports = [], [], []
    oversized = 0

    def reject(index: int, field: str, reason: str, payload: Any) -> None:
        rejected.append({"index": index, "field": field, "reason": reason})
        reports.append({"source": source, "org_id": org_id, "received_at": format_ms(now),
                        "index": index, "field": field, "reason": reason,
                        "payload": json.dumps(payload, default=str)[:MAX_REPORTED_PAYLOAD]})

    for index, item in enumerate(items):
        if isinstance(item, _Invalid):
            reject(index, item.error.field, item.error.reason, item.payload)
            continue
        try:
            encoded, event_id, trace_id = edge.encode(item, org_id, now)
        except Declined:  # the general path: the error that names the field, or the same bytes
            try:
                datum = validate(item, org_id=org_id, now=now)
            except ValidationError as exc:
                reject(index, exc.field, exc.reason, item)
                continue
            encoded, event_id, trace_id = edge.encode_datum(datum)
        if len(encoded) > max_event_bytes:
            oversized += 1
            reject(index, "(event)", f"the event is {len(encoded)} bytes encoded; the limit is {max_event_bytes} "
                                     "(TRACEHOUSE_MAX_EVENT_BYTES)", item)
            continue
        groups.setdefault(trace_id, []).append(encoded)
        accepted.append(event_id)
    records = list(_records(org_id, groups))
    error = None
    if not accepted and oversized == len(rejected):
        error = (413, "event_too_large", "every event in the request is larger than the limit",
                 {"max_event_bytes": max_event_bytes, "rejected": rejected})
    elif not accepted:
        error = (400, "validation_error", "no valid events in the request", {"rejected": rejected})
    return Prepared(records, accepted, rejected, reports, error)


def _records(org_id: str, groups: dict[str | None, list[bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """Kafka (key, value) records: a trace's events keyed by trace_id, an org's audit events by org_id."""
    for trace_id, events in groups.items():
        if trace_id is None:
            yield from audit_batch_records(org_id, events)
        else:
            yield from trace_batch_records(org_id, trace_id, events)


def _warm() -> None:
    """Import and compile everything a worker needs before the first request."""
    prepare("trace", b'[{"trace_id": "t"}]', "warm-up", "warm-up", 1, 1024)
    prepare_otlp(b"{}", otlp.JSON, "warm-up", "warm-up", 1, 1024)


def _init_worker(parent_pid: int) -> None:
    """Warm up, and exit when the parent is gone: a worker outlives a kill -9 of its parent
    otherwise, blocked on a queue it holds both ends of."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    _warm()


class PreparationPool:
    """Runs ``prepare`` in ``processes`` worker processes (inline when 0), and other CPU-heavy work
    of a request (``call``)."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._executor: Executor | None = None

    def _new_executor(self) -> Executor:
        # spawn, never fork: the parent runs threads (Faust's consumer, chdb) a fork would copy mid-lock
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(os.getpid(),))

    async def start(self) -> None:
        if self.processes > 0:
            self._executor = self._new_executor()
            # a no-op per worker: spawning (and the warm-up in each worker's initializer)
            # happens now, not on the first request
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(self._executor, os.getpid) for _ in range(self.processes)))

    async def prepare(self, kind: str, raw: bytes, org_id: str, source: str, max_events: int,
                      max_event_bytes: int) -> Prepared:
        return await self._inline_or_submit(prepare, kind, raw, org_id, source, max_events, max_event_bytes)

    async def prepare_otlp(self, raw: bytes, media: str, org_id: str, source: str, max_events: int,
                           max_event_bytes: int) -> Prepared:
        return await self._inline_or_submit(prepare_otlp, raw, media, org_id, source, max_events, max_event_bytes)

    async def _inline_or_submit(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            return fn(*args)
        return await self._submit(fn, *args)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker process (in a thread when there is none): CPU-heavy work of a
        request, such as hashing a long chain's links, off the event loop and onto another core.
        ``fn`` and its arguments must pickle."""
        if self._executor is None:
            return await asyncio.to_thread(fn, *args)
        return await self._submit(fn, *args)

    async def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except BrokenProcessPool:  # a worker died (OOM killer, signal): replace the pool, retry once
            log.warning("worker process died; starting a new pool")
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()
            return await loop.run_in_executor(self._executor, fn, *args)

    async def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
