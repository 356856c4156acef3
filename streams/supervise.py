"""Keep a background consumer alive: log what killed it and start it again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: Seconds before a failed consumer is started again.
RESTART_DELAY = 1.0


async def restarting(run_once: Callable[[], Awaitable[None]], what: str) -> None:
    """Await ``run_once()`` until cancelled; when it fails, log it and start it again."""
    while True:
        try:
            await run_once()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the %s failed; restarting it in %.0f s", what, RESTART_DELAY)
            await asyncio.sleep(RESTART_DELAY)
