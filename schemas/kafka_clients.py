"""The Kafka clients of tracehouse's plain (non-Faust) consumers, configured in one place.

Every consumer reads committed records only (under ``exactly_once`` no aborted record is
seen), starts from the earliest record when its group has no commit yet, and commits only
what its owner says; every producer waits for all replicas and is idempotent. Both are
named after their part and this process (``schemas.identity``) and sized for the largest
record tracehouse writes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from schemas.identity import client_id

log = logging.getLogger(__name__)


def consumer(bootstrap: str, part: str, *topics: str, group: str | None = None, max_record_bytes: int = 1_048_576,
             **options: Any) -> AIOKafkaConsumer:
    """A consumer for ``part`` (subscribed to ``topics`` in ``group`` when both are given); ``options``
    win over the defaults (manual commits, from the earliest offset, read_committed)."""
    defaults: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest",
                                "isolation_level": "read_committed"}
    return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=group, client_id=client_id(part),
                            max_partition_fetch_bytes=max_record_bytes, **(defaults | options))


def producer(bootstrap: str, part: str, max_record_bytes: int = 1_048_576, **options: Any) -> AIOKafkaProducer:
    """An idempotent producer for ``part`` that waits for every replica."""
    options = {"acks": "all", "enable_idempotence": True, **options}
    return AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=client_id(part),
                            max_request_size=max_record_bytes, **options)


@contextlib.asynccontextmanager
async def started(*clients: AIOKafkaConsumer | AIOKafkaProducer) -> AsyncIterator[None]:
    """Start ``clients`` in order; stop the started ones in reverse order on the way out."""
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await client.start()
            stack.push_async_callback(client.stop)
        yield


async def commit_batch(consumer: AIOKafkaConsumer, records: Iterable[ConsumerRecord]) -> bool:
    """Commit the offsets after ``records`` on the partitions the consumer still holds; False (logged)
    when a rebalance took them meanwhile: their next owner reads the batch again."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    mine = consumer.assignment()
    offsets = {tp: offset for tp, offset in offsets.items() if tp in mine}
    try:
        if offsets:
            await consumer.commit(offsets)
        return True
    except (CommitFailedError, KafkaError) as exc:
        log.warning("commit failed (%s); the batch will be read again", exc)
        return False
