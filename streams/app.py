"""The Faust app factory: nothing is registered at import time."""

from __future__ import annotations

import faust

from schemas.topics import AUDIT_EVENTS, INVALID_EVENTS, TRACE_EVENTS
from sinks.clickhouse import ClickHouse
from sinks.writer import AUDIT_EVENTS_SINK, TRACE_EVENTS_SINK, SinkWriter
from streams.sink import add_sink_agent
from tracehouse.settings import Settings

APP_ID = "tracehouse"


def raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """A topic of Avro bytes: tracehouse decodes values itself (schemas.codec)."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=partitions)


def create_faust_app(settings: Settings, clickhouse: ClickHouse) -> faust.App:
    """The worker's Faust app with its sink agents wired to ``clickhouse``."""
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
    writers = {
        TRACE_EVENTS: SinkWriter(clickhouse, TRACE_EVENTS_SINK),
        AUDIT_EVENTS: SinkWriter(clickhouse, AUDIT_EVENTS_SINK),
    }
    for topic_name, writer in writers.items():
        add_sink_agent(app, raw_topic(app, topic_name, p), writer, invalid,
                       batch_records=settings.sink_batch_records,
                       batch_seconds=settings.sink_batch_seconds)

    @app.on_partitions_assigned.connect
    async def _forget_replay_windows(app: faust.App, assigned: set, **kwargs: object) -> None:
        for writer in writers.values():
            writer.reset()

    return app
