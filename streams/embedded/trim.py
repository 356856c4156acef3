"""Delete records every reader has consumed from the embedded broker.

noida-db keeps all data in one snapshot that it rewrites on every produce
or commit, so the embedded stack keeps topics short: Kafka is transit and
ClickHouse is the store. For each partition this deletes the records below
the lowest offset committed by all the groups that read the topic.
A partition that some reader has never committed is left alone, and
unconsumed records are never deleted (unlike ``retention.ms``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable

from aiokafka import AIOKafkaClient, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import NotLeaderForPartitionError, UnknownTopicOrPartitionError, for_code
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.offset import OffsetRequest, OffsetResetStrategy

log = logging.getLogger(__name__)


async def trim_consumed(bootstrap: str, readers: dict[str, list[str]],
                        cap: Callable[[TopicPartition], int | None] | None = None) -> dict[tuple[str, int], int]:
    """Trim each topic below its readers' lowest committed offsets.

    ``readers`` maps topic -> ids of the consumer groups that read it. ``cap(tp)``, when
    given, is a further offset nothing at or above may be trimmed (None: no cap), for a
    reader that keeps its position elsewhere than in a consumer group.
    Returns ``{(topic, partition): new low watermark}`` for the partitions
    trimmed. Unknown topics and topics without readers are logged and skipped.
    """
    async with _clients(bootstrap) as (client, admin):
        leaders = await _leaders(client, [t for t, groups in readers.items() if groups])
        targets: dict[TopicPartition, int] = {}
        for topic, groups in readers.items():
            tps = [tp for tp in leaders if tp.topic == topic]
            if not groups:
                log.info("trim: topic %s has no readers, skipped", topic)
            elif tps:
                targets.update(await _lowest_committed(admin, groups, tps))
        if cap is not None:
            for tp, low in list(targets.items()):
                limit = cap(tp)
                if limit is not None:
                    targets[tp] = min(low, limit)
        return await _delete_below(client, admin, leaders, targets)


async def trim_to(bootstrap: str, targets: dict[TopicPartition, int],
                  readers: list[str] | None = None) -> dict[tuple[str, int], int]:
    """Delete the records below ``targets``, never past what the consumer groups
    ``readers`` committed (a partition one of them never committed is left alone)."""
    async with _clients(bootstrap) as (client, admin):
        leaders = await _leaders(client, sorted({tp.topic for tp in targets}))
        targets = {tp: offset for tp, offset in targets.items() if tp in leaders}
        if readers:
            committed = await _lowest_committed(admin, readers, list(targets))
            targets = {tp: min(offset, committed[tp]) for tp, offset in targets.items() if tp in committed}
        return await _delete_below(client, admin, leaders, targets)


async def log_extents(bootstrap: str, topics: list[str]) -> dict[TopicPartition, tuple[int, int]]:
    """(earliest, latest) offset of every partition of ``topics``."""
    async with _clients(bootstrap) as (client, _admin):
        leaders = await _leaders(client, topics)
        earliest = await _list_offsets(client, leaders, leaders, OffsetResetStrategy.EARLIEST)
        latest = await _list_offsets(client, leaders, leaders, OffsetResetStrategy.LATEST)
        return {tp: (earliest[tp], latest[tp]) for tp in leaders if tp in earliest and tp in latest}


@contextlib.asynccontextmanager
async def _clients(bootstrap: str) -> AsyncIterator[tuple[AIOKafkaClient, AIOKafkaAdminClient]]:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id="tracehouse-trim")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tracehouse-trim")
    await client.bootstrap()
    await admin.start()
    try:
        yield client, admin
    finally:
        await admin.close()
        await client.close()


async def _delete_below(client: AIOKafkaClient, admin: AIOKafkaAdminClient, leaders: dict[TopicPartition, int],
                        targets: dict[TopicPartition, int]) -> dict[tuple[str, int], int]:
    if not targets:
        return {}
    earliest = await _list_offsets(client, leaders, targets, OffsetResetStrategy.EARLIEST)
    latest = await _list_offsets(client, leaders, targets, OffsetResetStrategy.LATEST)
    deletes = {
        tp: RecordsToDelete(before_offset=min(low, latest[tp]))
        for tp, low in targets.items()
        if tp in earliest and tp in latest and min(low, latest[tp]) > earliest[tp]
    }
    if not deletes:
        return {}
    try:
        trimmed = await admin.delete_records(deletes)
    except (UnknownTopicOrPartitionError, NotLeaderForPartitionError) as exc:
        log.warning("trim: a topic vanished while trimming, skipped: %r", exc)
        return {}
    for tp, low in trimmed.items():
        log.info("trim: %s[%d] low watermark %d -> %d", tp.topic, tp.partition, earliest[tp], low)
    return {(tp.topic, tp.partition): low for tp, low in trimmed.items()}


async def _leaders(client: AIOKafkaClient, topics: list[str]) -> dict[TopicPartition, int]:
    """Leader node per partition of the existing topics; never auto-creates a topic."""
    if not topics:
        return {}
    request = MetadataRequest(topics, allow_auto_topic_creation=False)
    response = await client.send(client.get_random_node(), request)
    leaders: dict[TopicPartition, int] = {}
    for error_code, topic, _internal, parts, *_ in response.topics:
        if error_code:
            log.warning("trim: topic %s skipped: %s", topic, for_code(error_code).__name__)
            continue
        for part_error, partition, leader, *_ in parts:
            if part_error or leader < 0:
                log.warning("trim: %s[%d] has no leader, skipped", topic, partition)
            else:
                leaders[TopicPartition(topic, partition)] = leader
    return leaders


async def _lowest_committed(
    admin: AIOKafkaAdminClient, groups: list[str], tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Lowest committed offset over ``groups`` per partition that all groups committed."""
    low: dict[TopicPartition, int] = {}
    uncommitted: set[TopicPartition] = set()
    for group in groups:
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        for tp in tps:
            meta = committed.get(tp)
            if meta is None or meta.offset < 0:
                uncommitted.add(tp)
            else:
                low[tp] = min(low.get(tp, meta.offset), meta.offset)
    return {tp: offset for tp, offset in low.items() if tp not in uncommitted}


async def _list_offsets(
    client: AIOKafkaClient,
    leaders: dict[TopicPartition, int],
    tps: Iterable[TopicPartition],
    which: int,
) -> dict[TopicPartition, int]:
    """Earliest (-2) or latest (-1) offset per partition, asked of each leader."""
    by_node: dict[int, dict[str, list[tuple[int, int]]]] = {}
    for tp in tps:
        by_node.setdefault(leaders[tp], {}).setdefault(tp.topic, []).append((tp.partition, which))
    offsets: dict[TopicPartition, int] = {}
    for node_id, topics in by_node.items():
        response = await client.send(node_id, OffsetRequest(-1, 0, list(topics.items())))
        for topic, parts in response.topics:
            for partition, error_code, *info in parts:
                if error_code:
                    log.warning(
                        "trim: list offsets %s[%d]: %s", topic, partition, for_code(error_code).__name__
                    )
                else:
                    offsets[TopicPartition(topic, partition)] = info[-1]
    return offsets
