"""Shared fixtures: a real broker and a real tracehouse service per test session.

The broker-facing tests run twice, once per broker of ``BROKERS``: the embedded noida-db and Apache
Kafka (``tests.support.kafka_broker``). A test marked ``noida_only("why")`` is skipped on Kafka with
that reason; without Java (or Maven, until the jars are fetched) every Kafka run is skipped with one
line naming what to install."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.embedded.broker import EmbeddedBroker, free_port
from tests.support.kafka_broker import KafkaBroker, missing_tools
from tests.support.service import Service

BROKERS = ("noida", "kafka")
#: The fixtures parametrized by broker (``request.param`` is one of ``BROKERS``).
BROKER_PARAMS = ("broker", "stack", "broker_kind")
Broker = EmbeddedBroker | KafkaBroker


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "noida_only(reason): runs on the embedded noida-db only, skipped on "
                                       "Apache Kafka with the reason")


def on_kafka(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(params.get(name) == "kafka" for name in BROKER_PARAMS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the Kafka runs of noida-only tests (their reason), and every Kafka run when Java is missing."""
    missing = missing_tools()
    for item in items:
        if not on_kafka(item):
            continue
        if missing:
            item.add_marker(pytest.mark.skip(reason=missing))
        elif (marker := item.get_closest_marker("noida_only")) is not None:
            item.add_marker(pytest.mark.skip(reason=f"noida-db only: {marker.args[0]}"))


def new_broker(kind: str, data_dir: Path) -> Broker:
    """A broker of ``kind`` (one of ``BROKERS``) on a free port with its data in ``data_dir``, not started."""
    if kind == "kafka":
        return KafkaBroker(data_dir)
    return EmbeddedBroker(data_dir, "127.0.0.1", free_port())


def start_stack(data_dir: Path, broker: str = "noida", **env: str) -> tuple[Broker, Service]:
    """A ``broker`` (one of ``BROKERS``) on a free port inside ``data_dir`` and a started service using
    it: the embedded noida-db as ``tracehouse run`` would start it, or Apache Kafka through
    TRACEHOUSE_KAFKA_BOOTSTRAP (one Kafka per service: tracehouse's topic and group names are fixed)."""
    b = new_broker(broker, data_dir / "broker")
    b.start()
    if isinstance(b, KafkaBroker):
        env = {"TRACEHOUSE_KAFKA_BOOTSTRAP": b.bootstrap, **env}
    service = Service(data_dir, b.port, **env)
    try:
        service.start()
    except Exception:
        b.stop()
        raise
    return b, service


@pytest.fixture(params=BROKERS)
def broker_kind(request: pytest.FixtureRequest) -> str:
    """One of ``BROKERS``: each test using it runs on both."""
    return str(request.param)


def _stack(tmp_path_factory: pytest.TempPathFactory, kind: str) -> Iterator[Service]:
    b, service = start_stack(tmp_path_factory.mktemp(f"stack-{kind}"), kind, TRACEHOUSE_APPROVAL_TTL_SECONDS="3",
                             TRACEHOUSE_APPROVAL_CHECK_SECONDS="0.5", TRACEHOUSE_CHECKPOINT_INTERVAL_SECONDS="1")
    yield service
    service.stop()
    b.stop()


@pytest.fixture(scope="session")
def noida_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One tracehouse (noida-db + chdb + worker + API) shared by the e2e tests of a session.
    Approval requests expire after 3 s (tests/e2e/test_outcomes.py); checkpoints every second."""
    yield from _stack(tmp_path_factory, "noida")


@pytest.fixture(scope="session")
def kafka_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The same on its own Apache Kafka broker."""
    yield from _stack(tmp_path_factory, "kafka")


@pytest.fixture(params=BROKERS)
def stack(request: pytest.FixtureRequest) -> Service:
    """The session's tracehouse on each broker in turn (``noida_stack``, ``kafka_stack``)."""
    return request.getfixturevalue(f"{request.param}_stack")
