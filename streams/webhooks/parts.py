"""The webhook worker parts: the fan-out and the dispatcher, each with its view of the subscriptions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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


def dispatch_settings(settings: Settings) -> DispatchSettings:
    return DispatchSettings(parse_retry_schedule(settings.webhook_retry_schedule), settings.webhook_timeout_seconds,
                            settings.webhook_concurrency_per_endpoint, settings.webhook_breaker_failures,
                            settings.webhook_breaker_cooldown_seconds, settings.webhook_allow_private_networks)


def _with_view(settings: Settings, part: Callable[[SubscriptionView], Callable[[], Awaitable[None]]]
               ) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        view = SubscriptionView()
        reader = SubscriptionReader(settings.bootstrap_servers, WEBHOOK_SUBSCRIPTIONS, settings.topic_partitions, view,
                                    settings.max_record_bytes, part="tracehouse-webhook-subscriptions")
        await reader.start()
        try:
            await view.ready.wait()  # every subscription written before this start is known
            await part(view)()
        finally:
            await reader.stop()

    return run


def fanout_topics(settings: Settings) -> list[str]:
    """What the fan-out reads: the notices, and the event records (sealed, or raw when chaining is off)."""
    return [WEBHOOK_EVENTS, *([SEALED_EVENTS] if settings.chain_events else [TRACE_EVENTS, AUDIT_EVENTS])]


def build_fanout(settings: Settings) -> Callable[[], Awaitable[None]]:
    """``run()`` of the fan-out: ``fanout_topics`` -> ``webhook-deliveries``."""
    return _with_view(settings, lambda view: Fanout(settings.bootstrap_servers, fanout_topics(settings),
                                                    WEBHOOK_DELIVERIES, view, settings.max_record_bytes).run)


def build_dispatcher(settings: Settings) -> Callable[[], Awaitable[None]]:
    """``run()`` of the dispatcher: every delivery tier -> receivers, retries, dead letters, attempts."""
    return _with_view(settings, lambda view: Dispatcher(settings.bootstrap_servers, view, dispatch_settings(settings),
                                                        WEBHOOK_SUBSCRIPTIONS, settings.max_record_bytes).run)
