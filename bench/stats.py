"""Small statistics and measurements the benches share."""

from __future__ import annotations

import asyncio
import time

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
