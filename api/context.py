"""The resources an API request can reach, as aiohttp ``AppKey``s."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from aiohttp import web

from api.auth import KeyVerifier, authenticate, require_scope
from api.commands import VerdictWaiter
from api.preparation import PreparationPool
from schemas.subscriptions import SubscriptionView
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


class Publisher(Protocol):
    """What the API needs of ``schemas.producer.EventProducer`` (tests pass an in-memory one)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_records(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int: ...

    async def send_invalid(self, reports: Iterable[dict[str, Any]]) -> None: ...

    async def ping(self) -> bool: ...


SETTINGS = web.AppKey("settings", Settings)
CLICKHOUSE = web.AppKey("clickhouse", ClickHouse)
PRODUCER = web.AppKey("producer", Publisher)
EVENTS = web.AppKey("events", EventRepository)
EVENT_EXPORTS = web.AppKey("event_exports", EventExports)
CHAINS = web.AppKey("chains", ChainRepository)
AUDIT_LOG = web.AppKey("audit_log", AuditEventRepository)
TRACES = web.AppKey("traces", TraceRepository)
ROLLUPS = web.AppKey("rollups", RollupRepository)
CHECKPOINTS = web.AppKey("checkpoints", CheckpointRepository)
API_KEYS = web.AppKey("api_keys", ApiKeyRepository)
VERIFIER = web.AppKey("verifier", KeyVerifier)
PREPARATION = web.AppKey("preparation", PreparationPool)
VERDICTS = web.AppKey("verdicts", VerdictWaiter)
SUBSCRIPTIONS = web.AppKey("subscriptions", SubscriptionView)
WEBHOOKS = web.AppKey("webhooks", WebhookRepository)
DELIVERIES = web.AppKey("deliveries", WebhookDeliveryRepository)


async def caller_org(request: web.Request, scope: str) -> str:
    """Authenticate the request and return the caller's org (401/403 otherwise)."""
    principal = await authenticate(request, request.app[VERIFIER])
    return require_scope(principal, scope)
