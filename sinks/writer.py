"""The sink writer: Kafka records into ClickHouse, once each, parsed in C++.

Each record's Avro batch goes to ClickHouse as it arrived, followed by its source
(topic, partition, offset), as one row of an Avro container inserted into the
``<table>_in`` Null table; a materialized view unpacks the batch into event rows
(``sinks/migrations/0004_sink_staging.sql``, ``0005_chain_links.sql``, ``0007_traces.sql``)
and, for traces, others aggregate it into the ``traces`` read model and the hourly rollups. Python never
decodes an event on the way in. A sealed batch (``Sealed*EventBatch``) is a raw batch
followed by its links (and a trace's summary fields), so the container row has exactly
its layout; a raw batch (the unchained benchmark baseline) gets empty links appended.

Offsets are committed only after an insert succeeded, so a crash replays records
that may already be stored. The first time a partition shows up after an
assignment (or after a failed insert, which may have stored part of a batch), the
writer loads the (offset, id) pairs stored from that offset on: the replay window.
Records inside it are sent whole again with the indexes of their stored events, which the
view leaves out; records past it go through untouched. A record's trace summary row, hourly
rollup rows and trace key rows come from their own views (``0007_traces.sql``,
``0012_rollups_hourly.sql``, ``0018_trace_keys.sql``), each written in one part per insert, so
the highest offset each table holds for a partition tells which replayed records still need
theirs (``_summarize``, ``_rollup``, ``_index``: ``SinkTable.guards``): a crash between two views'
parts counts nothing twice and loses nothing. Reads never pay for deduplication.

A ``one_row`` table (``webhook_subscriptions``) takes each record whole as one row, inserted into
the table itself; ClickHouse skips the record's fields the table has no column for.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import DecodeError, current_body, decode, schema_of, sealed_links, trace_summary
from schemas.compiled import boolean_bytes, long_array, long_bytes
from schemas.registry import schema
from schemas.retry import CLICKHOUSE
from sinks.clickhouse import ClickHouse
from sinks.container import ContainerWriter, avro_string

log = logging.getLogger(__name__)

#: Skip ReplacingMergeTree's collapse-on-insert (~15 % cheaper inserts, measured here): the
#: replay window already keeps redelivered rows out, and a producer's resend of an event_id
#: is not collapsed by it either when the two land in different inserts; the chain agent
#: drops such resends before they reach the sink.
INSERT_SETTINGS = {"optimize_on_insert": 0}


@dataclass(frozen=True)
class Source:
    """Where a record came from: the sink's exactly-once key."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class SinkRecord:
    source: Source
    value: bytes  # the Kafka record value: single-object Avro


@dataclass(frozen=True)
class Rejected:
    record: SinkRecord
    reason: str


@dataclass(frozen=True)
class Guard:
    """A view fed from the staging rows whose table keeps each row's source: a record gets ``flag``
    (the view reads only flagged records) when its offset is past the highest one ``table`` holds
    for its source, found with ``where`` (parameters ``t``: topic, ``p``: partition)."""

    flag: str
    table: str
    where: str = "_topic = {t:String} AND _partition = {p:UInt32}"


@dataclass(frozen=True)
class SinkTable:
    """What one sink stores: a table, the id of its rows and the Avro records it accepts."""

    table: str
    id_column: str
    batch_schema: str
    single_schema: str
    sealed_schema: str
    batch_keys: tuple[str, ...]  # batch fields a single event supplies when it is wrapped
    unchained_tail: bytes  # what follows a raw batch to make it sealed-shaped: no links
    guards: tuple[Guard, ...] = ()  # the views fed from the same rows, each exactly once
    #: Each record (of ``batch_schema``) is one row of ``table``, inserted into it directly: no
    #: staging table, batch or seal. A record stored at its offset is left out of a replay.
    one_row: bool = False

    @property
    def staging_table(self) -> str:
        return self.table if self.one_row else f"{self.table}_in"

    @property
    def schemas(self) -> tuple[str, ...]:
        if self.one_row:
            return (self.batch_schema,)
        return (self.sealed_schema, self.batch_schema, self.single_schema)

    def staging_schema(self) -> dict[str, Any]:
        """The container row: the sealed record's fields (those after the batch's with a ``_``
        prefix), which of its events are already stored, its guards' flags, its source.
        A ``one_row`` record's row is its own fields and its source."""
        source_fields = [{"name": "_topic", "type": "string"}, {"name": "_partition", "type": "long"},
                         {"name": "_offset", "type": "long"}]
        if self.one_row:
            record = schema(self.batch_schema).wire
            return {"type": "record", "name": f"{record['name']}WithSource",
                    "fields": [*record["fields"], *source_fields]}
        sealed = schema(self.sealed_schema).wire
        batch = {f["name"] for f in schema(self.batch_schema).wire["fields"]}
        return {"type": "record", "name": f"{sealed['name']}WithSource", "fields": [
            *(f if f["name"] in batch else f | {"name": f"_{f['name']}"} for f in sealed["fields"]),
            {"name": "_stored", "type": {"type": "array", "items": "long"}},
            *({"name": g.flag, "type": "boolean"} for g in self.guards),
            *source_fields,
        ]}


