"""The links ClickHouse holds, read over HTTP by a chain worker that runs without ClickHouse.

With embedded chdb only the process that owns the data dir opens ClickHouse; a chain worker beside
it (``tracehouse worker --parts chain``) asks that process's API (``GET /v1/admin/stored-links``,
operator key) what ``streams.chain.SealedTail`` must know before it seals on a partition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp


class HttpStoredLinks:
    """``streams.chain.StoredLinks`` through the owner's API at ``base_url``; ``admin_key()`` gives the
    operator key (read when asked: the owner may write it after this process started)."""

    def __init__(self, base_url: str, admin_key: Callable[[], str], timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_key = admin_key
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def stored_after(self, topic: str, partition: int, offset: int) -> dict[str, list[dict[str, Any]]]:
        """Raises on any answer but 200 (the caller retries until it gets one)."""
        params = {"partition": str(partition), "offset": str(offset)}
        headers = {"Authorization": f"Bearer {self.admin_key()}"}
        async with aiohttp.ClientSession(timeout=self.timeout) as session, session.get(
                f"{self.base_url}/v1/admin/stored-links", params=params, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"stored links: HTTP {response.status}: {(await response.text())[:200]}")
            return (await response.json())["links"]
