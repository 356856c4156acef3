"""The Faust app of the chain agents; nothing is registered at import time."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.transport.drivers import aiokafka as faust_aiokafka

from schemas.identity import PID, TOKEN, client_id
from schemas.topics import (
    AUDIT_EVENTS,
    COMMAND_VERDICTS,
    INVALID_EVENTS,
    SEALED_EVENTS,
    TRACE_EVENTS,
    WEBHOOK_EVENTS,
)
from streams.chain import (
    TABLE_NAMES,
    AgentTopics,
    ChainAgent,
    ChainTables,
    SealedTail,
    StoredLinks,
    add_expiry_timer,
    chain_tables,
)
from streams.chaining import AUDIT_CHAIN, TRACE_CHAIN, ChainStore
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


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's producer, idempotent under ``at_least_once`` too (Faust makes it so only for
    ``exactly_once``). A produce request whose answer is lost (the broker stopping or a connection
    dropping after it appended the batch) is sent again by aiokafka; without idempotence the broker
    appends it a second time, and the sink then stored and counted those sealed events twice (seen
    after Apache Kafka restarted under ingest, 2026-12-05: rollups over-counted 1 run in ~10). The
    broker drops the resend by producer id and sequence."""

    def _settings_extra(self) -> dict[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class TracehouseTransport(faust_aiokafka.Transport):
    Producer = IdempotentProducer


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

    def _new_transport(self) -> TracehouseTransport:
        return TracehouseTransport(self.conf.broker_consumer, self)

    def FlowControlQueue(self, maxsize: int | None = None, *,  # noqa: N802 (Faust's name)
                         clear_on_resume: bool = False) -> Any:
        return super().FlowControlQueue(maxsize, clear_on_resume=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settled = asyncio.Event()
        self._seeking: asyncio.Future[None] | None = None
        self.chains: ChainStore | None = None
        self.chain_tables: ChainTables | None = None
        self.failure: asyncio.Future[None] | None = None

    def fail(self, exc: BaseException) -> None:
        """A chain agent cannot go on safely: the process must stop (``tracehouse.runtime``)."""
        if self.failure is not None and not self.failure.done():
            self.failure.set_exception(exc)

    def sealed_trim_cap(self, partition: int) -> int | None:
        """How far ``sealed-events[partition]`` may be trimmed: not past a record whose head write
        may have been lost (``streams.chain.SealedTail`` reads those back after a crash)."""
        known = self.chains.sealed_offset(partition) if self.chains is not None else None
        return 0 if known is None else known + 1

    def active_partitions(self) -> set[int]:
        """The partitions whose chains this worker writes now (none while a rebalance reassigns them)."""
        if not self.settled.is_set():
            return set()
        return {tp.partition for tp in self._assigned_partitions() if tp.topic in (TRACE_EVENTS, AUDIT_EVENTS)}

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


def create_faust_app(settings: Settings, stored: StoredLinks | None = None) -> TracehouseApp:
    """The worker's Faust app: the chain agents (raw topics -> sealed-events) and the approval expiry timer.
    With ``stored`` (the links ClickHouse holds), the agents restore sealed records the broker lost after
    the sink had stored them (``SealedTail``)."""
    settings.faust_dir.mkdir(parents=True, exist_ok=True)  # the memory store keeps nothing there
    app = TracehouseApp(
        APP_ID,
        broker=f"kafka://{settings.bootstrap_servers}",
        broker_client_id=client_id("tracehouse-chain"),
        # names this process among the group's members (Faust keys its table metadata by it)
        canonical_url=f"http://127.0.0.1/{PID}.{TOKEN}",
        store="memory://",
        datadir=str(settings.faust_dir),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        # a worker taking over a partition recovers its tables from the (compacted) changelog;
        # standbys would have every worker read every other's changelog writes all the time
        table_standby_replicas=0,
        processing_guarantee=settings.processing_guarantee,
        broker_commit_interval=settings.commit_interval_seconds,
        # a member of a killed process holds its partitions until its session times out: on Apache
        # Kafka Faust's 60 s default kept the chain agents of a restarted worker idle for 60 s after
        # each kill -9 (measured 2026-12-05 on Kafka 4.1.1); heartbeats come every 3 s from the
        # consumer's own thread (the embedded broker never expires members: streams.embedded.groups)
        broker_session_timeout=10.0,
        consumer_auto_offset_reset="earliest",
        # The group leader assigns only the partitions its metadata lists, and rebalances when a later
        # answer lists more: a rebalance right after Apache Kafka restarted met a broker that did not
        # list its topics yet, and with aiokafka's 5-minute default the chain agents then read nothing
        # for up to 5 minutes (measured 2026-12-05 on Kafka 4.1.1); one small request every 5 s. The
        # embedded broker restarts with tracehouse, and there a 5 s refresh made the chain-worker
        # rebalance test stall 1 run in 5 (same day): it keeps the default.
        consumer_metadata_max_age_ms=300_000 if settings.embedded_kafka else 5_000,
        producer_acks=-1,
        # The chain agent keeps up to 1,000 sealed records in flight, each with its head
        # writes: batching them into fewer produce requests (Faust's default is one 16 KB
        # batch, no linger) cut the chained pipeline's CPU per event by a quarter, broker's included.
        # 25 ms rather than 5 (a record takes ~1 ms to seal) cut the chain agent's and the broker's
        # CPU per event by another ~10 % (measured 2026-12-05 on 2 cores); the sink's 1 s flush
        # hides the wait.
        producer_linger_ms=25,
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
    app.chains, app.chain_tables = store, chains
    tail = SealedTail(settings.bootstrap_servers, SEALED_EVENTS, store, changelog, stored, settings.max_record_bytes)
    for kind, source in ((TRACE_CHAIN, trace_events), (AUDIT_CHAIN, audit_events)):
        ChainAgent(app, kind, AgentTopics(source=source, **outputs), store, changelog, tail, p).register()
    add_expiry_timer(app, store, trace_events, app.settled, settings.approval_check_seconds, p)

    @app.on_partitions_assigned.connect
    async def _forget_per_assignment_state(app: faust.App, assigned: set, **kwargs: object) -> None:
        store.forget_cache()
        tail.forget()

    return app