#: An unchained record is stored sealed-shaped with no links: seq 0, no hashes, hash_version 0, no agent named.
TRACE_EVENTS_SINK = SinkTable("events", "event_id", "TraceEventBatch", "TraceEvent", "SealedTraceEventBatch",
                              ("org_id", "trace_id"),
                              sealed_links(0, b"", []) + trace_summary(0) + long_bytes(0) + boolean_bytes(False),
                              (Guard("_summarize", "traces", "_partition = {p:UInt32}"),
                               Guard("_rollup", "rollups_hourly"),
                               Guard("_index", "trace_keys", "_partition = {p:UInt32}")))
AUDIT_EVENTS_SINK = SinkTable("audit_events", "id", "AuditEventBatch", "AuditEvent", "SealedAuditEventBatch",
                              ("org_id",), sealed_links(0, b"", []) + long_bytes(0))
#: ``webhook-subscriptions`` records, one row per change (``0013_webhook_subscriptions.sql``): the
#: table has no column for the secrets, so ClickHouse skips them.
WEBHOOK_SUBSCRIPTIONS_SINK = SinkTable("webhook_subscriptions", "id", "WebhookSubscription", "WebhookSubscription",
                                       "WebhookSubscription", (), b"", one_row=True)
#: Every delivery attempt (``webhook-attempts``) and every dead-lettered delivery (``webhook-dead-letter``),
#: one row per record (``0014_webhook_deliveries.sql``).
WEBHOOK_ATTEMPTS_SINK = SinkTable("webhook_attempts", "delivery_id", "WebhookAttempt", "WebhookAttempt",
                                  "WebhookAttempt", (), b"", one_row=True)
WEBHOOK_DEAD_LETTERS_SINK = SinkTable("webhook_dead_letters", "id", "WebhookDelivery", "WebhookDelivery",
                                      "WebhookDelivery", (), b"", one_row=True)


@dataclass
class _ReplayWindow:
    """Rows already stored for one partition at or above the first offset seen, and, per guard,
    the highest offset its table holds for the partition."""

    stored: set[tuple[int, str]] = field(default_factory=set)
    last_offset: int = -1
    guarded: tuple[int, ...] = ()


