"""The chain agent's pipeline (streams/chain.py): records are sealed without waiting for
the broker, but a head reaches the changelog, a followup is sent and a source offset is
released only once the sealed record before it is acknowledged, in order.

Faust's app, topics and tables are replaced by small stand-ins that record what the
agent does with them; the broker is the subject of the e2e crash tests."""

import asyncio
from dataclasses import dataclass, field

from schemas.codec import decode, encode
from streams import chain
from streams.chain import AgentTopics, ChainAgent
from streams.chaining import TRACE_CHAIN, ChainStore, Head
from streams.changelog import DeferredChangelog
from tests.unit.test_chaining import records, trace_event

PARTITIONS = 1  # every key lives on partition 0


@dataclass
class Sent:
    key: bytes | None
    value: bytes
    future: asyncio.Future


class Topic:
    def __init__(self) -> None:
        self.sent: list[Sent] = []

    async def send(self, *, key=None, value=b"", partition=None) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.sent.append(Sent(key, value, future))
        return future


class Table:
    """A Faust table as the agent uses it: in-memory ``data`` and ``send_changelog``."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.changelog: list[tuple[int, bytes, bytes | None]] = []

    def send_changelog(self, partition, key, value, value_serializer=None) -> asyncio.Future:
        self.changelog.append((partition, key, value))
        sent = asyncio.get_running_loop().create_future()
        sent.set_result(None)
        return sent


@dataclass
class Message:
    offset: int
    partition: int = 0
    topic: str = "trace-events"
    refcount: int = 1  # the stream's reference
    acked: bool = False

    @property
    def tp(self):
        return (self.topic, self.partition)

    def incref(self) -> None:
        self.refcount += 1

    def ack(self, consumer) -> None:
        self.refcount -= 1
        if self.refcount == 0:
            self.acked = True
            consumer.acked.append(self.offset)


@dataclass
class Consumer:
    acked: list[int] = field(default_factory=list)

    def assignment(self):
        return {("trace-events", 0)}


class App:
    in_transaction = False

    def __init__(self) -> None:
        self.settled = asyncio.Event()
        self.settled.set()
        self.consumer = Consumer()
        self.failures: list[BaseException] = []

    def fail(self, exc: BaseException) -> None:
        self.failures.append(exc)


class Tail:
    async def catch_up(self, partition):
        return []


def make_agent():
    changelog = DeferredChangelog()
    tables = [Table() for _ in range(4)]
    store = ChainStore(*(changelog.wrap(t) for t in tables))
    topics = AgentTopics(source=Topic(), sealed=Topic(), invalid=Topic(), verdicts=Topic(), notices=Topic())
    app = App()
    agent = ChainAgent(app, TRACE_CHAIN, topics, store, changelog, Tail(), PARTITIONS)
    return agent, app, topics, tables[0]


async def stream(agent, values):
    """Feed ``values`` as the stream would (each message released by the stream after
    processing), then let the drainer run."""
    drainer = asyncio.ensure_future(agent._drain())
    messages = []
    for offset, value in enumerate(values):
        msg = Message(offset)
        await agent._process(msg, value)
        msg.ack(agent.app.consumer)  # the stream is done with it
        messages.append(msg)
    await asyncio.sleep(0)
    return drainer, messages


def sealed_seqs(topic):
    return [decode(s.value).datum["first_seq"] for s in topic.sent]


def test_the_next_record_is_sealed_before_the_first_is_acknowledged():
    async def run():
        agent, app, topics, heads = make_agent()
        values = records([trace_event(i) for i in range(1, 4)]) + records([trace_event(i) for i in range(4, 6)])
        drainer, messages = await stream(agent, values)
        # both records went out, linked one after the other, with nothing acknowledged yet
        assert sealed_seqs(topics.sealed) == [1, 4]
        assert heads.changelog == [] and app.consumer.acked == []

        topics.sealed.sent[0].future.set_result(type("Metadata", (), {"offset": 10})())
        await asyncio.sleep(0)
        first_head = [v for _, k, v in heads.changelog if k.startswith(b"trace")]
        assert len(first_head) == 1 and Head.unpack(first_head[0]).seq == 3
        assert app.consumer.acked == [0] and not messages[1].acked

        topics.sealed.sent[1].future.set_result(type("Metadata", (), {"offset": 11})())
        await asyncio.sleep(0)
        assert app.consumer.acked == [0, 1]
        assert agent.store.sealed_offset(0) == 11
        assert [p for p, _, _ in heads.changelog] == [0] * len(heads.changelog)
        drainer.cancel()

    asyncio.run(run())


def test_acknowledgements_are_taken_in_order():
    async def run():
        agent, app, topics, heads = make_agent()
        values = records([trace_event(1, trace="a")]) + records([trace_event(1, trace="b")])
        drainer, _ = await stream(agent, values)
        topics.sealed.sent[1].future.set_result(type("Metadata", (), {"offset": 1})())
        await asyncio.sleep(0)
        assert heads.changelog == [] and app.consumer.acked == []  # b waits for a
        topics.sealed.sent[0].future.set_result(type("Metadata", (), {"offset": 0})())
        await asyncio.sleep(0)
        assert app.consumer.acked == [0, 1]
        drainer.cancel()

    asyncio.run(run())


def test_a_failed_send_stops_everything_after_it():
    async def run():
        agent, app, topics, heads = make_agent()
        values = records([trace_event(1)]) + records([trace_event(2)])
        drainer, messages = await stream(agent, values)
        topics.sealed.sent[1].future.set_result(type("Metadata", (), {"offset": 1})())
        topics.sealed.sent[0].future.set_exception(ConnectionError("broker gone"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(app.failures) == 1 and drainer.done()
        # no head reached the changelog and no offset was released: a restart redoes both
        assert heads.changelog == [] and app.consumer.acked == []
        assert not any(m.acked for m in messages)

    asyncio.run(run())


def test_verdicts_wait_for_the_sealed_record_they_answer():
    async def run():
        agent, app, topics, heads = make_agent()
        command = {"request_id": "r1", "org_id": "o1", "trace_id": "t1", "action": "outcome", "status": "success",
                   "approval_request_id": None, "metadata": {}, "issued_at": 1}
        values = records([trace_event(1)]) + [encode("TraceCommand", command)]
        drainer, _ = await stream(agent, values)
        assert len(topics.sealed.sent) == 2 and topics.verdicts.sent == []
        for i, sent in enumerate(topics.sealed.sent):
            sent.future.set_result(type("Metadata", (), {"offset": i})())
        await asyncio.sleep(0)
        assert [decode(s.value).datum["verdict"] for s in topics.verdicts.sent] == ["applied"]
        assert len(topics.notices.sent) == 1  # trace.completed
        drainer.cancel()

    asyncio.run(run())


def test_the_sealed_offset_marker_is_written_every_few_records_and_when_drained(monkeypatch):
    monkeypatch.setattr(chain, "MARK_EVERY", 2)

    async def run():
        agent, app, topics, heads = make_agent()
        values = [records([trace_event(i)])[0] for i in range(1, 6)]
        drainer, _ = await stream(agent, values)
        marks = []
        for n, sent in enumerate(topics.sealed.sent):
            sent.future.set_result(type("Metadata", (), {"offset": 100 + n})())
            await asyncio.sleep(0)
            marks.append(agent.store.sealed_offset(0))
        # every second record under load, and the last one once nothing is in flight
        assert marks == [None, 101, 101, 103, 104]
        drainer.cancel()

    asyncio.run(run())

