"""An Apache Kafka broker (KRaft, one node that is broker and controller) as a subprocess, for the
tests and ``make kafka``: the same tests run against it and against the embedded noida-db.

The jars come from Maven Central through ``kafka/pom.xml`` (Kafka 4.1.1 and its log4j binding,
~43 MB) into ``build/kafka/lib`` on first use, under a file lock so parallel test processes fetch
them once. :meth:`KafkaBroker.start` formats a fresh log dir with a random cluster id (a log dir
formatted before is started as it is, as after a crash), starts ``kafka.Kafka`` on free loopback
ports with a small heap, and returns once the broker answers a metadata request naming itself.
:meth:`KafkaBroker.stop` sends SIGTERM, then SIGKILL after a timeout.

``python -m tests.support.kafka_broker`` (``make kafka``) starts one and prints its bootstrap
address; Ctrl-C stops it.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from streams.embedded.broker import BrokerError, free_port, port_open

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "kafka" / "pom.xml"
LOG_CONFIG = ROOT / "kafka" / "log4j2.properties"
#: What a single-node broker needs, and what tracehouse expects of any broker: the same in
#: docker-compose.yml (as KAFKA_* variables; tests/unit/test_compose_kafka.py holds them equal).
SINGLE_NODE = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    # tracehouse creates its topics with the partitions its tables need; an auto-created
    # 1-partition topic would hide a missing creation
    "auto.create.topics.enable": "false",
}
BUILD = ROOT / "build" / "kafka"
LIB = BUILD / "lib"
#: JVM flags: a small heap and a quick start (the broker of a test run lives minutes).
JVM_FLAGS = ("-Xmx512m", "-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
             "-Djava.awt.headless=true")


def missing_tools() -> str | None:
    """None when Kafka can run here, else one line naming what to install (Maven only until the
    jars are fetched)."""
    absent = [] if shutil.which("java") else ["java (Java 17)"]
    if shutil.which("mvn") is None and not (LIB / _stamp_name()).exists():
        absent.append("mvn (Maven)")
    if absent:
        return (f"the Apache Kafka tier needs {' and '.join(absent)} on PATH "
                "(e.g. apt-get install openjdk-17-jre-headless maven)")
    return None


def _stamp_name() -> str:
    """The marker of a complete fetch of the jars ``kafka/pom.xml`` names (a new pom fetches again)."""
    return ".fetched-" + hashlib.sha256(POM.read_bytes()).hexdigest()[:16]


def kafka_jars() -> Path:
    """``build/kafka/lib`` with the broker's jars, fetched by Maven once (under a file lock)."""
    stamp = LIB / _stamp_name()
    if stamp.exists():
        return LIB
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if stamp.exists():  # another process fetched them while we waited
            return LIB
        shutil.rmtree(LIB, ignore_errors=True)
        res = subprocess.run(["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                              f"-DoutputDirectory={LIB}", "-DincludeScope=runtime"],
                             capture_output=True, text=True, timeout=600, check=False)
        if res.returncode != 0:
            raise BrokerError(f"mvn could not fetch the Kafka jars (exit {res.returncode}):\n"
                              f"{res.stdout[-2000:]}{res.stderr[-2000:]}")
        stamp.touch()
    return LIB


def cluster_id() -> str:
    """A random KRaft cluster id (16 bytes, base64url without padding, as ``kafka-storage random-uuid``):
    one in 64 starts with ``-``, so it is passed as ``--cluster-id=<id>``, never as a separate argument."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


async def _announces_itself(bootstrap: str) -> bool:
    """True when a metadata request to ``bootstrap`` answers with a broker in it."""
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import KafkaError

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await client.bootstrap()
        return bool(client.cluster.brokers())
    except KafkaError:
        return False
    finally:
        await client.close()


def _metadata_answers(bootstrap: str) -> bool:
    """:func:`_announces_itself` from synchronous code, also when an event loop runs in this thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _announces_itself(bootstrap)).result()