class SinkWriter:
    """Writes the records of one ``SinkTable``; counts the replayed rows it skipped."""

    def __init__(self, ch: ClickHouse, spec: SinkTable) -> None:
        self.ch = ch
        self.spec = spec
        self.container = ContainerWriter(spec.staging_schema())
        self._windows: dict[tuple[str, int], _ReplayWindow] = {}
        self._accepted = set(spec.schemas)
        self.rows_skipped = 0

    @property
    def table(self) -> str:
        return self.spec.table

    def reset(self) -> None:
        """Forget replay windows (call on every partition assignment)."""
        self._windows.clear()

    async def _window(self, source: Source) -> _ReplayWindow:
        key = (source.topic, source.partition)
        window = self._windows.get(key)
        if window is None:
            db, params = self.ch.database, {"t": source.topic, "p": source.partition, "o": source.offset}
            rows = await self.ch.query(
                f"SELECT _offset, {self.spec.id_column} FROM {db}.{self.spec.table} "
                "WHERE _topic = {t:String} AND _partition = {p:UInt32} AND _offset >= {o:UInt64}", parameters=params)
            stored = {(int(o), i) for o, i in rows.rows}
            # a view's rows of one insert block land in one part, in offset order: every record
            # up to the highest offset a view's table holds for the partition went through it
            guarded = tuple([await self._highest(g.table, g.where, params) for g in self.spec.guards])
            window = _ReplayWindow(stored, max((o for o, _ in stored), default=-1), guarded)
            self._windows[key] = window
        return window

    async def _highest(self, table: str, where: str, params: dict[str, Any]) -> int:
        """The highest source offset in ``table`` matching ``where`` (-1 when none)."""
        found = await self.ch.query(f"SELECT max(_offset), count() FROM {self.ch.database}.{table} WHERE {where}",
                                    parameters=params)
        last, n = found.rows[0]
        return int(last) if n else -1

    def _check_schema(self, record: SinkRecord) -> str:
        name = schema_of(record.value)
        if name not in self._accepted:
            raise DecodeError(f"{name} records do not belong in {self.spec.table}")
        return name

    async def _container_row(self, record: SinkRecord, name: str) -> bytes | None:
        """The record (written with schema ``name``) as one container row, sealed-shaped,
        naming the events already stored (1-based); None when nothing of it is missing."""
        src = record.source
        window = await self._window(src)
        source = avro_string(src.topic) + long_bytes(src.partition) + long_bytes(src.offset)
        if self.spec.one_row:
            if src.offset <= window.last_offset and \
                    (src.offset, decode(record.value).datum[self.spec.id_column]) in window.stored:
                self.rows_skipped += 1
                return None
            return current_body(record.value) + source
        flags = [src.offset > highest for highest in window.guarded]
        replay = src.offset <= window.last_offset
        events: list[dict[str, Any]] = []
        if name == self.spec.single_schema:
            events = [decode(record.value).datum]
            body = schema(self.spec.batch_schema).codec.encode(
                {k: events[0][k] for k in self.spec.batch_keys} | {"events": events}) + self.spec.unchained_tail
        else:
            body = current_body(record.value) + (self.spec.unchained_tail if name == self.spec.batch_schema else b"")
            if replay:
                events = decode(record.value).datum["events"]
        stored: list[int] = []
        if replay:  # leave out what is already stored
            stored = [i for i, e in enumerate(events, 1) if (src.offset, e[self.spec.id_column]) in window.stored]
            self.rows_skipped += len(stored)
            if len(stored) == len(events) and not any(flags):
                return None
        return body + long_array(stored) + b"".join(map(boolean_bytes, flags)) + source

    @staticmethod
    def _corrupt(records: list[SinkRecord]) -> list[Rejected]:
        """Records that do not decode in full (run only after ClickHouse refused an insert)."""
        bad = []
        for r in records:
            try:
                decode(r.value)
            except DecodeError as exc:
                bad.append(Rejected(r, str(exc)))
        return bad

    async def write(self, records: list[SinkRecord]) -> list[Rejected]:
        """Store ``records``, retrying per ``schemas.retry.CLICKHOUSE`` until ClickHouse takes them.

        Returns the records that can never be stored (not tracehouse Avro, or corrupt),
        for the caller to report on ``invalid-events``.
        """
        rejected: list[Rejected] = []
        pending: list[tuple[SinkRecord, str]] = []  # with the name of the schema that wrote it
        for r in records:
            try:
                pending.append((r, self._check_schema(r)))
            except DecodeError as exc:
                rejected.append(Rejected(r, str(exc)))
        delays = CLICKHOUSE.delays()
        scanned = False
        while True:
            try:
                rows = [row for r, name in pending if (row := await self._container_row(r, name)) is not None]
                if rows:
                    await self.ch.insert_formatted(self.spec.staging_table, self.container.file(rows), "Avro",
                                                   settings=INSERT_SETTINGS)
                break
            except Exception as exc:  # ClickHouse down, table locked, network, or a corrupt record
                self.reset()  # a failed insert may have stored part of the batch: reload the windows
                if not scanned:
                    scanned = True
                    bad = self._corrupt([r for r, _ in pending])
                    if bad:
                        rejected += bad
                        dropped = {id(b.record) for b in bad}
                        pending = [(r, name) for r, name in pending if id(r) not in dropped]
                        continue
                delay = next(delays)
                log.warning("writing %s failed (%s); retrying in %.1fs", self.spec.table, exc, delay)
                await asyncio.sleep(delay)
        return rejected
