"""The worker's parts: the Faust app (chain agents) and the sink; nothing is registered at import time."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from aiokafka import TopicPartition
from faust.exceptions import ConsumerNotStarted

from schemas.checkpoints import load_signing_key
from schemas.topics import (
    AUDIT_EVENTS,
    CHECKPOINTS,
    COMMAND_VERDICTS,
    INVALID_EVENTS,
    ROLLUPS_HOURLY,
    SEALED_EVENTS,
    TRACE_EVENTS,
    WEBHOOK_EVENTS,
)
from sinks.clickhouse import ClickHouse
from sinks.repositories.chains import ChainRepository
from sinks.repositories.checkpoints import CheckpointRepository
from sinks.repositories.rollups import RollupRepository
from sinks.writer import AUDIT_EVENTS_SINK, TRACE_EVENTS_SINK, SinkWriter
from streams.chain import (
    TABLE_NAMES,
    AgentTopics,
    ChainAgent,
    SealedTail,
    add_expiry_timer,
    chain_tables,
    partitioner,
)
from streams.chaining import AUDIT_CHAIN, TRACE_CHAIN, ChainStore
from streams.checkpointer import CHECKPOINT_GROUP, Checkpointer
from streams.embedded.compaction import ChangelogCompactor, add_compaction_timer
from streams.rollups import RollupPublisher
from streams.sink import SINK_GROUP, Sink
from tracehouse.settings import Settings

APP_ID = "tracehouse"
#: Faust's changelogs of the chain tables (Faust names them ``<app id>-<table>-changelog``);
#: chain-heads holds every head the agents save.
CHANGELOGS = {attr: f"{APP_ID}-{name}-changelog" for attr, name in TABLE_NAMES.items()}
HEADS_CHANGELOG = CHANGELOGS["heads"]


def raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """A topic of Avro bytes: tracehouse decodes values itself (schemas.codec)."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=partitions)


