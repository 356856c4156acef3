"""Benchmark the bulk exports at 1M events / 100k traces (``BENCH_EXPORT_TRACES``, 10 events each).

The data is generated straight into embedded ClickHouse as the read bench does (``bench.reads.generate``);
the API runs in this process and each export is read over HTTP as a client would, the bytes
counted and dropped. Per export: rows/s, MB/s, time to first byte, and the growth of this process's
peak RSS while it ran (sampled every 20 ms; the API and its chdb live in this process). The
baseline, in the same run: the same rows read by one ClickHouse query into Python with no HTTP,
no formatting and no chunking (what the export adds on top of fetching).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import psutil

from bench.reads import DAY_MS, ORG, SPAN_MS, generate, serve_api, settle
from schemas.timefmt import format_ms, now_ms
from sinks.clickhouse import ClickHouse
from sinks.migrate import migrate
from streams.embedded.broker import EmbeddedBroker, free_port
from tests.support.service import ADMIN_KEY, Api
from tracehouse.settings import Settings

TRACES = int(os.environ.get("BENCH_EXPORT_TRACES", "100000"))


class PeakRss:
    """The peak RSS of this process while in the ``with`` block, sampled every 20 ms."""

    def __init__(self) -> None:
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()

    def __enter__(self) -> PeakRss:
        self.start = self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 1e6


async def read_export(url: str, key: str, params: dict[str, str]) -> tuple[int, float, float, float]:
    """(bytes, seconds to the first byte, seconds in all, peak RSS growth MB) of one export."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session:
        with PeakRss() as rss:
            t0 = time.perf_counter()
            async with session.get(url, params=params, headers={"Authorization": f"Bearer {key}"}) as response:
                assert response.status == 200, await response.text()
                size, first = 0, None
                async for piece in response.content.iter_any():
                    first = first if first is not None else time.perf_counter() - t0
                    size += len(piece)
            elapsed = time.perf_counter() - t0
    return size, first or elapsed, elapsed, rss.growth_mb


async def walk_export(url: str, key: str, params: dict[str, str]) -> tuple[int, int, float, float, float]:
    """(events, bytes, seconds to the first byte, seconds in all, peak RSS growth MB) of a walk over
    seed 001's export: every page, following ``X-Next-Cursor``."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session:
        with PeakRss() as rss:
            t0 = time.perf_counter()
            size, lines, first, cursor = 0, 0, None, None
            while True:
                query = params | ({"cursor": cursor} if cursor else {})
                async with session.get(url, params=query, headers={"Authorization": f"Bearer {key}"}) as response:
                    assert response.status == 200, await response.text()
                    async for piece in response.content.iter_any():
                        first = first if first is not None else time.perf_counter() - t0
                        size += len(piece)
                        lines += piece.count(b"\n")
                    cursor = response.headers.get("X-Next-Cursor")
                lines -= 1  # the _export_meta line
                if cursor is None:
                    break
            elapsed = time.perf_counter() - t0
    return lines, size, first or elapsed, elapsed, rss.growth_mb


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tracehouse-bench-exports-"))
    broker = EmbeddedBroker(work / "broker", "127.0.0.1", free_port())  # the API's producer needs one
    broker.start()
    # every event of the bench in one SIEM export: the 100,000-row cap is raised for it
    settings = Settings(data_dir=work, kafka_port=broker.port, http_port=free_port(), admin_key=ADMIN_KEY,
                        chain_events=False, ingest_processes=0, export_max_rows=10 * TRACES + 1)
    ch = ClickHouse.from_settings(settings)
    await migrate(ch)
    end_ms = now_ms() - 3_600_000
    runner = await serve_api(settings, ch)
    try:
        seconds = await generate(ch, 0, TRACES, end_ms)
        await settle(ch)
        print(f"\nexports of {TRACES * 10:,} events / {TRACES:,} traces (generated in {seconds:.0f} s), "
              "measured one at a time:", flush=True)
        base = f"http://{settings.http_host}:{settings.http_port}"
        span = {"from": format_ms(end_ms - SPAN_MS - DAY_MS), "to": format_ms(end_ms + DAY_MS)}
        t0 = time.perf_counter()
        fetched = await ch.query(f"SELECT event_id, trace_id, agent_id, type, actor_type, actor_name, description, "
                                 f"status, occurred_at, policy_version, hash FROM {ch.database}.events "
                                 f"WHERE org_id = '{ORG}'")
        baseline = len(fetched.rows) / (time.perf_counter() - t0)
        del fetched
        print(f"baseline: the SIEM columns of every event in one query, no HTTP   {baseline:12,.0f} rows/s  1.00x",
              flush=True)
        async with Api(base) as api:
            key = await api.org_key(ORG, ["reviewer"])
        for label, path, params, rows in (
                ("seed 003 traces CSV (17 columns)", "/api/v1/traces/export", {"format": "csv"}, TRACES),
                ("seed 003 SIEM events JSON", "/api/v1/audit/export", {}, 10 * TRACES),
                ("seed 003 SIEM events CSV", "/api/v1/audit/export", {"format": "csv"}, 10 * TRACES),
                ("seed 003 SIEM events OCSF", "/api/v1/audit/export", {"format": "ocsf"}, 10 * TRACES),
                ("seed 003 SIEM events CEF", "/api/v1/audit/export", {"format": "cef"}, 10 * TRACES)):
            size, first, elapsed, growth = await read_export(base + path, key, span | params)
            print(f"{label:<34} {rows / elapsed:10,.0f} rows/s {rows / elapsed / baseline:5.2f}x  "
                  f"{size / elapsed / 1e6:6.1f} MB/s  first byte {first * 1000:6.0f} ms  "
                  f"peak RSS +{growth:5.0f} MB  ({size / 1e6:,.0f} MB)", flush=True)
        async with Api(base) as api:
            reader = await api.org_key(ORG, ["traces:read"])
        window = {"startDate": span["from"], "endDate": span["to"], "limit": "2000"}
        rows, size, first, elapsed, growth = await walk_export(base + "/v1/traces/export", reader, window)
        assert rows == 10 * TRACES, rows
        label = "seed 001 full events JSONL walk"
        print(f"{label:<34} {rows / elapsed:10,.0f} rows/s {rows / elapsed / baseline:5.2f}x  "
              f"{size / elapsed / 1e6:6.1f} MB/s  first byte {first * 1000:6.0f} ms  "
              f"peak RSS +{growth:5.0f} MB  ({size / 1e6:,.0f} MB, {rows // 2000:,} pages of 2,000)", flush=True)
    finally:
        await runner.cleanup()
        await ch.close()
        broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
