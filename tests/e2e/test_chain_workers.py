"""Chain agents in several processes on one broker: ``tracehouse worker --parts chain`` beside
``tracehouse run``. Partitions spread over the processes; one is killed with SIGKILL under
ingest and another joins under ingest. Afterwards every accepted event is stored once, every
chain verifies, the checkpoints form one signed, gap-free sequence, and ``/v1/metrics`` counts
every event once."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import pytest

from schemas.checkpoints import Checkpoint, parse_public_key, verify_signature
from streams.app import APP_ID
from tests.conftest import start_stack
from tests.e2e.test_crash_recovery import batches, checkpointed, post_until_killed, verify_all
from tests.support.service import Api, Service, all_events, chain_worker, eventually, group_members

pytestmark = pytest.mark.slow


async def members(bootstrap: str) -> dict[int, int]:
    return await group_members(bootstrap, APP_ID)


async def checkpoints_in_order(api: Api, key: str) -> int:
    """Every checkpoint, newest first, signed and naming the digest of the one before; returns how many."""
    chain, cursor = [], None
    while True:
        params = {"limit": "200"} | ({"cursor": cursor} if cursor else {})
        status, body = await api.get("/v1/checkpoints", key, **params)
        assert status == 200, body
        chain += body["checkpoints"]
        cursor = body["nextCursor"]
        if not cursor:
            break
    public_key = parse_public_key(body["public_key"])
    numbers = [cp["number"] for cp in chain]
    assert numbers == list(range(len(chain), 0, -1)), "checkpoint numbers are not one gap-free sequence"
    for cp, before in zip(chain, chain[1:], strict=False):
        checkpoint, signature = Checkpoint.from_json(cp)
        assert verify_signature(public_key, checkpoint.statement(), signature)
        assert checkpoint.previous == Checkpoint.from_json(before)[0].digest()
    return len(chain)


async def stored_once_and_verified(api: Api, key: str, expected: set[str]) -> None:
    """Every event in ``expected`` is stored, none twice and no other; every chain verifies, also
    against the checkpoints, which form one signed gap-free sequence; the hourly rollups count each
    event once."""
    await eventually(lambda: all_events(api, key), lambda got: len(got) >= len(expected), timeout=120)
    events = await all_events(api, key)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert set(ids) == expected, "an accepted event was lost"
    assert await verify_all(api, key, {e["trace_id"] for e in events}) == {}
    await checkpointed(api, key, events)
    assert await checkpoints_in_order(api, key) > 0
    _, metrics = await eventually(lambda: api.get("/v1/metrics", key, since="2026-08-01T00:00:00Z"),
                                  lambda r: r[1].get("total", 0) >= len(expected))
    assert metrics["total"] == len(expected)


async def test_chain_workers_share_partitions_survive_a_kill_and_a_join(tmp_path: Path, broker_kind: str) -> None:
    broker, service = start_stack(tmp_path, broker_kind, TRACEHOUSE_CHECKPOINT_INTERVAL_SECONDS="1",
                                  TRACEHOUSE_SINK_BATCH_RECORDS="50")
    guests: list[Service] = []
    try:
        guests = [chain_worker(service, f"chain-{i}") for i in range(2)]
        pids = {service.proc.pid, *(g.proc.pid for g in guests)}
        await eventually(lambda: members(broker.bootstrap), lambda got: set(got) == pids, timeout=60)

        todo = batches("w", 9_000, per_trace=15)
        async with Api(service.url) as api:
            org = f"workers-{uuid.uuid4().hex[:6]}"
            key = await api.org_key(org)
            progress: list[str] = []
            poster = asyncio.create_task(post_until_killed(api, key, todo, asyncio.Event(), progress))
            await eventually(lambda: asyncio.sleep(0, len(progress)), lambda n: n >= 2_000, timeout=60,
                             interval=0.01)
            guests[0].stop(signal.SIGKILL)  # its partitions move to the survivors
            at_kill = len(progress)
            survivors = pids - {guests[0].proc.pid}
            await eventually(lambda: members(broker.bootstrap), lambda got: set(got) == survivors, timeout=60)
            joined = chain_worker(service, "chain-joined")  # a process joining under load
            guests.append(joined)
            await eventually(lambda: members(broker.bootstrap), lambda got: set(got) == survivors | {joined.proc.pid},
                             timeout=60)
            accepted, unknown = await poster
            assert not unknown
            assert at_kill < len(accepted), "posting ended before the kill; nothing was tested"

            expected = set(accepted)
            await stored_once_and_verified(api, key, expected)
    finally:
        for guest in guests:
            guest.stop()
        service.stop()
        broker.stop()
