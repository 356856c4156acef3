"""The Faust app's guards against losing records across a rebalance (streams/app.py)."""

import asyncio

from streams.app import TracehouseApp, create_faust_app
from tracehouse.settings import Settings


def test_stream_queues_keep_their_records_when_the_flow_resumes(tmp_path):
    app = create_faust_app(Settings.from_env({"TRACEHOUSE_DATA_DIR": str(tmp_path)}))
    queue = app.FlowControlQueue(maxsize=10, clear_on_resume=True)  # what Faust's channels ask for

    async def resume_with_a_queued_record() -> int:
        queue.put_nowait("record fetched between the seek and the resume")
        app.flow_control.suspend()
        app.flow_control.resume()  # Faust's queues would be emptied here
        return queue.qsize()

    assert asyncio.run(resume_with_a_queued_record()) == 1


def test_agents_wait_until_a_rebalance_has_settled(tmp_path):
    app = create_faust_app(Settings.from_env({"TRACEHOUSE_DATA_DIR": str(tmp_path)}))
    assert not app.settled.is_set()  # nothing is sealed before the first assignment settles


def test_the_chain_agents_producer_is_idempotent_under_both_guarantees(tmp_path):
    """A resend after a lost answer must not append a sealed record twice, whatever the guarantee."""
    for guarantee in ("at_least_once", "exactly_once"):
        app = create_faust_app(Settings.from_env({
            "TRACEHOUSE_DATA_DIR": str(tmp_path), "TRACEHOUSE_PROCESSING_GUARANTEE": guarantee,
            "TRACEHOUSE_KAFKA_BOOTSTRAP": "127.0.0.1:9"}))  # never contacted

        async def idempotent(app: TracehouseApp) -> bool:
            producer = app.producer._new_producer()  # the aiokafka producer Faust starts
            await producer.stop()
            return producer._txn_manager is not None  # aiokafka keeps one only when idempotent

        assert asyncio.run(idempotent(app)), guarantee
