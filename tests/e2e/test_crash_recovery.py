"""kill -9 the worker mid-stream, restart it: every accepted event is stored exactly once."""

from __future__ import annotations

import signal
import uuid

import psutil
import pytest

from tests.conftest import start_stack
from tests.support.service import Api, all_events, eventually

pytestmark = pytest.mark.slow


async def count(api: Api, key: str) -> int:
    return len(await all_events(api, key))


async def post_all(api: Api, key: str, prefix: str, n: int, per_trace: int = 20) -> list[str]:
    ids = []
    for start in range(0, n, 200):
        batch = [{"event_id": f"{prefix}{i:06d}", "trace_id": f"{prefix}-tr-{i // per_trace}",
                  "occurred_at": f"2026-08-01T00:00:{(i // 1000) % 60:02d}.{i % 1000:03d}Z",
                  "metadata": {"i": str(i)}}
                 for i in range(start, min(start + 200, n))]
        status, body = await api.post("/v1/events", key, batch)
        assert status == 202, body
        ids.extend(body["accepted"])
    return ids


async def test_kill_9_mid_stream_loses_and_duplicates_nothing(tmp_path):
    # Small sink batches make the stream long enough to be killed in the middle of it.
    broker, service = start_stack(tmp_path, TRACEHOUSE_SINK_BATCH_RECORDS="5",
                                  TRACEHOUSE_SINK_BATCH_SECONDS="0.05")
    try:
        async with Api(service.url) as api:
            key = await api.org_key(f"crash-{uuid.uuid4().hex[:6]}")
            sent = await post_all(api, key, "a", 10_000)
            stored_before = await eventually(lambda: count(api, key), lambda n: n > 0, timeout=30, interval=0.05)
            workers = psutil.Process(service.proc.pid).children(recursive=True)
            assert workers, "expected the ingest worker process"
            service.stop(signal.SIGKILL)
            assert stored_before < len(sent), "the sink finished before the kill; nothing was tested"
            _, alive = psutil.wait_procs(workers, timeout=10)
            assert not alive, "ingest workers outlived their killed parent"

        service.start()  # same data dir, same broker: recovers from committed offsets
        async with Api(service.url) as api:
            sent += await post_all(api, key, "b", 1000)
            await eventually(lambda: count(api, key), lambda n: n >= len(sent), timeout=90)
            events = await all_events(api, key)
            ids = [e["event_id"] for e in events]
            assert len(ids) == len(set(ids)), "duplicates after the crash"
            assert sorted(ids) == sorted(sent), "lost events after the crash"
            # a second, graceful restart finds the same events again
        assert service.stop(signal.SIGINT) == 0
        service.start()
        async with Api(service.url) as api:
            assert sorted(e["event_id"] for e in await all_events(api, key)) == sorted(sent)
    finally:
        service.stop()
        broker.stop()