class TracehouseApp(faust.App):
    """``faust.App`` that never drops fetched records on a rebalance, plus ``settled``:
    set once a rebalance is over and every stream partition was sought back to its
    committed offset.

    Faust 0.15.3 seeks to the committed offsets and only then resumes the flow, and
    resuming clears the stream queues (``clear_on_resume``). Records fetched in between
    were dropped from the queues while Faust's read offsets were already past them, so
    they were never processed in that generation (measured: kill -9 restarts lost up to
    2,880 of 12,000 events). Here the queues keep their records, and once the flow is
    back the consumer seeks to the committed offsets again. Either may deliver a record
    twice; the chain agents recognise what they already linked as a retry.
    """

    def FlowControlQueue(self, maxsize: int | None = None, *,  # noqa: N802 (Faust's name)
                         clear_on_resume: bool = False) -> Any:
        return super().FlowControlQueue(maxsize, clear_on_resume=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settled = asyncio.Event()
        self._seeking: asyncio.Future[None] | None = None
        self.chains: ChainStore | None = None
        self.failure: asyncio.Future[None] | None = None

    def fail(self, exc: BaseException) -> None:
        """A chain agent cannot go on safely: the process must stop (``tracehouse.runtime``)."""
        if self.failure is not None and not self.failure.done():
            self.failure.set_exception(exc)

    def sealed_trim_cap(self, tp: TopicPartition) -> int | None:
        """How far ``sealed-events`` may be trimmed: not past a record whose head write may
        have been lost (``streams.chain.SealedTail`` reads those back after a crash)."""
        if tp.topic != SEALED_EVENTS:
            return None
        known = self.chains.sealed_offset(tp.partition) if self.chains is not None else None
        return 0 if known is None else known + 1

    def on_rebalance_start(self) -> None:
        super().on_rebalance_start()
        if not self._assigned_partitions():  # nothing is in flight: hold records from now on
            self.settled.clear()

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        """Before it revokes partitions, Faust waits here for the records the agents are
        processing. Records are held (``settled`` cleared) only from then on: a record
        delivered earlier in the rebalance and held would never finish, and Faust would wait
        for it forever (seen when the broker restarted under the worker)."""
        await super()._consumer_wait_empty(consumer, logger)
        self.settled.clear()

    def _assigned_partitions(self) -> set[Any]:
        try:
            return set(self._consumer.assignment()) if self._consumer is not None else set()
        except ConsumerNotStarted:
            return set()

    def on_rebalance_end(self) -> None:
        super().on_rebalance_end()
        self._seeking = asyncio.ensure_future(self._seek_back())

    async def _seek_back(self) -> None:
        if self.rebalancing:
            return
        await self.consumer.perform_seek()
        if not self.rebalancing:
            self.settled.set()


def create_faust_app(settings: Settings, clickhouse: ClickHouse | None = None) -> TracehouseApp:
    """The worker's Faust app: the chain agents (raw topics -> sealed-events) and the approval expiry timer.
    With ``clickhouse``, the agents restore sealed records the broker lost after the sink had stored
    them (``SealedTail``)."""
    settings.faust_dir.mkdir(parents=True, exist_ok=True)
    app = TracehouseApp(
        APP_ID,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        datadir=str(settings.faust_dir),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        processing_guarantee=settings.processing_guarantee,
        broker_commit_interval=settings.commit_interval_seconds,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # The chain agent keeps up to 1,000 sealed records in flight, each with its head
        # writes: batching them into fewer produce requests (Faust's default is one 16 KB
        # batch, no linger) cut the chained pipeline's CPU per event by a quarter, broker's included.
        producer_linger_ms=5,
        producer_max_batch_size=1024 * 1024,
        # a sealed record of the largest event the edge accepts (Faust's default, 1,000,000
        # bytes, stopped the worker on a 1 MB event); fetches sized to match
        producer_max_request_size=settings.max_record_bytes,
        consumer_max_fetch_size=settings.max_record_bytes,
        loghandlers=[],
    )
    p = settings.topic_partitions
    outputs = {name: raw_topic(app, topic, p) for name, topic in (
        ("sealed", SEALED_EVENTS), ("invalid", INVALID_EVENTS), ("verdicts", COMMAND_VERDICTS),
        ("notices", WEBHOOK_EVENTS))}
    trace_events, audit_events = raw_topic(app, TRACE_EVENTS, p), raw_topic(app, AUDIT_EVENTS, p)
    chains = chain_tables(app, p, int(settings.approval_ttl_seconds * 1000))
    store, changelog = chains.store, chains.changelog
    app.chains = store
    stored = ChainRepository(clickhouse) if clickhouse is not None else None
    tail = SealedTail(settings.bootstrap_servers, SEALED_EVENTS, store, changelog, stored, settings.max_record_bytes)
    for kind, source in ((TRACE_CHAIN, trace_events), (AUDIT_CHAIN, audit_events)):
        ChainAgent(app, kind, AgentTopics(source=source, **outputs), store, changelog, tail, p).register()
    add_expiry_timer(app, store, trace_events, app.settled, settings.approval_check_seconds, p)
    if settings.embedded_kafka:
        compactor = ChangelogCompactor(settings.bootstrap_servers, chains, partitioner(p),
                                       settings.compact_min_records, heads_readers=[CHECKPOINT_GROUP])
        add_compaction_timer(app, compactor, settings.trim_interval_seconds)

    @app.on_partitions_assigned.connect
    async def _forget_per_assignment_state(app: faust.App, assigned: set, **kwargs: object) -> None:
        store.forget_cache()
        tail.forget()

    return app


def sink_topics(settings: Settings) -> list[str]:
    """What the sink stores: sealed events, or the raw topics when chaining is off."""
    return [SEALED_EVENTS] if settings.chain_events else [TRACE_EVENTS, AUDIT_EVENTS]


def create_checkpointer(settings: Settings, clickhouse: ClickHouse) -> Checkpointer:
    """The checkpointer: chain-heads changelog -> signed checkpoints (ClickHouse, ``checkpoints``)."""
    key = load_signing_key(settings.checkpoint_key_path, settings.checkpoint_key)
    sealed = [TopicPartition(SEALED_EVENTS, p) for p in range(settings.topic_partitions)]
    return Checkpointer(settings.bootstrap_servers, HEADS_CHANGELOG, CHECKPOINTS, CheckpointRepository(clickhouse),
                        key, settings.checkpoint_interval_seconds, sealed, SINK_GROUP)


def create_rollup_publisher(settings: Settings, clickhouse: ClickHouse) -> RollupPublisher:
    """The rollup publisher: hours the sink changed in ClickHouse -> ``rollups-hourly``."""
    return RollupPublisher(settings.bootstrap_servers, ROLLUPS_HOURLY, RollupRepository(clickhouse),
                           settings.rollup_interval_seconds)


def create_sink(settings: Settings, clickhouse: ClickHouse) -> Sink:
    """The sink consumer: ``sink_topics`` -> ClickHouse."""
    writers = [SinkWriter(clickhouse, TRACE_EVENTS_SINK), SinkWriter(clickhouse, AUDIT_EVENTS_SINK)]
    return Sink(settings.bootstrap_servers, sink_topics(settings), writers, INVALID_EVENTS,
                batch_records=settings.sink_batch_records, batch_seconds=settings.sink_batch_seconds,
                max_record_bytes=settings.max_record_bytes)
