"""Run tracehouse as a subprocess against a test broker (noida-db or Apache Kafka), and talk to it over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from streams.embedded.broker import free_port

ADMIN_KEY = "test-operator-key"
T = TypeVar("T")


class Service:
    """One ``tracehouse run`` process; its data dir's broker must already be running."""

    def __init__(self, data_dir: Path, kafka_port: int, command: str = "run", *args: str, **env: str) -> None:
        """``command``: a ``tracehouse`` command (``run``, ``api``...) and its ``args``; ``env`` wins over
        the defaults."""
        self.data_dir = data_dir
        self.command = command
        self.args = args
        self.kafka_port = kafka_port
        self.http_port = free_port()
        self.env = {
            **os.environ,
            "TRACEHOUSE_DATA_DIR": str(data_dir),
            "TRACEHOUSE_KAFKA_PORT": str(kafka_port),
            "TRACEHOUSE_HTTP_PORT": str(self.http_port),
            "TRACEHOUSE_ADMIN_KEY": ADMIN_KEY,
            "TRACEHOUSE_SINK_BATCH_SECONDS": "0.2",
            "TRACEHOUSE_COMMIT_INTERVAL_SECONDS": "0.5",
            "TRACEHOUSE_TRIM_INTERVAL_SECONDS": "2",
            "TRACEHOUSE_KEY_CACHE_SECONDS": "0.5",
            "TRACEHOUSE_ROLLUP_INTERVAL_SECONDS": "0.5",
            **env,
        }
        if "TRACEHOUSE_KAFKA_BOOTSTRAP" not in env:
            self.env.pop("TRACEHOUSE_KAFKA_BOOTSTRAP", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "service.log"

    @property
    def bootstrap(self) -> str:
        """The broker this service talks to: TRACEHOUSE_KAFKA_BOOTSTRAP, else its embedded noida-db."""
        return self.env.get("TRACEHOUSE_KAFKA_BOOTSTRAP") or f"127.0.0.1:{self.kafka_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 60.0, *, serves_http: bool = True) -> None:
        """Start the process; wait until ``/readyz`` answers 200 when it ``serves_http``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tracehouse.cli", self.command, *self.args],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if not serves_http:
            return
        deadline = time.monotonic() + timeout
        import urllib.request
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tracehouse exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"tracehouse not ready after {timeout}s:\n{self.log_tail()}")

    def sink_at_usual_size(self) -> None:
        """From the next start on, drop the small sink batches a crash test set to keep the sink behind
        at a kill: the sink then catches up at the test default's size."""
        self.env.pop("TRACEHOUSE_SINK_BATCH_RECORDS", None)
        self.env["TRACEHOUSE_SINK_BATCH_SECONDS"] = "0.2"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` (resent once, as supervisors do) and wait; SIGKILL after the timeout."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout / 2)
            except subprocess.TimeoutExpired:
                if sig != signal.SIGKILL:
                    self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout / 2)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        return self.proc.returncode

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


class Api:
    """A small async client: ``await api.get("/v1/traces", key)`` returns (status, json)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def request(self, method: str, path: str, key: str | None = None, *,
                      json: Any = None, data: bytes | None = None,
                      params: dict[str, Any] | None = None) -> tuple[int, Any]:
        assert self.session is not None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with self.session.request(method, self.base_url + path, json=json, data=data,
                                        params=params, headers=headers) as r:
            body = await r.json(content_type=None) if r.content_length != 0 else None
            return r.status, body

    async def get(self, path: str, key: str | None = None, **params: Any) -> tuple[int, Any]:
        return await self.request("GET", path, key, params=params or None)

    async def post(self, path: str, key: str | None = None, json: Any = None) -> tuple[int, Any]:
        return await self.request("POST", path, key, json=json)

    async def org_key(self, org_id: str, scopes: list[str] | None = None) -> str:
        status, body = await self.post("/v1/admin/keys", ADMIN_KEY, {
            "org_id": org_id, "name": "test",
            "scopes": scopes or ["traces:read", "traces:write", "audit:read", "audit:write"]})
        assert status == 201, body
        return body["key"]


async def eventually(probe: Callable[[], Awaitable[T]], done: Callable[[T], bool],
                     timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll ``probe`` until ``done(result)``; fail with the last result after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met after {timeout}s; last result: {result!r}")
        await asyncio.sleep(interval)


async def wait_event_count(api: Api, key: str, path: str, count: int) -> dict[str, Any]:
    """Poll GET ``path`` until it answers 200 with an ``event_count`` of at least ``count``."""
    async def probe() -> tuple[int, Any]:
        return await api.get(path, key)
    _, body = await eventually(probe, lambda r: r[0] == 200 and r[1]["event_count"] >= count)
    return body


async def all_events(api: Api, key: str, limit: int = 200, **params: Any) -> list[dict[str, Any]]:
    """Walk every page of GET /v1/traces."""
    events: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": limit, **params}
        if cursor:
            query["cursor"] = cursor
        status, body = await api.get("/v1/traces", key, **query)
        assert status == 200, body
        events.extend(body["events"])
        cursor = body["nextCursor"]
        if cursor is None:
            return events


def uid(prefix: str) -> str:
    """A unique id for one test's org, trace or event."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def group_members(bootstrap: str, group: str) -> dict[int, int]:
    """pid -> how many members of ``group`` that process has, once the group is Stable ({} until then);
    only members named by ``schemas.identity.client_id`` count."""
    from aiokafka import AIOKafkaClient
    from aiokafka.protocol.admin import DescribeGroupsRequest

    from schemas.identity import incarnation_of

    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        node = await client.coordinator_lookup(0, group)
        response = await client.send(node, DescribeGroupsRequest([group]))
    finally:
        await client.close()
    pids: dict[int, int] = {}
    for _error, _name, state, _ptype, _proto, members, *_ in response.groups:
        if state != "Stable":
            return {}
        for _member_id, client_id, *_ in members:
            incarnation = incarnation_of(client_id)
            if incarnation is not None:
                pids[incarnation[0]] = pids.get(incarnation[0], 0) + 1
    return pids


def chain_worker(owner: Service, name: str) -> Service:
    """Start ``tracehouse worker --parts chain`` beside ``owner`` (same data dir, broker and settings)."""
    return worker_beside(owner, name, "chain")


def worker_beside(owner: Service, name: str, parts: str) -> Service:
    """Start ``tracehouse worker --parts <parts>`` beside ``owner`` (same data dir, broker and settings)."""
    env = {k: v for k, v in owner.env.items() if k.startswith("TRACEHOUSE_")
           and k not in ("TRACEHOUSE_DATA_DIR", "TRACEHOUSE_KAFKA_PORT")}  # HTTP_PORT: the owner's API
    guest = Service(owner.data_dir, owner.kafka_port, "worker", "--parts", parts, **env)
    guest.log_path = Path(owner.data_dir) / f"{name}.log"
    guest.start(serves_http=False)
    return guest

