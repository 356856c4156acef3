"""Keep the embedded broker running: restart it whenever its process is gone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from streams.embedded.broker import EmbeddedBroker

log = logging.getLogger(__name__)


async def supervise_broker(broker: EmbeddedBroker, interval: float,
                           restart_worker: Callable[[], None] | None = None) -> None:
    """Every ``interval`` seconds, start the broker again (same port and data dir) if its
    process is gone.

    A broker that died lost what it acknowledged since it last began writing its state (README
    "Crashes of the whole box"), and a worker's memory (chain heads, read positions) may be
    ahead of what it kept: sealing on from there would fork chains or skip records. So in a
    process that runs the worker, ``restart_worker`` is called instead (it restarts the whole
    process, which starts the broker and recovers from durable state, as after a power cut). An
    API alone keeps running: its clients reconnect to the restarted broker."""
    while True:
        await asyncio.sleep(interval)
        try:
            if await asyncio.to_thread(broker.answers):
                continue
            if restart_worker is not None:
                log.critical("the embedded broker (%s) died: restarting tracehouse so the worker "
                             "recovers from what the broker kept", broker.bootstrap)
                restart_worker()
            await asyncio.to_thread(broker.start)
            log.warning("the embedded broker (%s) had died: restarted it, pid %s",
                        broker.bootstrap, await asyncio.to_thread(broker.pid))
        except Exception as exc:  # the broker refused to start: try again next round
            log.error("the embedded broker is down and could not be restarted: %s", exc)
