"""The resources an API request can reach, as aiohttp ``AppKey``s."""

from __future__ import annotations

from aiohttp import web

from api.auth import KeyVerifier, authenticate, require_scope
from api.commands import VerdictWaiter
from api.preparation import PreparationPool
from schemas.producer import EventProducer
from sinks.clickhouse import ClickHouse
from sinks.repositories.api_keys import ApiKeyRepository
from sinks.repositories.chains import ChainRepository
from sinks.repositories.checkpoints import CheckpointRepository
from sinks.repositories.events import EventRepository
from sinks.repositories.rollups import RollupRepository
from sinks.repositories.traces import TraceRepository
from tracehouse.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
CLICKHOUSE = web.AppKey("clickhouse", ClickHouse)
PRODUCER = web.AppKey("producer", EventProducer)
EVENTS = web.AppKey("events", EventRepository)
CHAINS = web.AppKey("chains", ChainRepository)
TRACES = web.AppKey("traces", TraceRepository)
ROLLUPS = web.AppKey("rollups", RollupRepository)
CHECKPOINTS = web.AppKey("checkpoints", CheckpointRepository)
API_KEYS = web.AppKey("api_keys", ApiKeyRepository)
VERIFIER = web.AppKey("verifier", KeyVerifier)
PREPARATION = web.AppKey("preparation", PreparationPool)
VERDICTS = web.AppKey("verdicts", VerdictWaiter)


async def caller_org(request: web.Request, scope: str) -> str:
    """Authenticate the request and return the caller's org (401/403 otherwise)."""
    principal = await authenticate(request, request.app[VERIFIER])
    return require_scope(principal, scope)
