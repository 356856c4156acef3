"""Stop idle aiokafka consumers from spinning against the embedded broker.

Kafka brokers hold an empty Fetch for up to ``fetch.max.wait.ms``; noida-db
answers it at once. aiokafka's fetch loop then sends the next Fetch
immediately, so every idle consumer (Faust's included, which hard-codes its
fetch wait) burns a full core, and no consumer setting helps.

:func:`install` wraps ``Fetcher._proc_fetch_request`` (aiokafka 0.14.0). That
coroutine returns True when it buffered records or an error for the user
("wake up the waiters") and False otherwise: an empty answer, a discarded
answer, or a failed request (which already slept ``retry_backoff``). When it
returns False sooner than ``min_wait`` after it was called, the wrapper
sleeps out the rest, emulating a broker-side wait. Records produced meanwhile
arrive at most ``min_wait`` later. The fetch task is cancelled by
``Fetcher.close()`` and on unassignment, and the original swallows that
cancel and returns False, so the wrapper skips the sleep when its task is
being cancelled and returns False if cancelled while sleeping.

Install it only when the embedded broker is in use: a real Kafka broker
waits on its side and the wrapper then never sleeps anyway.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.consumer.fetcher import Fetcher

_ProcFetch = Callable[..., Awaitable[bool]]

_original: _ProcFetch | None = None
def _throttled(original: _ProcFetch, min_wait: float) -> _ProcFetch:
    @functools.wraps(original)
    async def _proc_fetch_request(self: Fetcher, assignment: Any, node_id: int, request: Any) -> bool:
        started = time.monotonic()
        has_new_data = await original(self, assignment, node_id, request)
        if has_new_data:
            return has_new_data
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            return False
        remaining = min_wait - (time.monotonic() - started)
        if remaining > 0:
            try:
                await asyncio.sleep(remaining)
            except asyncio.CancelledError:
                return False
        return False

    _proc_fetch_request.min_wait = min_wait  # type: ignore[attr-defined]
    return _proc_fetch_request


def install(min_wait: float = 0.05) -> None:
    """Patch aiokafka's Fetcher; calling it again only updates ``min_wait``."""
    global _original
    if min_wait <= 0:
        raise ValueError("min_wait must be positive")
    if _original is None:
        _original = Fetcher._proc_fetch_request
    Fetcher._proc_fetch_request = _throttled(_original, min_wait)  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore aiokafka's original Fetcher method (no-op if not installed)."""
    global _original
    if _original is not None:
        Fetcher._proc_fetch_request = _original  # type: ignore[method-assign]
        _original = None


def installed() -> bool:
    """True while the throttle is in place."""
    return _original is not None
