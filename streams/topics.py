"""Create tracehouse's topics before the worker starts, with the partition counts it needs."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from schemas.topics import SOURCE_TOPICS

log = logging.getLogger(__name__)


async def ensure_topics(bootstrap: str, partitions: int, replication_factor: int = 1,
                        topics: tuple[str, ...] = SOURCE_TOPICS, configs: dict[str, str] | None = None, *,
                        max_message_bytes: int | None = None) -> None:
    """Create missing topics; raise if an existing one has another partition count.

    Faust stalls on PartitionsMismatch when a source topic was auto-created with one
    partition, so the count is checked, not assumed. ``configs`` are set on every one of
    ``topics``, existing ones included, and so is ``max.message.bytes`` when
    ``max_message_bytes`` is given (``Settings.max_record_bytes``: Kafka's and the embedded broker's
    default, 1,048,588, refuses a record of a 1 MB event).
    """
    if max_message_bytes is not None:
        configs = {**(configs or {}), "max.message.bytes": str(max_message_bytes)}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tracehouse-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=replication_factor,
                              topic_configs=configs or {}) for t in missing]
                )
                log.info("created topics %s with %d partitions", missing, partitions)
            except TopicAlreadyExistsError:  # another replica won the race; counts checked below
                pass
        for topic in await _described(admin, topics):
            count = len(topic["partitions"])
            if count != partitions:
                raise RuntimeError(
                    f"topic {topic['topic']} has {count} partitions (error code {topic['error_code']}), "
                    f"tracehouse needs {partitions} "
                    "(TRACEHOUSE_TOPIC_PARTITIONS); recreate it or change the setting"
                )
        await _configure(admin, topics, configs or {})
    finally:
        await admin.close()


#: The configs the worker reports for each of its topics, as the broker applies them.
REPORTED_CONFIGS = ("cleanup.policy", "retention.ms", "retention.bytes", "max.message.bytes")

#: DescribeConfigs' source of a config set on the topic itself (DYNAMIC_TOPIC_CONFIG).
TOPIC_SOURCE = 1


Configs = dict[str, str]


async def topic_configs(admin: AIOKafkaAdminClient, topics: tuple[str, ...]) -> dict[str, tuple[Configs, Configs]]:
    """Each topic's configs set on the topic itself, and its ``REPORTED_CONFIGS`` in effect (the
    broker's defaults where the topic sets none)."""
    found: dict[str, tuple[Configs, Configs]] = {}
    for response in await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]):
        for error_code, error_message, _, topic, entries in response.resources:
            if error_code:
                raise RuntimeError(f"describing the configs of topic {topic} failed: {error_code} {error_message}")
            own = {e[0]: e[1] for e in entries if e[3] == TOPIC_SOURCE}
            found[topic] = own, {e[0]: e[1] for e in entries if e[0] in REPORTED_CONFIGS}
    return found


async def _configure(admin: AIOKafkaAdminClient, topics: tuple[str, ...], configs: dict[str, str]) -> None:
    """Set ``configs`` on ``topics``, keeping every other config set on a topic (AlterConfigs replaces
    a topic's whole set: an operator's ``retention.ms`` would otherwise fall back to the broker's
    default), and log what each topic has, so a worker says what it found on a broker it did not set up."""
    found = await topic_configs(admin, topics)
    changed = {t: {**own, **configs} for t, (own, _) in found.items() if {**own, **configs} != own}
    if changed:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs=c) for t, c in changed.items()])
    for topic, (own, effective) in found.items():
        now = {**effective, **configs}
        report = ", ".join(f"{name}={now[name]}" for name in REPORTED_CONFIGS if name in now)
        if topic in changed:
            was = ", ".join(f"{name} was {effective.get(name, 'unset')}" for name in configs
                            if own.get(name) != configs[name])
            log.info("topic %s: %s (set by tracehouse: %s)", topic, report, was)
        else:
            log.info("topic %s: %s", topic, report)


async def _described(admin: AIOKafkaAdminClient, topics: tuple[str, ...], timeout: float = 30.0) -> list[dict]:
    """``describe_topics``, asked again while a topic is not in the broker's metadata yet: right after
    CreateTopics, Apache Kafka describes a new topic with no partitions for a moment (measured
    2026-12-05 on Kafka 4.1.1; noida-db answers at once)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(list(topics))
        pending = [t for t in described if t["error_code"] or not t["partitions"]]
        if not pending or asyncio.get_running_loop().time() > deadline:
            return described
        await asyncio.sleep(0.1)
