"""The rollup publisher: hours whose rollups changed -> ``rollups-hourly``.

ClickHouse computes the rollups as the sink stores events (migration 0012), exactly once
because a replayed record is rolled up only when the rollups lack it (``sinks.writer``).
Every ``interval`` seconds the publisher asks which (org, hour) pairs got a partial row from
a source offset past its marks, reads those hours whole and publishes one ``HourlyRollup``
per pair, keyed by org_id. Only after the broker acknowledged them are the new marks saved
(``rollup_marks``). A crash in between publishes the same hours again: each record carries
the hour's whole totals, so a consumer that keeps the newest record per (org_id, hour) is
never wrong, and never misses a change.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer

from schemas import kafka_clients
from schemas.codec import encode
from schemas.timefmt import now_ms
from sinks.repositories.rollups import HourBucket, Marks, RollupRepository
from streams.election import ELECTED, MembershipOnly

log = logging.getLogger(__name__)

ROLLUPS_GROUP = "tracehouse-rollups"


def rollup_record(org_id: str, hour: int, buckets: list[HourBucket], published_at: int) -> bytes:
    """One org's hour as an ``HourlyRollup`` single-object Avro record."""
    return encode("HourlyRollup", {
        "org_id": org_id, "hour": hour, "published_at": published_at,
        "buckets": [{"type": b.type, "outcome": b.outcome, "events": b.events, "errors": b.errors,
                     "input_tokens": b.input_tokens, "output_tokens": b.output_tokens,
                     "total_tokens": b.total_tokens, "cost": b.cost} for b in buckets]})


class RollupPublisher:
    """Publishes every changed hour of ``rollups_hourly`` to ``topic``."""

    def __init__(self, bootstrap: str, topic: str, repo: RollupRepository, interval: float) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.repo = repo
        self.interval = interval
        self.elected = False  # whether this publisher is the one its group elected

    async def run(self) -> None:
        """Publish until cancelled, or until the broker or ClickHouse fails (the worker starts it again).
        Only the member its group elects publishes (``streams.election``): one per deployment."""
        producer = kafka_clients.producer(self.bootstrap, ROLLUPS_GROUP, linger_ms=5)
        election = kafka_clients.consumer(self.bootstrap, ROLLUPS_GROUP, group=ROLLUPS_GROUP, **ELECTED)
        election.subscribe([self.topic], listener=MembershipOnly(election))  # read nothing of it: membership only
        async with kafka_clients.started(producer, election):
            marks: Marks | None = None
            while True:
                await election.getmany(timeout_ms=0)  # a member that stops polling is dropped
                self.elected = bool(election.assignment())
                if not self.elected:
                    marks = None  # another process publishes; its marks are read when this one is elected
                else:
                    marks = await self.publish_changed(producer, marks or await self.repo.marks())
                await asyncio.sleep(self.interval)

    async def publish_changed(self, producer: AIOKafkaProducer, marks: Marks) -> Marks:
        """Publish the hours changed past ``marks``; return (and save) the marks after them."""
        changed, after = await self.repo.changed_since(marks)
        if changed:
            hours = await self.repo.hours(changed)
            published_at = now_ms()
            sent = [await producer.send(self.topic, rollup_record(org, hour, hours.get((org, hour), []), published_at),
                                        key=org.encode())
                    for org, hour in changed]
            await asyncio.gather(*sent)  # acknowledged by the broker before the marks move
            log.debug("published %d changed hours to %s", len(changed), self.topic)
        if after != marks:
            await self.repo.save_marks(after)
        return after