def _terminate_with_parent() -> None:
    """In the child: SIGTERM it when the process that started it dies (a test run killed by a timeout
    runs no finalizer), on Linux."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class KafkaBroker:
    """One Apache Kafka node on ``host:port`` (its controller on another free port) with its log dir
    in ``data_dir``; the same ports on every start, so clients reconnect after a restart."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.controller_port = free_port(host)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "kafka.log"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def __repr__(self) -> str:
        return f"KafkaBroker({str(self.data_dir)!r}, {self.bootstrap!r})"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no kafka.log)"

    def _properties(self) -> Path:
        path = self.data_dir / "server.properties"
        controller = f"{self.host}:{self.controller_port}"
        path.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{controller}",
            f"listeners=PLAINTEXT://{self.bootstrap},CONTROLLER://{controller}",
            f"advertised.listeners=PLAINTEXT://{self.bootstrap}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.log_dir}",
            *(f"{name}={value}" for name, value in SINGLE_NODE.items()),
            # quick starts for tests (docker-compose.yml keeps Kafka's defaults for these)
            "offsets.topic.num.partitions=1",
            "transaction.state.log.num.partitions=1",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]))
        return path

    def _java(self, main: str, *args: str) -> list[str]:
        return ["java", *JVM_FLAGS, f"-Dlog4j2.configurationFile={LOG_CONFIG}", "-cp", f"{kafka_jars()}/*",
                main, *args]

    def pid(self) -> int | None:
        """Process id of the running broker, or None."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def answers(self) -> bool:
        return port_open(self.host, self.port)

    def is_running(self) -> bool:
        return self.pid() is not None and self.answers()

    def start(self, timeout: float = 60.0) -> bool:
        """Start the broker (formatting its log dir the first time); True if we started it, False if
        it was running. Raises BrokerError when it does not answer within ``timeout``. The broker gets
        SIGTERM when the thread that started it ends: start it from a thread that lives as long."""
        if self.pid() is not None:
            return False
        if self.proc is not None:
            self.proc.wait()  # reap the one that was killed
        self.data_dir.mkdir(parents=True, exist_ok=True)
        properties = self._properties()
        if not (self.log_dir / "meta.properties").exists():
            res = subprocess.run(self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id()}",
                                            "-c", str(properties)),
                                 capture_output=True, text=True, timeout=120, check=False)
            if res.returncode != 0:
                raise BrokerError(f"kafka storage format failed (exit {res.returncode}): {res.stdout} {res.stderr}")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self._java("kafka.Kafka", str(properties)), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=_terminate_with_parent)
        deadline = time.monotonic() + timeout
        while not (self.answers() and _metadata_answers(self.bootstrap)):
            if self.proc.poll() is not None:
                raise BrokerError(f"kafka exited with {self.proc.returncode}; kafka.log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"kafka did not answer on {self.bootstrap} within {timeout}s; "
                                  f"kafka.log:\n{self.log_tail()}")
            time.sleep(0.2)
        return True

    def kill(self) -> None:
        """SIGKILL the broker (as a crash would) and wait until it is gone; its log dir stays."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after ``timeout``; no-op if none runs; data is kept."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def main() -> None:
    """``make kafka``: one broker in a temporary dir until Ctrl-C."""
    reason = missing_tools()
    if reason:
        sys.exit(reason)
    with tempfile.TemporaryDirectory(prefix="tracehouse-kafka-") as tmp:
        broker = KafkaBroker(Path(tmp), port=int(os.environ.get("KAFKA_PORT", "0")) or None)
        print("fetching the Kafka jars (first run: ~43 MB into build/kafka/lib) and starting...", flush=True)
        broker.start()
        print(f"Apache Kafka on {broker.bootstrap} (log: {broker.log_path}); Ctrl-C stops it\n"
              f"  tracehouse against it: TRACEHOUSE_KAFKA_BOOTSTRAP={broker.bootstrap} make run", flush=True)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                while broker.proc is not None and broker.proc.poll() is None:
                    time.sleep(0.5)
        finally:
            broker.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    main()
