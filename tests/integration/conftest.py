"""Real parts for integration tests: a broker on a free port (each test using ``broker`` runs on the
embedded noida-db and on Apache Kafka, tests/conftest.py), and in-process
ClickHouse: embedded chdb (one per test session), or a ClickHouse server when
TRACEHOUSE_TEST_CLICKHOUSE_URL is given: the same tests run on both."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from sinks.clickhouse import ClickHouse
from sinks.migrate import migrate
from streams.embedded import fetch_throttle, group_generation
from streams.embedded.broker import EmbeddedBroker, free_port
from tests.conftest import BROKERS
from tests.support.kafka_broker import KafkaBroker

_chdb_path: list[str] = []


@contextlib.asynccontextmanager
async def fresh_clickhouse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClickHouse]:
    """A migrated, fresh database on the session's ClickHouse backend, dropped afterwards."""
    database = f"th_{uuid.uuid4().hex[:12]}"
    url = os.environ.get("TRACEHOUSE_TEST_CLICKHOUSE_URL")
    if url:
        ch = ClickHouse(database=database, url=url)
    else:
        if not _chdb_path:  # chdb binds one data dir per process
            _chdb_path.append(str(tmp_path_factory.mktemp("chdb")))
        ch = ClickHouse(database=database, path=_chdb_path[0])
    await migrate(ch)
    yield ch
    await ch.command(f"DROP DATABASE IF EXISTS {database}")
    await ch.close()


@pytest.fixture
async def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClickHouse]:
    """A migrated, fresh database for one test."""
    async with fresh_clickhouse(tmp_path_factory) as ch:
        yield ch


@pytest.fixture(scope="session")
def noida_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A noida-db broker with its own data dir, shared by the session's integration tests."""
    b = EmbeddedBroker(tmp_path_factory.mktemp("noida"), "127.0.0.1", free_port())
    assert b.start() is True
    yield b
    b.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One Apache Kafka broker shared by the session's integration tests (each uses its own topics)."""
    b = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    assert b.start() is True
    yield b
    b.stop()


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> EmbeddedBroker | KafkaBroker:
    """The session's broker of each kind in turn. As ``tracehouse run`` does, the aiokafka patch for
    noida-db's rebalances (streams.embedded.group_generation) is in place on noida-db only, and the
    embedded broker's fetch throttle is never in place on Kafka."""
    if request.param == "kafka":
        group_generation.uninstall()
        fetch_throttle.uninstall()
    else:
        group_generation.install()
    return request.getfixturevalue(f"{request.param}_broker")
