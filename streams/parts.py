"""The worker's parts, declared once.

A part names the consumer group it commits in, the topics it reads and writes, whether it needs
ClickHouse, and how to build its ``run()`` (one attempt: it runs until cancelled or until it fails,
and the worker, ``streams.worker``, starts it again). Everything the worker does around the parts
is derived from these declarations, never listed by hand: which topics to create, whose dead group
members the embedded broker must evict, and how far each topic may be trimmed.

Adding a consumer means adding one ``Part`` to ``declared_parts``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import TopicPartition

from schemas.checkpoints import load_signing_key
from schemas.topics import (
    AUDIT_EVENTS,
    CHECKPOINT_REQUESTS,
    CHECKPOINTS,
    COMMAND_VERDICTS,
    INVALID_EVENTS,
    ROLLUPS_HOURLY,
    SEALED_EVENTS,
    TOPIC_CONFIGS,
    TRACE_EVENTS,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_DEAD_LETTER,
    WEBHOOK_DELIVERIES,
    WEBHOOK_EVENTS,
    WEBHOOK_SUBSCRIPTIONS,
)
from schemas.webhooks import parse_retry_schedule
from sinks.clickhouse import ClickHouse
from sinks.day_dump import DayDumper
from sinks.repositories.checkpoints import CheckpointRepository
from sinks.repositories.rollups import RollupRepository
from sinks.writer import (
    AUDIT_EVENTS_SINK,
    TRACE_EVENTS_SINK,
    WEBHOOK_ATTEMPTS_SINK,
    WEBHOOK_DEAD_LETTERS_SINK,
    WEBHOOK_SUBSCRIPTIONS_SINK,
    SinkWriter,
)
from streams.app import APP_ID, CHANGELOGS, HEADS_CHANGELOG
from streams.checkpointer import CHECKPOINT_GROUP, Checkpointer
from streams.dumps import DUMPS_GROUP, DumpSchedule
from streams.rollups import ROLLUPS_GROUP, RollupPublisher
from streams.sink import SINK_GROUP, Sink
from streams.webhooks.dispatcher import DISPATCH_GROUP, tier_topics
from streams.webhooks.fanout import FANOUT_GROUP
from streams.webhooks.parts import SharedSubscriptions, build_dispatcher, build_fanout, fanout_topics
from tracehouse.settings import Settings

#: ``run()`` of a part: one attempt, until cancelled or failed.
Run = Callable[[], Awaitable[None]]

CHAIN, SINK, CHECKPOINTER, ROLLUPS = "chain", "sink", "checkpointer", "rollups"
WEBHOOKS, DISPATCH, DUMPS = "webhooks", "dispatch", "dumps"


@dataclass(frozen=True)
class Part:
    """One background part of the worker."""

    name: str
    #: Builds ``run()`` from this process's ClickHouse (None in a process without it).
    build: Callable[[ClickHouse | None], Run]
    #: The consumer group it commits its reads in (None: it commits nowhere).
    group: str | None = None
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    needs_clickhouse: bool = False
    #: Compacted topics it keeps its tables in.
    changelogs: tuple[str, ...] = ()
    #: Topics it may read back after their readers committed them; it trims them itself.
    keeps: tuple[str, ...] = ()


def declared_parts(settings: Settings) -> list[Part]:
    """Every part a deployment with ``settings`` runs, in start order."""
    from streams.chain_part import build_chain_agents  # imported here: it builds on this module

    parts = []
    if settings.chain_events:
        parts.append(Part(
            CHAIN, lambda ch: build_chain_agents(settings, ch, parts),
            group=APP_ID, reads=(TRACE_EVENTS, AUDIT_EVENTS),
            writes=(SEALED_EVENTS, INVALID_EVENTS, COMMAND_VERDICTS, WEBHOOK_EVENTS, TRACE_EVENTS),
            changelogs=tuple(CHANGELOGS.values()), keeps=(SEALED_EVENTS,)))
    parts.append(Part(SINK, lambda ch: create_sink(settings, _required(ch)).run, group=SINK_GROUP,
                      reads=tuple(sink_topics(settings)), writes=(INVALID_EVENTS,), needs_clickhouse=True))
    if settings.chain_events:
        parts.append(Part(CHECKPOINTER, lambda ch: create_checkpointer(settings, _required(ch)).run,
                          group=CHECKPOINT_GROUP, reads=(HEADS_CHANGELOG,), writes=(CHECKPOINTS,),
                          needs_clickhouse=True))
    # its group only elects the one publisher (streams.election): it reads and commits nothing
    parts.append(Part(ROLLUPS, lambda ch: create_rollup_publisher(settings, _required(ch)).run,
                      group=ROLLUPS_GROUP, writes=(ROLLUPS_HOURLY,), needs_clickhouse=True))
    if settings.dump_url:
        # its group only elects the one dumper, over rollups-hourly (which every deployment has): it reads nothing
        parts.append(Part(DUMPS, lambda ch: create_dump_schedule(settings, _required(ch)).run, group=DUMPS_GROUP,
                          needs_clickhouse=True))
    schedule = parse_retry_schedule(settings.webhook_retry_schedule)
    subscriptions = SharedSubscriptions(settings)  # one reader of them per process
    parts.append(Part(WEBHOOKS, lambda ch: build_fanout(settings, subscriptions), group=FANOUT_GROUP,
                      reads=tuple(fanout_topics(settings)), writes=(WEBHOOK_DELIVERIES,)))
    parts.append(Part(DISPATCH, lambda ch: build_dispatcher(settings, subscriptions), group=DISPATCH_GROUP,
                      reads=tuple(tier_topics(schedule)),
                      writes=(*tier_topics(schedule)[1:], WEBHOOK_DEAD_LETTER, WEBHOOK_ATTEMPTS,
                              WEBHOOK_SUBSCRIPTIONS)))
    return parts


def readers_of(parts: list[Part], topic: str) -> list[str]:
    """The consumer groups of ``parts`` that read ``topic``."""
    return [part.group for part in parts if topic in part.reads and part.group]


def groups_of(parts: list[Part]) -> list[str]:
    """Every consumer group ``parts`` commit in."""
    return [part.group for part in parts if part.group]


def topics_of(parts: list[Part]) -> list[str]:
    """Every topic ``parts`` read or write, their changelogs aside, in a stable order."""
    changelogs = {t for part in parts for t in part.changelogs}
    return list(dict.fromkeys(t for part in parts for t in (*part.reads, *part.writes) if t not in changelogs))


def trimmable(parts: list[Part]) -> dict[str, list[str]]:
    """topic -> the groups whose commits bound its trimming; topics a part keeps are left to it, and
    topics that hold state (``schemas.topics.TOPIC_CONFIGS``) are never trimmed."""
    kept = {t for part in parts for t in part.keeps} | set(TOPIC_CONFIGS)
    changelogs = {t for part in parts for t in part.changelogs}
    return {t: readers_of(parts, t) for t in topics_of(parts)
            if t not in kept and t not in changelogs and readers_of(parts, t)}


def _required(clickhouse: ClickHouse | None) -> ClickHouse:
    if clickhouse is None:
        raise ValueError("this part needs ClickHouse")
    return clickhouse


def sink_topics(settings: Settings) -> list[str]:
    """What the sink stores: sealed events (or the raw topics when chaining is off), and the webhook
    subscriptions, delivery attempts and dead letters."""
    events = [SEALED_EVENTS] if settings.chain_events else [TRACE_EVENTS, AUDIT_EVENTS]
    return [*events, WEBHOOK_SUBSCRIPTIONS, WEBHOOK_ATTEMPTS, WEBHOOK_DEAD_LETTER]


def create_checkpointer(settings: Settings, clickhouse: ClickHouse) -> Checkpointer:
    """The checkpointer: chain-heads changelog -> signed checkpoints (ClickHouse, ``checkpoints``)."""
    key = load_signing_key(settings.checkpoint_key_path, settings.checkpoint_key)
    sealed = [TopicPartition(SEALED_EVENTS, p) for p in range(settings.topic_partitions)]
    return Checkpointer(settings.bootstrap_servers, HEADS_CHANGELOG, CHECKPOINTS, CheckpointRepository(clickhouse),
                        key, settings.checkpoint_interval_seconds, sealed, SINK_GROUP, CHECKPOINT_REQUESTS,
                        settings.checkpoint_on_demand_seconds)


def create_rollup_publisher(settings: Settings, clickhouse: ClickHouse) -> RollupPublisher:
    """The rollup publisher: hours the sink changed in ClickHouse -> ``rollups-hourly``."""
    return RollupPublisher(settings.bootstrap_servers, ROLLUPS_HOURLY, RollupRepository(clickhouse),
                           settings.rollup_interval_seconds)


def create_dump_schedule(settings: Settings, clickhouse: ClickHouse) -> DumpSchedule:
    """The daily dumps: each org's events and audit log of every due day -> ``TRACEHOUSE_DUMP_URL``."""
    key = load_signing_key(settings.checkpoint_key_path, settings.checkpoint_key)
    assert settings.dump_url is not None
    return DumpSchedule(settings.bootstrap_servers, ROLLUPS_HOURLY, DayDumper(clickhouse, settings.dump_url, key),
                        settings.dump_hour_utc)


def create_sink(settings: Settings, clickhouse: ClickHouse) -> Sink:
    """The sink consumer: ``sink_topics`` -> ClickHouse."""
    writers = [SinkWriter(clickhouse, TRACE_EVENTS_SINK), SinkWriter(clickhouse, AUDIT_EVENTS_SINK),
               *(SinkWriter(clickhouse, spec) for spec in (WEBHOOK_SUBSCRIPTIONS_SINK, WEBHOOK_ATTEMPTS_SINK,
                                                           WEBHOOK_DEAD_LETTERS_SINK))]
    return Sink(settings.bootstrap_servers, sink_topics(settings), writers, INVALID_EVENTS,
                batch_records=settings.sink_batch_records, batch_seconds=settings.sink_batch_seconds,
                max_record_bytes=settings.max_record_bytes)
