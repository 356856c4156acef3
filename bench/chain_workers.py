"""Chained throughput with one and with two chain-agent processes on this machine, and the CPU a
chained event costs, split by process, next to an unchained round of the same shape.

Each chained round runs ``tracehouse run --parts sink,checkpointer,rollups`` (API, sink, checkpointer,
rollup publisher) and N ``tracehouse worker --parts chain`` processes on a fresh embedded broker,
writes ``BENCH_CHAIN_EVENTS`` events (20 per trace) straight to ``trace-events`` with the Avro
producer (faster than the chain agents, so they are the bottleneck), and times them from the first
send until every event is queryable. The unchained round (``TRACEHOUSE_CHAIN_EVENTS=false``, no chain
process, no checkpointer) writes the same events the same way. CPU is the user + system time of each process over
that span, from /proc: the chain processes, the broker (noida-db), and the owning process split
into ClickHouse's threads (chdb's named pools) and the rest (Python, with the chdb work done on
the threads that call it).

``python -m bench.chain_workers`` runs these rounds alone.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.ingest_rates import BENCH_ENV, event
from bench.stats import cpu_seconds, native_cpu_between, thread_cpu
from schemas.model import validate_trace_event
from schemas.producer import EventProducer
from schemas.timefmt import now_ms
from streams.app import APP_ID
from streams.embedded.broker import EmbeddedBroker, free_port
from tests.support.service import Api, Service, chain_worker, eventually, group_members

EVENTS = int(os.environ.get("BENCH_CHAIN_EVENTS", "100000"))


@dataclass(frozen=True)
class Cpu:
    """CPU µs per event of each part of the box over a round."""

    worker: float  # the chain processes
    broker: float  # noida-db
    clickhouse: float  # chdb's named threads in the owning process
    python: float  # the owning process's other threads (API, sink, checkpointer, rollups)

    @property
    def box(self) -> float:
        return self.worker + self.broker + self.clickhouse + self.python

    def line(self) -> str:
        return (f"CPU us/event: box {self.box:.0f} = chain {self.worker:.0f} + broker {self.broker:.0f} "
                f"+ ClickHouse {self.clickhouse:.0f} + Python {self.python:.0f}")


def _sample(chain_pids: list[int], broker_pid: int | None, owner_pid: int) -> tuple[float, float, float, dict]:
    """CPU seconds so far of the chain processes, the broker, the owning process, and its threads."""
    return (cpu_seconds(chain_pids), cpu_seconds([broker_pid]) if broker_pid else 0.0, cpu_seconds([owner_pid]),
            thread_cpu(owner_pid))


def _spent(owner_pid: int, before: tuple, after: tuple, events: int) -> Cpu:
    chain, broker, owner = (b - a for a, b in zip(before[:3], after[:3], strict=True))
    native = native_cpu_between(owner_pid, before[3], after[3])
    return Cpu(*(seconds / events * 1e6 for seconds in (chain, broker, native, owner - native)))


async def one_round(work: Path, processes: int, env: dict[str, str],
                    event: Callable[[int, int, str, int], dict]) -> tuple[float, Cpu]:
    """(events/s, CPU per event) with ``processes`` chain processes (0: unchained)."""
    broker = EmbeddedBroker(work / "broker", "127.0.0.1", free_port())
    broker.start()
    parts = "sink,checkpointer,rollups" if processes else "sink,rollups"  # checkpoints are of chains
    owner = Service(work, broker.port, "run", "--parts", parts,
                    TRACEHOUSE_CHAIN_EVENTS="true" if processes else "false", **env)
    guests: list[Service] = []
    try:
        owner.start()
        guests = [chain_worker(owner, f"chain-{i}") for i in range(processes)]
        pids = {g.proc.pid for g in guests}
        if processes:
            await eventually(lambda: group_members(broker.bootstrap, APP_ID), lambda got: set(got) == pids,
                             timeout=120)
        async with Api(owner.url) as api:
            org = f"bench-chain-x{processes}"
            key = await api.org_key(org)
            base = now_ms() - 3_600_000
            datums = [validate_trace_event(event(i, 20, f"cw{processes}-", base), org_id=org, now=base)
                      for i in range(EVENTS)]
            probe = (list(pids), broker.pid(), owner.proc.pid)
            before, t0 = _sample(*probe), time.monotonic()
            async with EventProducer(broker.bootstrap, linger_ms=20) as producer:
                for s in range(0, EVENTS, 2000):
                    await asyncio.gather(*{producer.add(d) for d in datums[s:s + 2000]})
            await eventually(lambda: api.get("/v1/metrics", key, since="2000-01-01T00:00:00Z"),
                             lambda r: r[0] == 200 and r[1]["total"] >= EVENTS, timeout=900, interval=0.1)
            elapsed = time.monotonic() - t0
        return EVENTS / elapsed, _spent(owner.proc.pid, before, _sample(*probe), EVENTS)
    finally:
        for guest in guests:
            guest.stop()
        owner.stop()
        broker.stop()


async def chain_processes(work: Path, report: Callable[[str], None], env: dict[str, str],
                          event: Callable[[int, int, str, int], dict]) -> None:
    """Report the unchained rate, the chained rate with one and two chain-agent processes, and the
    CPU per event of each process."""
    rate, cpu = await one_round(work / "chain-x0", 0, env, event)
    report(f"unchained, {EVENTS:,} direct events {rate:25,.0f} events/s;  {cpu.line()}")
    rates: dict[int, float] = {}
    for processes in (1, 2):
        rate, cpu = await one_round(work / f"chain-x{processes}", processes, env, event)
        rates[processes] = rate
        report(f"chained, {processes} chain process{'es' if processes > 1 else ''}, {EVENTS:,} direct events "
               f"{rate:10,.0f} events/s  {rate / rates[1]:.2f}x;  {cpu.line()}")


async def main() -> None:
    await chain_processes(Path(tempfile.mkdtemp(prefix="tracehouse-bench-chain-")), print, BENCH_ENV, event)


if __name__ == "__main__":
    asyncio.run(main())
