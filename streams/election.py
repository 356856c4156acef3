"""One active member per consumer group: how a part that must run once per deployment (the
checkpointer, the rollup publisher, the dumps) is elected among worker processes.

``OneMemberAssignor`` gives every partition the group reads to a single member (the lowest
member id); the others hold nothing and wait. When that member leaves or dies, the group
rebalances and another one takes everything: Kafka's group protocol is the election, and a
rebalance revokes the old member's partitions before the new one is assigned them.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata


class OneMemberAssignor(AbstractPartitionAssignor):
    """Assigns every subscribed partition to the member with the lowest id."""

    name = "tracehouse-one-member"
    version = 0

    @classmethod
    def assign(cls, cluster: ClusterMetadata,
               members: Mapping[str, ConsumerProtocolMemberMetadata]) -> dict[str, ConsumerProtocolMemberAssignment]:
        leader = min(members)
        topics: dict[str, list[int]] = collections.defaultdict(list)
        for topic in sorted({t for metadata in members.values() for t in metadata.subscription}):
            topics[topic] = sorted(cluster.partitions_for_topic(topic) or ())
        return {member: ConsumerProtocolMemberAssignment(cls.version, sorted(topics.items()) if member == leader
                                                         else [], b"")
                for member in members}

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass


#: Consumer options that make a group elect one member.
ELECTED: dict[str, Any] = {"partition_assignment_strategy": (OneMemberAssignor,)}


class MembershipOnly(ConsumerRebalanceListener):
    """For a consumer that joins a group only to be elected (the rollup publisher, the dumps): the
    partitions it is assigned are paused, so it never fetches them."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            self.consumer.pause(*assigned)
