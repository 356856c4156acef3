"""The Faust app's guards against losing records across a rebalance (streams/app.py)."""

import asyncio

from streams.app import create_faust_app
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
