"""The webhook worker parts: the fan-out and the dispatcher, sharing one view of the subscriptions
per process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from schemas.subscriptions import SubscriptionReader, SubscriptionView
from schemas.topics import (
    AUDIT_EVENTS,
    SEALED_EVENTS,
    TRACE_EVENTS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_EVENTS,
    WEBHOOK_SUBSCRIPTIONS,
)
from schemas.webhooks import parse_retry_schedule
from streams.webhooks.dispatcher import Dispatcher, DispatchSettings
from streams.webhooks.fanout import Fanout
from tracehouse.settings import Settings


class SharedSubscriptions:
    """One ``SubscriptionView`` (and one reader of ``webhook-subscriptions``) for the parts of a
    process that use it: started by the first, stopped after the last."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._users = 0
        self._view: SubscriptionView | None = None
        self._reader: SubscriptionReader | None = None

    @contextlib.asynccontextmanager
    async def view(self) -> AsyncIterator[SubscriptionView]:
        """The view, once it holds every subscription written before its reader started."""
        if self._view is None:
            view = SubscriptionView()
            reader = SubscriptionReader(self.settings.bootstrap_servers, WEBHOOK_SUBSCRIPTIONS,
                                        self.settings.topic_partitions, view, self.settings.max_record_bytes,
                                        part="tracehouse-webhook-subscriptions")
            await reader.start()
            self._view, self._reader = view, reader
        self._users += 1
        try:
            await self._view.ready.wait()
            yield self._view
        finally:
            self._users -= 1
            if self._users == 0 and self._reader is not None:
                reader, self._view, self._reader = self._reader, None, None
                await reader.stop()

    async def fresh(self) -> None:
        """Return once the view holds every subscription change written before this call."""
        if self._reader is None:
            raise RuntimeError("no part holds the subscriptions' view")
        await self._reader.fresh()


def dispatch_settings(settings: Settings) -> DispatchSettings:
    return DispatchSettings(parse_retry_schedule(settings.webhook_retry_schedule), settings.webhook_timeout_seconds,
                            settings.webhook_concurrency_per_endpoint, settings.webhook_breaker_failures,
                            settings.webhook_breaker_cooldown_seconds, settings.webhook_allow_private_networks)


def fanout_topics(settings: Settings) -> list[str]:
    """What the fan-out reads: the notices, and the event records (sealed, or raw when chaining is off)."""
    return [WEBHOOK_EVENTS, *([SEALED_EVENTS] if settings.chain_events else [TRACE_EVENTS, AUDIT_EVENTS])]


def build_fanout(settings: Settings, shared: SharedSubscriptions) -> Callable[[], Awaitable[None]]:
    """``run()`` of the fan-out: ``fanout_topics`` -> ``webhook-deliveries``."""
    async def run() -> None:
        async with shared.view() as view:
            await Fanout(settings.bootstrap_servers, fanout_topics(settings), WEBHOOK_DELIVERIES, view,
                         shared.fresh, settings.max_record_bytes).run()
    return run


def build_dispatcher(settings: Settings, shared: SharedSubscriptions) -> Callable[[], Awaitable[None]]:
    """``run()`` of the dispatcher: every delivery tier -> receivers, retries, dead letters, attempts."""
    async def run() -> None:
        async with shared.view() as view:
            await Dispatcher(settings.bootstrap_servers, view, dispatch_settings(settings), WEBHOOK_SUBSCRIPTIONS,
                             settings.max_record_bytes).run()
    return run
