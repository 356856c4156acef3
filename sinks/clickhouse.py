"""One async facade over ClickHouse: embedded chdb or a ClickHouse server.

clickhouse-connect is synchronous, so every call runs on a small thread pool with one
client per thread. Embedded chdb allows one engine (data dir) per process and any
number of clients to it, each isolated like an HTTP connection, so both modes run up
to ``threads`` queries at once: the two queries of one request (a page and its total)
overlap, and one slow read or sink insert does not queue every other call behind it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client

T = TypeVar("T")


@dataclass(frozen=True)
class Rows:
    """A query result: column names and row tuples."""

    columns: tuple[str, ...]
    rows: Sequence[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


class ClickHouse:
    """Async ClickHouse access; ``database`` is where tracehouse's tables live."""

    def __init__(self, *, database: str, url: str | None = None, path: Path | None = None,
                 threads: int = 4) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (server) or path (embedded chdb)")
        self.database = database
        self.embedded = url is None
        self._url = url
        self._path = path
        self._local = threading.local()
        self._clients: list[Client] = []
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="clickhouse")

    @classmethod
    def from_settings(cls, settings: Any) -> ClickHouse:
        """Embedded chdb under the data dir unless TRACEHOUSE_CLICKHOUSE_URL is set."""
        if settings.clickhouse_url:
            return cls(database=settings.clickhouse_database, url=settings.clickhouse_url,
                       threads=settings.clickhouse_threads)
        settings.chdb_dir.mkdir(parents=True, exist_ok=True)
        return cls(database=settings.clickhouse_database, path=settings.chdb_dir,
                   threads=settings.clickhouse_threads)

    def _client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            if self.embedded:
                client = clickhouse_connect.get_client(interface="chdb", path=str(self._path))
            else:
                client = clickhouse_connect.get_client(dsn=self._url, database="default")
            self._local.client = client
            self._clients.append(client)
        return client

    async def _run(self, fn: Callable[[Client], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._client()))

    async def query(self, sql: str, parameters: dict[str, Any] | None = None,
                    settings: dict[str, Any] | None = None) -> Rows:
        """Run a SELECT; ``{name:Type}`` placeholders bind ``parameters`` server-side."""
        def run(c: Client) -> Rows:
            r = c.query(sql, parameters=parameters, settings=settings)
            return Rows(tuple(r.column_names), r.result_rows)
        return await self._run(run)

    async def command(self, sql: str, parameters: dict[str, Any] | None = None,
                      settings: dict[str, Any] | None = None) -> Any:
        """Run DDL or any statement without a result set."""
        return await self._run(lambda c: c.command(sql, parameters=parameters, settings=settings))

    async def insert_formatted(self, table: str, body: bytes, fmt: str,
                               settings: dict[str, Any] | None = None) -> None:
        """Insert ``body``, data in ClickHouse input format ``fmt`` (parsed by ClickHouse in C++)."""
        await self._run(lambda c: c.raw_insert(f"{self.database}.{table}", None, body,
                                               fmt=fmt, settings=settings))

    async def raw_query(self, sql: str, parameters: dict[str, Any] | None = None,
                        fmt: str = "JSONEachRow", settings: dict[str, Any] | None = None) -> bytes:
        """Run a query and return ClickHouse's own formatting of the result."""
        return await self._run(lambda c: c.raw_query(sql, parameters=parameters, fmt=fmt, settings=settings))

    async def ping(self) -> bool:
        try:
            await self.command("SELECT 1")
            return True
        except Exception:
            return False

    async def close(self) -> None:
        """Wait for the calls under way, then close every thread's client."""
        executor = getattr(self, "_executor", None)
        if executor is None:
            return
        await asyncio.to_thread(executor.shutdown, wait=True)
        clients, self._clients = self._clients, []
        for client in clients:
            await asyncio.to_thread(client.close)
