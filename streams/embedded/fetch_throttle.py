"""Stop idle aiokafka consumers from spinning against the embedded broker.

Kafka brokers hold an empty Fetch for up to ``fetch.max.wait.ms`` and answer
as soon as records arrive; noida-db answers it at once. aiokafka's fetch loop
then sends the next Fetch immediately, so every idle consumer (Faust's
included, which hard-codes its fetch wait) burns a full core, and no consumer
setting helps.

:func:`install` wraps ``Fetcher._proc_fetch_request`` (aiokafka 0.14.0) to
emulate the broker-side wait. That coroutine returns True when it buffered
records or an error for the user ("wake up the waiters") and False otherwise:
an empty answer, a discarded answer, or a failed request (which already slept
``retry_backoff``). After a False answer the wrapper sleeps before the next
Fetch: ``min_wait`` after records last arrived, doubling with every empty
answer up to ``max_wait``. A record that a producer of this process writes to
a topic ends the sleeps of that topic's fetches and starts their waits again
from ``min_wait`` (the producer's acknowledgement wakes them), so a
hop inside one process is faster than a fixed wait while an idle process
fetches ``1/max_wait`` times a second per consumer. Records from other
processes arrive at most ``max_wait`` later.

The fetch task is cancelled by ``Fetcher.close()`` and on unassignment, and
the original swallows that cancel and returns False, so the wrapper skips the
sleep when its task is being cancelled and returns False if cancelled while
sleeping.

Install it only when the embedded broker is in use: a real Kafka broker
waits on its side and the wrapper then never sleeps anyway.

Measured 2026-12-05 on 2 cores: a fixed 50 ms wait cost an idle ``run`` ~5 %
of a core in 156 Fetches a second across its consumers.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from aiokafka.consumer.fetcher import Fetcher
from aiokafka.producer.producer import AIOKafkaProducer

_ProcFetch = Callable[..., Awaitable[bool]]
_Send = Callable[..., Awaitable[asyncio.Future[Any]]]


class _Sleepers:
    """The sleeping fetches of every event loop in this process by topic, and a count of each
    topic's wake-ups."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[_Sleep]] = {}
        self._wakes: dict[str, int] = {}

    def generation(self, topics: frozenset[str]) -> int:
        """A number that grows whenever records are produced to one of ``topics``."""
        return sum(self._wakes.get(topic, 0) for topic in topics)

    async def sleep(self, topics: frozenset[str], seconds: float) -> None:
        """Sleep ``seconds`` or until records are produced to one of ``topics``."""
        loop = asyncio.get_running_loop()
        entry = _Sleep(loop, loop.create_future())
        timer = loop.call_later(seconds, _release, entry.woken)
        with self._lock:
            for topic in topics:
                self._waiting.setdefault(topic, set()).add(entry)
        try:
            await entry.woken
        finally:
            timer.cancel()
            with self._lock:
                for topic in topics:
                    self._waiting.get(topic, set()).discard(entry)

    def wake(self, topic: str) -> None:
        """End the sleeps of ``topic``'s fetches now; safe from any thread. Each sleep is woken
        once however many records are acknowledged meanwhile."""
        with self._lock:
            self._wakes[topic] = self._wakes.get(topic, 0) + 1
            waiting = self._waiting.pop(topic, set())
        for entry in waiting:
            if not entry.loop.is_closed():
                entry.loop.call_soon_threadsafe(_release, entry.woken)


class _Sleep(NamedTuple):
    loop: asyncio.AbstractEventLoop
    woken: asyncio.Future[None]


def _release(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


_sleepers = _Sleepers()
_original_fetch: _ProcFetch | None = None
_original_send: _Send | None = None


def _throttled(original: _ProcFetch, min_wait: float, max_wait: float) -> _ProcFetch:
    # per Fetcher: (the wake-up generation of its topics it last saw, its next wait)
    waits: weakref.WeakKeyDictionary[Fetcher, tuple[int, float]] = weakref.WeakKeyDictionary()

    @functools.wraps(original)
    async def _proc_fetch_request(self: Fetcher, assignment: Any, node_id: int, request: Any) -> bool:
        started = time.monotonic()
        topics = frozenset(topic for topic, _ in request.topics)
        generation = _sleepers.generation(topics)
        has_new_data = await original(self, assignment, node_id, request)
        if has_new_data:
            waits[self] = (generation, min_wait)
            return has_new_data
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            return False
        seen, wait = waits.get(self, (generation, min_wait))
        if seen != generation:
            wait = min_wait  # records were produced to these topics since this fetcher last looked
        waits[self] = (generation, min(wait * 2, max_wait))
        try:
            # at least min_wait between Fetches, woken or not, so that a consumer that keeps up
            # under load reads batches instead of refetching at every acknowledgement
            pause = min_wait - (time.monotonic() - started)
            if pause > 0:
                await asyncio.sleep(pause)
            remaining = wait - (time.monotonic() - started)
            if remaining > 0 and _sleepers.generation(topics) == generation:
                await _sleepers.sleep(topics, remaining)
        except asyncio.CancelledError:
            return False
        return False

    return _proc_fetch_request


def _waking(original: _Send) -> _Send:
    @functools.wraps(original)
    async def send(self: AIOKafkaProducer, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        delivered = await original(self, topic, *args, **kwargs)
        delivered.add_done_callback(lambda _: _sleepers.wake(topic))
        return delivered

    return send


def install(min_wait: float = 0.05, max_wait: float = 0.5) -> None:
    """Patch aiokafka's Fetcher and producer; calling it again only updates the waits."""
    global _original_fetch, _original_send
    if not 0 < min_wait <= max_wait:
        raise ValueError("need 0 < min_wait <= max_wait")
    if _original_fetch is None:
        _original_fetch = Fetcher._proc_fetch_request
        _original_send = AIOKafkaProducer.send
    Fetcher._proc_fetch_request = _throttled(_original_fetch, min_wait, max_wait)  # type: ignore[method-assign]
    AIOKafkaProducer.send = _waking(_original_send)  # type: ignore[method-assign,arg-type]


def uninstall() -> None:
    """Restore aiokafka's original methods (no-op if not installed)."""
    global _original_fetch, _original_send
    if _original_fetch is not None and _original_send is not None:
        Fetcher._proc_fetch_request = _original_fetch  # type: ignore[method-assign]
        AIOKafkaProducer.send = _original_send  # type: ignore[method-assign]
        _original_fetch = _original_send = None


def installed() -> bool:
    """True while the throttle is in place."""
    return _original_fetch is not None
