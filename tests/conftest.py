"""Shared fixtures: a real noida-db broker and a real tracehouse service per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.embedded.broker import EmbeddedBroker, free_port
from tests.support.service import Service


def start_stack(data_dir: Path, **env: str) -> tuple[EmbeddedBroker, Service]:
    """A broker on a free port inside ``data_dir`` and a started service using it."""
    broker = EmbeddedBroker(data_dir / "broker", "127.0.0.1", free_port())
    broker.start()
    service = Service(data_dir, broker.port, **env)
    try:
        service.start()
    except Exception:
        broker.stop()
        raise
    return broker, service


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One tracehouse (broker + chdb + worker + API) shared by the e2e tests of a session.
    Approval requests expire after 3 s (tests/e2e/test_outcomes.py); checkpoints every second."""
    broker, service = start_stack(tmp_path_factory.mktemp("stack"), TRACEHOUSE_APPROVAL_TTL_SECONDS="3",
                                  TRACEHOUSE_APPROVAL_CHECK_SECONDS="0.5",
                                  TRACEHOUSE_CHECKPOINT_INTERVAL_SECONDS="1")
    yield service
    service.stop()
    broker.stop()
