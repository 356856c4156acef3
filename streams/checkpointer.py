"""Signed checkpoints: every period, a Merkle root over the heads of the chains that changed.

The checkpointer reads the ``chain-heads`` table's changelog (a plain aiokafka consumer,
group ``tracehouse-checkpoints``, which elects one member: ``streams.election``, so checkpoints form
one sequence however many workers run): each record there is a chain's new head, written
only once its sealed record was durable. At the end of each period it first waits for
the sink to have stored every sealed record written so far (its committed offsets reach
the ends of ``sealed-events`` as they were then), so a checkpoint never covers a link
that ClickHouse does not hold yet (verify would call that a truncation). Then it builds one leaf
per changed chain (``schemas.checkpoints.head_leaf``, the last head of the period),
sorts the leaves, signs the statement (number, period, tree size, root, digest of the
previous checkpoint) with the worker's ed25519 key, stores it in ClickHouse with its
leaves, publishes it on ``checkpoints``, and only then commits the changelog offsets.
A crash before the commit re-reads the period: its heads land in the next checkpoint
(a chain covered twice is harmless; an uncovered one cannot happen).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas import kafka_clients
from schemas.checkpoints import NO_PREVIOUS, Checkpoint, Leaf, SignedCheckpoint, head_leaf, public_key_text, sign
from schemas.identity import client_id
from schemas.lifecycle import trace_of
from schemas.merkle import leaf_hash, root_of_hashes
from sinks.repositories.checkpoints import CheckpointRepository
from streams.chaining import Head, is_chain_key
from streams.changelog import COMPACTION_HEADER
from streams.election import ELECTED

log = logging.getLogger(__name__)

CHECKPOINT_GROUP = "tracehouse-checkpoints"


def leaf_of(chain: bytes, head_value: bytes) -> Leaf | None:
    """The leaf of a ``chain-heads`` entry; None for the table's bookkeeping keys."""
    if not is_chain_key(chain):
        return None
    kind, _, rest = chain.decode().partition("\x00")
    head = Head.unpack(head_value)
    if kind == "trace":
        org_id, trace_id = trace_of(chain)
        return Leaf(kind, org_id, trace_id, head.seq, head.hash.hex())
    return Leaf(kind, rest, rest, head.seq, head.hash.hex())


def build_tree(heads: dict[bytes, bytes]) -> tuple[list[Leaf], list[bytes], bytes]:
    """Leaves (sorted by their bytes), their hashes and the Merkle root."""
    encoded = []
    for chain, value in heads.items():
        leaf = leaf_of(chain, value)
        if leaf is not None:
            encoded.append((head_leaf(leaf.kind, leaf.org_id, leaf.chain_id, leaf.seq, leaf.hash), leaf))
    encoded.sort(key=lambda pair: pair[0])
    hashes = [leaf_hash(raw) for raw, _ in encoded]
    return [leaf for _, leaf in encoded], hashes, root_of_hashes(hashes)


