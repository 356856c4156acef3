"""Chained throughput with one and with two chain-agent processes on this machine, and the CPU it
costs per 1,000 chained events.

Each round runs ``tracehouse run --parts sink,checkpointer,rollups`` (API, sink, checkpointer,
rollup publisher) and N ``tracehouse worker --parts chain`` processes on a fresh embedded broker,
writes ``BENCH_CHAIN_EVENTS`` events (20 per trace) straight to ``trace-events`` with the Avro
producer (faster than the chain agents, so they are the bottleneck), and times them from the first
send until every event is queryable. CPU is the user + system time of each process over that span.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from bench.stats import cpu_seconds
from schemas.model import validate_trace_event
from schemas.producer import EventProducer
from schemas.timefmt import now_ms
from streams.app import APP_ID
from streams.embedded.broker import EmbeddedBroker, free_port
from tests.support.service import Api, Service, chain_worker, eventually, group_members

EVENTS = int(os.environ.get("BENCH_CHAIN_EVENTS", "100000"))


async def one_round(work: Path, processes: int, env: dict[str, str],
                    event: Callable[[int, int, str, int], dict]) -> tuple[float, float, float]:
    """(events/s, chain-agent CPU s per 1,000 events, whole-box CPU s per 1,000 events)."""
    broker = EmbeddedBroker(work / "broker", "127.0.0.1", free_port())
    broker.start()
    owner = Service(work, broker.port, "run", "--parts", "sink,checkpointer,rollups",
                    TRACEHOUSE_CHAIN_EVENTS="true", **env)
    owner.start()
    guests: list[Service] = []
    try:
        guests = [chain_worker(owner, f"chain-{i}") for i in range(processes)]
        pids = {g.proc.pid for g in guests}
        await eventually(lambda: group_members(broker.bootstrap, APP_ID), lambda got: set(got) == pids, timeout=120)
        async with Api(owner.url) as api:
            org = f"bench-chain-x{processes}"
            key = await api.org_key(org)
            base = now_ms() - 3_600_000
            datums = [validate_trace_event(event(i, 20, f"cw{processes}-", base), org_id=org, now=base)
                      for i in range(EVENTS)]
            broker_pid = broker.pid()
            chain_pids, box_pids = list(pids), [*pids, owner.proc.pid, *([broker_pid] if broker_pid else [])]
            chain0, box0, t0 = cpu_seconds(chain_pids), cpu_seconds(box_pids), time.monotonic()
            async with EventProducer(broker.bootstrap, linger_ms=20) as producer:
                for s in range(0, EVENTS, 2000):
                    await asyncio.gather(*{producer.add(d) for d in datums[s:s + 2000]})
            await eventually(lambda: api.get("/v1/metrics", key, since="2000-01-01T00:00:00Z"),
                             lambda r: r[0] == 200 and r[1]["total"] >= EVENTS, timeout=900, interval=0.1)
            elapsed = time.monotonic() - t0
            chain_cpu, box_cpu = cpu_seconds(chain_pids) - chain0, cpu_seconds(box_pids) - box0
        return EVENTS / elapsed, chain_cpu / EVENTS * 1000, box_cpu / EVENTS * 1000
    finally:
        for guest in guests:
            guest.stop()
        owner.stop()
        broker.stop()


async def chain_processes(work: Path, report: Callable[[str], None], env: dict[str, str],
                          event: Callable[[int, int, str, int], dict]) -> None:
    """Report the chained rate with one and two chain-agent processes, and the CPU per 1,000 events."""
    rates: dict[int, float] = {}
    for processes in (1, 2):
        rate, chain_cpu, box_cpu = await one_round(work / f"chain-x{processes}", processes, env, event)
        rates[processes] = rate
        report(f"chained, {processes} chain process{'es' if processes > 1 else ''}, {EVENTS:,} direct events "
               f"{rate:10,.0f} events/s  {rate / rates[1]:.2f}x;  CPU s per 1,000 events: chain agents "
               f"{chain_cpu:.3f}, whole box {box_cpu:.3f}")
