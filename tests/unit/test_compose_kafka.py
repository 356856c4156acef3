"""docker-compose.yml runs the Apache Kafka the tests run: the fixture's version (kafka/pom.xml) and
its single-node broker configs (``tests.support.kafka_broker.SINGLE_NODE``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.kafka_broker import SINGLE_NODE

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_the_fixtures_kafka_version_and_configs():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kafka = compose["services"]["kafka"]
    pom = (ROOT / "kafka" / "pom.xml").read_text()
    version = re.search(r"<artifactId>kafka_2\.13</artifactId><version>([^<]+)</version>", pom)
    assert version is not None
    assert kafka["image"] == f"apache/kafka:{version.group(1)}"
    environment = {k: str(v) for k, v in kafka["environment"].items()}
    for name, value in SINGLE_NODE.items():
        assert environment.get("KAFKA_" + name.upper().replace(".", "_")) == value, name


def compose_missing() -> str | None:
    """Why ``docker compose`` cannot run here (None when it can): the client needs no engine for ``config``."""
    if shutil.which("docker") is None:
        return "no docker client on this machine"
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    return None if probe.returncode == 0 else "the docker client here has no compose plugin"


@pytest.mark.skipif(compose_missing() is not None, reason=str(compose_missing()))
def test_docker_compose_config_accepts_the_file():
    res = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
