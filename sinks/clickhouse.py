"""One async facade over ClickHouse: embedded chdb or a ClickHouse server.

clickhouse-connect is synchronous, so every call runs on an executor. chdb allows
one client per thread and one process per data dir, so embedded mode uses a single
dedicated thread; a server gets a small pool with one client per thread.
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
        self._executor = ThreadPoolExecutor(
            max_workers=1 if self.embedded else threads, thread_name_prefix="clickhouse"
        )

    @classmethod
    def from_settings(cls, settings: Any) -> ClickHouse:
        """Embedded chdb under the data dir unless TRACEHOUSE_CLICKHOUSE_URL is set."""
        if settings.clickhouse_url:
            return cls(database=settings.clickhouse_database, url=settings.clickhouse_url)
        settings.chdb_dir.mkdir(parents=True, exist_ok=True)
        return cls(database=settings.clickhouse_database, path=settings.chdb_dir)

    def _client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            if self.embedded:
                client = clickhouse_connect.get_client(interface="chdb", path=str(self._path))
            else:
                client = clickhouse_connect.get_client(dsn=self._url, database="default")
            self._local.client = client
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
                        fmt: str = "JSONEachRow") -> bytes:
        """Run a query and return ClickHouse's own formatting of the result."""
        return await self._run(lambda c: c.raw_query(sql, parameters=parameters, fmt=fmt))

    async def ping(self) -> bool:
        try:
            await self.command("SELECT 1")
            return True
        except Exception:
            return False

    async def close(self) -> None:
        """Close the clients on their own threads, then the executor."""
        def close_one(c: Client) -> None:
            c.close()
            self._local.client = None
        if getattr(self, "_executor", None) is not None:
            try:
                await self._run(close_one)
            finally:
                self._executor.shutdown(wait=True)
