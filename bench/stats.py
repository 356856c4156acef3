"""Small statistics and measurements the benches share."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil

from tests.support.service import Api


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile of ``values`` (nearest rank)."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` and their children so far."""
    total = 0.0
    for pid in pids:
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
    return total


_TICK = os.sysconf("SC_CLK_TCK")


def _stat_cpu(stat: Path) -> tuple[str, float]:
    """(comm, user + system CPU seconds) from a /proc ``stat`` file (comm may hold spaces)."""
    text = stat.read_text()
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return comm, (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15)


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """thread id -> (name, user + system CPU seconds so far) of ``pid``'s live threads."""
    threads = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            threads[int(stat.parent.name)] = _stat_cpu(stat)
        except FileNotFoundError:  # the thread exited meanwhile
            continue
    return threads


def native_cpu_between(pid: int, before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> float:
    """CPU seconds between two ``thread_cpu`` samples of the threads that named themselves at either
    (ClickHouse's, in a process that embeds chdb: ``ThreadPool`` when idle, ``QueryPipelineEx``,
    ``BgSchPool``... at work); Python's threads keep the process's name. A thread that exited in
    between is missing from ``after``: what it spent counts as Python's."""
    main = after[pid][0]
    total = 0.0
    for tid, (name, cpu) in after.items():
        name_before, cpu_before = before.get(tid, (main, 0.0))
        if name != main or name_before != main:
            total += cpu - cpu_before
    return total


def idle_cpu(pid: int, seconds: float = 10.0) -> float:
    """Percent of a core that ``pid`` (and its children) used over the next ``seconds``."""
    before = cpu_seconds([pid])
    time.sleep(seconds)
    return 100 * (cpu_seconds([pid]) - before) / seconds


async def stored(api: Api, key: str) -> int:
    """Events stored for ``key``'s org, as ``/v1/metrics`` counts them (-1 when it fails)."""
    status, body = await api.get("/v1/metrics", key, since="2000-01-01T00:00:00Z")
    return body["total"] if status == 200 else -1


async def wait_stored(api: Api, key: str, n: int, timeout: float = 900) -> float:
    """Wait until ``n`` events of ``key``'s org are stored; the monotonic time they were."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await stored(api, key) >= n:
            return time.monotonic()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"only {await stored(api, key)} of {n} events stored after {timeout}s")


async def post_all(api: Api, key: str, bodies: list[bytes], concurrency: int = 8, *, path: str = "/v1/events",
                   content_type: str = "application/json", expect: int = 202) -> None:
    """POST every body to ``path`` from ``concurrency`` clients at once; each must answer ``expect``."""
    assert api.session is not None
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}

    async def poster() -> None:
        while not queue.empty():
            async with api.session.post(api.base_url + path, data=queue.get_nowait(), headers=headers) as r:
                reply = await r.read()
                assert r.status == expect, reply[:500]

    await asyncio.gather(*(poster() for _ in range(concurrency)))