class Checkpointer:
    """Publishes a signed checkpoint every ``interval`` seconds in which some head changed."""

    def __init__(self, bootstrap: str, changelog: str, topic: str, repository: CheckpointRepository,
                 key: Ed25519PrivateKey, interval: float, sealed: list[TopicPartition], sink_group: str,
                 requests: str | None = None, on_demand_seconds: float = 5.0) -> None:
        """``requests``: the topic of requests for a checkpoint now, honoured at most once per
        ``on_demand_seconds`` (None: periods only)."""
        self.bootstrap, self.changelog, self.topic = bootstrap, changelog, topic
        self.sealed, self.sink_group = sealed, sink_group
        self.repository, self.key, self.interval = repository, key, interval
        self.public_key = public_key_text(key)
        self.requests, self.on_demand_seconds = requests, on_demand_seconds
        self._requested = asyncio.Event()

    async def run(self) -> None:
        """Checkpoint until cancelled, or until the broker or ClickHouse fails (the worker starts it again)."""
        consumer = kafka_clients.consumer(self.bootstrap, CHECKPOINT_GROUP, group=CHECKPOINT_GROUP, **ELECTED)
        revocations = _Revocations()
        consumer.subscribe([self.changelog], listener=revocations)
        producer = kafka_clients.producer(self.bootstrap, CHECKPOINT_GROUP)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=client_id(CHECKPOINT_GROUP))
        async with kafka_clients.started(producer, consumer), contextlib.AsyncExitStack() as stack:
            await admin.start()
            stack.push_async_callback(admin.close)
            if self.requests is not None:
                requests = kafka_clients.consumer(self.bootstrap, f"{CHECKPOINT_GROUP}-requests", self.requests,
                                                  auto_offset_reset="latest")
                await stack.enter_async_context(kafka_clients.started(requests))
                reader = asyncio.create_task(self._read_requests(requests), name="checkpoint-requests")
                stack.callback(reader.cancel)
            await self._periods(consumer, producer, admin, revocations)

    async def _read_requests(self, requests: AIOKafkaConsumer) -> None:
        async for _ in requests:
            self._requested.set()

    async def _periods(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                       admin: AIOKafkaAdminClient, revocations: _Revocations) -> None:
        heads: dict[bytes, bytes] = {}
        start_ms, due = _now_ms(), time.monotonic() + self.interval
        seen = revocations.count
        on_demand = float("-inf")  # when the last early checkpoint was signed
        while True:
            wait = max(0.0, due - time.monotonic())
            batches = await consumer.getmany(timeout_ms=int(min(wait, 1.0) * 1000))
            for records in batches.values():
                for record in records:
                    if record.key and record.value and not _republished(record) and is_chain_key(record.key):
                        heads[record.key] = Head.unpack(record.value).link_only().pack()
            now = time.monotonic()
            if self._requested.is_set() and heads and now - on_demand >= self.on_demand_seconds:
                self._requested.clear()
                on_demand, due = now, now  # an export waits for a checkpoint: end the period now
            if now < due:
                continue
            due = max(due + self.interval, now)
            end_ms = _now_ms()
            if revocations.count != seen or not consumer.assignment():
                # not (or no longer) the elected checkpointer: the member that holds the changelog now
                # reads these heads again from the committed offsets
                heads.clear()
                seen = revocations.count
                continue
            if heads and not await self._sink_caught_up(consumer, admin):
                log.warning("checkpoint postponed: the sink has not stored the sealed records yet")
                continue  # the heads stay for the next period; nothing is committed
            if heads:
                signed = await self.publish(heads, start_ms, end_ms, producer)
                log.info("checkpoint %d: %d chains, root %s", signed.checkpoint.number,
                         signed.checkpoint.tree_size, signed.checkpoint.root[:16])
            await consumer.commit()
            heads.clear()
            start_ms = end_ms

    async def _sink_caught_up(self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient) -> bool:
        """Wait (up to one interval) until the sink committed past today's ends of ``sealed-events``:
        every head read so far belongs to a record written before them."""
        ends = await consumer.end_offsets(self.sealed)
        deadline = time.monotonic() + self.interval
        while True:
            committed = await admin.list_consumer_group_offsets(self.sink_group, partitions=self.sealed)
            if all(end == 0 or (tp in committed and committed[tp].offset >= end) for tp, end in ends.items()):
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)

    async def publish(self, heads: dict[bytes, bytes], start_ms: int, end_ms: int,
                      producer: AIOKafkaProducer) -> SignedCheckpoint:
        """Sign, store and publish the checkpoint of ``heads`` (chain key -> head value)."""
        leaves, hashes, root = await asyncio.to_thread(build_tree, heads)
        previous = await self.repository.latest()
        checkpoint = Checkpoint(previous.checkpoint.number + 1 if previous else 1, start_ms, end_ms, len(leaves),
                                root.hex(), previous.checkpoint.digest() if previous else NO_PREVIOUS)
        signed = SignedCheckpoint(checkpoint, sign(self.key, checkpoint.statement()), self.public_key)
        await self.repository.save(signed, leaves, hashes)
        await producer.send_and_wait(self.topic, json.dumps(signed.to_json()).encode())
        return signed


class _Revocations(ConsumerRebalanceListener):
    """Counts the rebalances that took the changelog away from this checkpointer."""

    def __init__(self) -> None:
        self.count = 0

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self.count += 1

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


def _republished(record: Any) -> bool:
    """A head a changelog compaction wrote again (``streams.embedded.compaction``): not a change."""
    return any(key == COMPACTION_HEADER for key, _ in record.headers or ())


def _now_ms() -> int:
    return int(time.time() * 1000)
