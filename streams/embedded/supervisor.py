"""Keep the embedded broker running, and its consumer groups free of dead members."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from streams.embedded.broker import EmbeddedBroker
from streams.embedded.groups import evict_dead_members

log = logging.getLogger(__name__)

#: Dead members are looked for every this many rounds: a partition of a killed process moves within
#: seconds either way, and each look asks the broker about every group.
EVICT_EVERY = 3


async def supervise_broker(broker: EmbeddedBroker, interval: float, groups: list[str], registry: Path,
                           restart_worker: Callable[[], None] | None = None, *, starts: bool = True) -> None:
    """Every ``EVICT_EVERY`` rounds of ``interval`` seconds, evict the dead members of ``groups``
    (``streams.embedded.groups``, whose ``registry`` says which processes run)
    and every round, if the broker's process is gone, start it again (same port and data dir; only when
    ``starts``: a process that runs some parts beside the one owning the broker waits for it).

    A broker that died lost what it acknowledged since it last began writing its state (README
    "Crashes of the whole box"), and a worker's memory (chain heads, read positions) may be
    ahead of what it kept: sealing on from there would fork chains or skip records. So in a
    process that runs the worker, ``restart_worker`` is called instead (it restarts the whole
    process, which starts the broker and recovers from durable state, as after a power cut). An
    API alone keeps running: its clients reconnect to the restarted broker."""
    rounds = 0
    while True:
        await asyncio.sleep(interval)
        rounds += 1
        try:
            if await asyncio.to_thread(broker.answers):
                if rounds % EVICT_EVERY == 0:
                    await evict_dead_members(broker.bootstrap, groups, registry)
                continue
            if restart_worker is not None:
                log.critical("the embedded broker (%s) died: restarting tracehouse so the worker "
                             "recovers from what the broker kept", broker.bootstrap)
                restart_worker()
            if starts:
                await asyncio.to_thread(broker.start)
                log.warning("the embedded broker (%s) had died: restarted it, pid %s",
                            broker.bootstrap, await asyncio.to_thread(broker.pid))
        except Exception as exc:  # the broker refused to start, or vanished meanwhile: next round
            log.error("supervising the embedded broker failed: %s", exc)
