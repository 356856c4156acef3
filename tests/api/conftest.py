"""The API tier: the app ``create_app`` builds, served in this process by aiohttp's
``TestServer`` on a fresh chdb database, with no broker. Its producer keeps what ingest
publishes (``tests.support.in_process.RecordingProducer``); ``pipeline.flush()`` seals and
stores those records with the worker's own code, so reads see what the worker would store.

One app for the whole session (tests keep to their own orgs, from ``uid``); its tests run
in the session's event loop: ``pytestmark = pytest.mark.asyncio(loop_scope="session")``.
There are no chain agents here: ``POST …/outcome`` answers 503, and ``pipeline.outcome``
records an outcome the way the chain agent decides it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from schemas.subscriptions import SubscriptionView
from schemas.topics import WEBHOOK_SUBSCRIPTIONS
from tests.integration.conftest import fresh_clickhouse
from tests.support.in_process import Pipeline, RecordingProducer
from tests.support.service import ADMIN_KEY, Api
from tracehouse.settings import Settings


@dataclass(frozen=True)
class InProcess:
    api: Api
    client: TestClient
    producer: RecordingProducer
    pipeline: Pipeline


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def in_process(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[InProcess]:
    producer = RecordingProducer()
    # ingest prepares requests inline: the process pool is exercised by every e2e ingest
    settings = Settings(admin_key=ADMIN_KEY, chain_events=False, ingest_processes=0)
    async with fresh_clickhouse(tmp_path_factory) as ch:
        subscriptions = SubscriptionView()  # read from the topic at once, as if through a broker
        subscriptions.ready.set()
        producer.readers[WEBHOOK_SUBSCRIPTIONS] = subscriptions.apply_record
        app = create_app(settings, ch, producer=lambda _: producer, subscriptions=subscriptions)
        async with TestClient(TestServer(app)) as client, Api(str(client.make_url("")).rstrip("/")) as api:
            yield InProcess(api, client, producer, Pipeline(ch, producer))


@pytest.fixture(scope="session")
def api(in_process: InProcess) -> Api:
    """A client of the in-process app (``tests.support.service.Api``: ``await api.get(path, key)``)."""
    return in_process.api


@pytest.fixture(scope="session")
def client(in_process: InProcess) -> TestClient:
    """aiohttp's test client of the same app (paths sent as written, raw connections)."""
    return in_process.client


@pytest.fixture(scope="session")
def producer(in_process: InProcess) -> RecordingProducer:
    return in_process.producer


@pytest.fixture(scope="session")
def pipeline(in_process: InProcess) -> Pipeline:
    return in_process.pipeline
