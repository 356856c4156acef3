"""``create_app(settings)``: the aiohttp application, resources managed by cleanup_ctx."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from api import openapi
from api.auth import KeyVerifier
from api.commands import VerdictWaiter
from api.context import (
    API_KEYS,
    AUDIT_LOG,
    CHAINS,
    CHECKPOINTS,
    CLICKHOUSE,
    DELIVERIES,
    EVENT_EXPORTS,
    EVENTS,
    PREPARATION,
    PRODUCER,
    ROLLUPS,
    SETTINGS,
    SUBSCRIPTIONS,
    TRACES,
    VERDICTS,
    VERIFIER,
    WEBHOOKS,
    Publisher,
)
from api.errors import error_middleware
from api.preparation import PreparationPool
from api.routes import (
    admin,
    audit,
    audit_export,
    checkpoints,
    gateway,
    gateway_export,
    governance,
    governance_exports,
    health,
    ingest,
    otlp,
    tenants,
    webhook_deliveries,
    webhooks,
)
from schemas.producer import BrokerUnavailable, EventProducer
from schemas.subscriptions import SubscriptionReader, SubscriptionView
from schemas.topics import COMMAND_VERDICTS, WEBHOOK_SUBSCRIPTIONS
from sinks.clickhouse import ClickHouse
from sinks.repositories.api_keys import ApiKeyRepository
from sinks.repositories.audit_events import AuditEventRepository
from sinks.repositories.chains import ChainRepository
from sinks.repositories.checkpoints import CheckpointRepository
from sinks.repositories.events import EventExports, EventRepository
from sinks.repositories.rollups import RollupRepository
from sinks.repositories.traces import TraceRepository
from sinks.repositories.webhook_deliveries import WebhookDeliveryRepository
from sinks.repositories.webhooks import WebhookRepository
from tracehouse.settings import Settings


def broker_producer(settings: Settings) -> EventProducer:
    """The API's producer: no linger (a request's records are sent together and the reply
    waits for their acks), records up to the settings' record limit."""
    return EventProducer(settings.bootstrap_servers, client_id="tracehouse-api", linger_ms=0,
                         max_request_size=settings.max_record_bytes, send_timeout=settings.send_timeout_seconds)


def create_app(settings: Settings, clickhouse: ClickHouse | None = None, *,
               producer: Callable[[Settings], Publisher] = broker_producer,
               subscriptions: SubscriptionView | None = None) -> web.Application:
    """The API. Pass ``clickhouse`` to share the worker's connection (embedded chdb), and
    ``producer`` to publish elsewhere than to the broker (the API tests keep records in memory);
    ``subscriptions`` to fill the webhook subscriptions' view yourself instead of reading the topic."""
    app = web.Application(middlewares=[error_middleware(settings.max_body_bytes)],
                          client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings

    async def clickhouse_ctx(app: web.Application) -> AsyncIterator[None]:
        owned = clickhouse is None
        ch = ClickHouse.from_settings(settings) if owned else clickhouse
        app[CLICKHOUSE] = ch
        app[EVENTS] = EventRepository(ch)
        app[EVENT_EXPORTS] = EventExports(ch)
        app[CHAINS] = ChainRepository(ch)
        app[AUDIT_LOG] = AuditEventRepository(ch)
        app[TRACES] = TraceRepository(ch)
        app[ROLLUPS] = RollupRepository(ch)
        app[CHECKPOINTS] = CheckpointRepository(ch)
        app[API_KEYS] = ApiKeyRepository(ch)
        app[DELIVERIES] = WebhookDeliveryRepository(ch)
        app[WEBHOOKS] = WebhookRepository(ch, app[DELIVERIES], breaker_failures=settings.webhook_breaker_failures,
                                          breaker_cooldown_seconds=settings.webhook_breaker_cooldown_seconds)
        app[VERIFIER] = KeyVerifier(app[API_KEYS], settings.admin_key, settings.key_cache_seconds)
        yield
        if owned:
            await ch.close()

    async def producer_ctx(app: web.Application) -> AsyncIterator[None]:
        publisher = producer(settings)
        with contextlib.suppress(BrokerUnavailable):  # started again on the first send
            await publisher.start()
        app[PRODUCER] = publisher
        yield
        await publisher.stop()

    async def preparation_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = PreparationPool(settings.ingest_processes)
        await pool.start()
        app[PREPARATION] = pool
        yield
        await pool.stop()

    async def verdicts_ctx(app: web.Application) -> AsyncIterator[None]:
        waiter = VerdictWaiter(settings.bootstrap_servers, COMMAND_VERDICTS, settings.topic_partitions)
        await waiter.start()
        app[VERDICTS] = waiter
        yield
        await waiter.stop()

    async def subscriptions_ctx(app: web.Application) -> AsyncIterator[None]:
        if subscriptions is not None:
            app[SUBSCRIPTIONS] = subscriptions
            yield
            return
        view = SubscriptionView()
        reader = SubscriptionReader(settings.bootstrap_servers, WEBHOOK_SUBSCRIPTIONS, settings.topic_partitions,
                                    view, settings.max_record_bytes)
        await reader.start()
        app[SUBSCRIPTIONS] = view
        yield
        await reader.stop()

    app.cleanup_ctx.extend([clickhouse_ctx, producer_ctx, preparation_ctx, subscriptions_ctx])
    if settings.chain_events:  # without chain agents nobody decides commands
        app.cleanup_ctx.append(verdicts_ctx)
    # the export routes before the trace routes they look like (/v1/traces/export is no trace id)
    for module in (health, ingest, otlp, gateway_export, governance_exports, gateway, governance, tenants, audit,
                   audit_export, checkpoints, admin, webhooks, webhook_deliveries):
        module.add_routes(app)
    app.router.add_get("/v1/openapi.json", openapi.serve)
    return app
