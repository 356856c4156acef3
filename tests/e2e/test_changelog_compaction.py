"""The chain tables' changelogs stay short on the embedded broker (streams/embedded/compaction.py),
and a kill -9 in the middle of compacting loses, duplicates and forks nothing."""

from __future__ import annotations

import asyncio
import collections
import signal
import uuid

import pytest

from streams.app import HEADS_CHANGELOG
from streams.embedded.trim import log_extents
from tests.conftest import start_stack
from tests.e2e.test_crash_recovery import post_until_killed, resend_and_check, verify_all
from tests.support.service import Api, eventually

pytestmark = pytest.mark.slow
TRACES = 30


def requests(prefix: str, rounds: int) -> list[list[dict]]:
    """Each request adds two events to every one of TRACES traces: every head is
    rewritten by every request, so the changelog outgrows the table fast."""
    out = []
    for r in range(rounds):
        out.append([{"event_id": f"{prefix}{r:04d}-{t:02d}-{k}", "trace_id": f"{prefix}-tr-{t:02d}",
                     "occurred_at": "2026-08-01T00:00:00.000Z"} for t in range(TRACES) for k in range(2)])
    return out


async def heads_changelog(bootstrap: str) -> tuple[int, int]:
    """(records held, lowest start offset) of the chain-heads changelog."""
    extents = await log_extents(bootstrap, [HEADS_CHANGELOG])
    return sum(end - start for start, end in extents.values()), min(start for start, _ in extents.values())


async def test_changelogs_are_compacted_and_a_kill_9_meanwhile_forks_nothing(tmp_path):
    broker, service = start_stack(tmp_path, TRACEHOUSE_COMPACT_MIN_RECORDS="50",
                                  TRACEHOUSE_TRIM_INTERVAL_SECONDS="0.3", TRACEHOUSE_CHECKPOINT_INTERVAL_SECONDS="1")
    bootstrap = f"127.0.0.1:{broker.port}"
    try:
        todo = requests("c", 1_000)  # more than can be posted before the kill
        async with Api(service.url) as api:
            key = await api.org_key(f"compact-{uuid.uuid4().hex[:6]}")
            killed, progress = asyncio.Event(), []
            poster = asyncio.create_task(post_until_killed(api, key, todo, killed, progress))
            # kill once compaction has trimmed the changelog at least once
            await eventually(lambda: heads_changelog(bootstrap), lambda h: h[1] > 0 and len(progress) > 2_000,
                             timeout=90, interval=0.2)
            service.stop(signal.SIGKILL)
            killed.set()
            accepted, unknown = await poster
            assert unknown, "posting finished before the kill; nothing was tested"
            # the batch in flight at the kill is the only one of unknown fate: the rest were never sent
            todo, unknown = todo[:len(todo) - len(unknown) + 1], unknown[:1]

        service.start()
        async with Api(service.url) as api:
            _, events = await resend_and_check(api, key, todo, accepted, unknown, requests("d", 20), 2)
            assert await verify_all(api, key, {e["trace_id"] for e in events}) == {}
            sizes = collections.Counter(e["trace_id"] for e in events)
            for trace, size in sizes.items():
                status, verdict = await api.get(f"/api/v1/traces/{trace}/verify", key)
                assert status == 200 and verdict["event_count"] == size

        # once the writes stop, the changelog shrinks to about its live keys (~34 heads)
        written = 2 * sum(len(r) for r in todo) // (2 * TRACES) * TRACES  # one head write per trace per request
        held, start = await eventually(lambda: heads_changelog(bootstrap), lambda h: h[0] < 400, timeout=60)
        assert start > 0 and held < written / 10
    finally:
        service.stop()
        broker.stop()
