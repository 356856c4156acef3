"""The Faust app factory: nothing is registered at import time."""

from __future__ import annotations

import faust

from schemas.topics import AUDIT_EVENTS, INVALID_EVENTS, SEALED_EVENTS, TRACE_EVENTS
from sinks.clickhouse import ClickHouse
from sinks.writer import AUDIT_EVENTS_SINK, TRACE_EVENTS_SINK, SinkWriter
from streams.chain import add_chain_agent, chain_tables
from streams.chaining import AUDIT_CHAIN, TRACE_CHAIN
from streams.sink import add_sink_agent
from tracehouse.settings import Settings

APP_ID = "tracehouse"


def raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """A topic of Avro bytes: tracehouse decodes values itself (schemas.codec)."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=partitions)


def create_faust_app(settings: Settings, clickhouse: ClickHouse) -> faust.App:
    """The worker's Faust app: chain agents (raw topics -> sealed-events) and the sink
    agent (sealed-events -> ``clickhouse``). With ``chain_events`` off (the benchmark's
    unchained baseline) the sink reads the raw topics instead."""
    settings.faust_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
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
        loghandlers=[],
    )
    p = settings.topic_partitions
    invalid = raw_topic(app, INVALID_EVENTS, p)
    trace_events, audit_events = raw_topic(app, TRACE_EVENTS, p), raw_topic(app, AUDIT_EVENTS, p)
    writers = [SinkWriter(clickhouse, TRACE_EVENTS_SINK), SinkWriter(clickhouse, AUDIT_EVENTS_SINK)]
    batching = dict(batch_records=settings.sink_batch_records, batch_seconds=settings.sink_batch_seconds)
    store = None
    if settings.chain_events:
        sealed = raw_topic(app, SEALED_EVENTS, p)
        store = chain_tables(app, p)
        add_chain_agent(app, TRACE_CHAIN, trace_events, sealed, invalid, store, p)
        add_chain_agent(app, AUDIT_CHAIN, audit_events, sealed, invalid, store, p)
        add_sink_agent(app, sealed, writers, invalid, **batching)
    else:
        add_sink_agent(app, trace_events, writers[:1], invalid, **batching)
        add_sink_agent(app, audit_events, writers[1:], invalid, **batching)

    @app.on_partitions_assigned.connect
    async def _forget_replay_windows(app: faust.App, assigned: set, **kwargs: object) -> None:
        for writer in writers:
            writer.reset()
        if store is not None:
            store.forget_cache()

    return app
