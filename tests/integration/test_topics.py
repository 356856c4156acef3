"""Topic creation and configuration (``streams.topics``) on each broker: configs tracehouse needs are
set on topics it finds, an operator's other configs on them are kept, and the worker logs what each
topic has."""

from __future__ import annotations

import logging
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.topics import ensure_topics, topic_configs
from tests.conftest import Broker


async def configs_of(bootstrap: str, topic: str) -> tuple[dict[str, str], dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return (await topic_configs(admin, (topic,)))[topic]
    finally:
        await admin.close()


async def test_configs_are_set_on_a_found_topic_keeping_the_operators_own(
        broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    topic = f"found-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:  # as an operator created it: time retention of 3 days
        await admin.create_topics([NewTopic(topic, 2, 1, topic_configs={"retention.ms": "259200000"})])
    finally:
        await admin.close()

    with caplog.at_level(logging.INFO, logger="streams.topics"):
        await ensure_topics(broker.bootstrap, 2, topics=(topic,), configs={"cleanup.policy": "compact"},
                            max_message_bytes=5_000_000)

    own, effective = await configs_of(broker.bootstrap, topic)
    assert own == {"retention.ms": "259200000", "cleanup.policy": "compact", "max.message.bytes": "5000000"}
    assert effective["cleanup.policy"] == "compact"
    said = [r.getMessage() for r in caplog.records if topic in r.getMessage()]
    assert len(said) == 1, said
    assert "cleanup.policy=compact" in said[0] and "retention.ms=259200000" in said[0]
    assert "cleanup.policy was delete" in said[0], "the log must say what the topic had before"


async def test_a_topic_already_configured_is_left_alone_and_reported(
        broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    topic = f"kept-{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker.bootstrap, 1, topics=(topic,), configs={"cleanup.policy": "compact"})
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="streams.topics"):
        await ensure_topics(broker.bootstrap, 1, topics=(topic,), configs={"cleanup.policy": "compact"})
    said = [r.getMessage() for r in caplog.records if topic in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"topic {topic}: cleanup.policy=compact, "), said
    assert "set by tracehouse" not in said[0]
    assert (await configs_of(broker.bootstrap, topic))[0] == {"cleanup.policy": "compact"}


async def test_a_found_topic_with_another_partition_count_is_refused(broker: Broker) -> None:
    topic = f"narrow-{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker.bootstrap, 1, topics=(topic,))
    with pytest.raises(RuntimeError, match=f"topic {topic} has 1 partitions.*tracehouse needs 4"):
        await ensure_topics(broker.bootstrap, 4, topics=(topic,))
