"""Keep a background consumer alive: log what killed it and start it again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from schemas.retry import SUPERVISION, retrying


async def restarting(run_once: Callable[[], Awaitable[None]], what: str) -> None:
    """Await ``run_once()`` until cancelled; when it fails, log it (with its traceback) and start it
    again after ``schemas.retry.SUPERVISION``'s delay; when it returns, start it again at once."""
    while True:
        await retrying(run_once, SUPERVISION, f"the {what}", traceback=True)
