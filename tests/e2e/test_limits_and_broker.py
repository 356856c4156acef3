"""Big events end to end, size limits at the edge, and a broker killed under a running service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from google.rpc import status_pb2

from streams.embedded.broker import EmbeddedBroker, free_port
from tests.api.test_otlp_ingest import request_of
from tests.conftest import start_stack
from tests.support.service import Api, Service, eventually, uid, wait_event_count

pytestmark = pytest.mark.slow

MB = 1_000_000


async def post_raw(service: Service, key: str, body: bytes, path: str = "/v1/events",
                   content_type: str = "application/json") -> tuple[int, bytes, dict]:
    """POST ``body`` to ``path``; (status, body, headers), with the time it took checked by callers."""
    async with aiohttp.ClientSession() as session:
        async with session.post(service.url + path, data=body,
                                headers={"Authorization": f"Bearer {key}", "Content-Type": content_type}) as r:
            return r.status, await r.read(), dict(r.headers)


async def test_1mb_and_4mb_events_are_stored_chained_and_read_back(stack):
    """A ~1 MB metadata value used to stop the whole service (the chain agent's producer took
    1,000,000 bytes at most) after the API had answered 202."""
    async with Api(stack.url) as api:
        key = await api.org_key(uid("big"))
        trace = uid("tr")
        events = [{"event_id": "one-mb", "trace_id": trace, "metadata": {"prompt": "p" * 1_000_500}},
                  {"event_id": "four-mb", "trace_id": trace, "input": "i" * (4 * MB)}]
        for event in events:  # one request each: the second body is 4 MB
            status, body = await api.post("/v1/events", key, [event])
            assert status == 202 and body["accepted"] == [event["event_id"]], body
        stored = await wait_event_count(api, key, f"/v1/traces/{trace}", 2)
        by_id = {e["event_id"]: e for e in stored["events"]}
        assert by_id["one-mb"]["metadata"]["prompt"] == "p" * 1_000_500
        assert by_id["four-mb"]["input"] == "i" * (4 * MB)
        status, verdict = await api.get(f"/api/v1/traces/{trace}/verify", key)
        assert status == 200 and verdict["valid"] is True and verdict["event_count"] == 2, verdict
    assert stack.proc is not None and stack.proc.poll() is None, stack.log_tail()


async def test_oversized_events_are_refused_at_the_edge_and_nothing_breaks(stack):
    async with Api(stack.url) as api:
        key, other = await api.org_key(uid("lim")), await api.org_key(uid("lim"))
        trace = uid("tr")
        huge = {"trace_id": trace, "output": "o" * (5 * MB)}  # above the 4 MiB default
        started = time.monotonic()
        status, body = await api.post("/v1/events", key, [{"event_id": "fits", "trace_id": trace}, huge])
        assert status == 202 and body["accepted"] == ["fits"], body
        assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "(event)")]
        assert "TRACEHOUSE_MAX_EVENT_BYTES" in body["rejected"][0]["reason"]
        status, body = await api.post("/v1/events", key, [huge])
        assert status == 413 and body["error"]["code"] == "event_too_large", body
        too_big = json.dumps([{"trace_id": trace, "input": "x" * (11 * MB)}]).encode()
        status, body, _ = await post_raw(stack, key, too_big)
        assert status == 413 and json.loads(body)["error"]["code"] == "payload_too_large", body
        assert time.monotonic() - started < 20
        # other orgs' small requests go on being accepted, whatever partition they hash to
        for i in range(20):
            status, body = await api.post("/v1/events", other, [{"trace_id": f"small-{i}"}])
            assert status == 202, body
        await wait_event_count(api, key, f"/v1/traces/{trace}", 1)
    assert stack.proc is not None and stack.proc.poll() is None, stack.log_tail()


def try_bind(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False


async def test_a_dead_broker_is_a_503_within_5_s_and_readyz_says_so(tmp_path: Path):
    """An API whose broker died (Apache Kafka down, or the embedded one until it is back):
    ingest answers 503 with Retry-After within 5 s instead of hanging, /readyz names the
    broker, and once the broker is back ingest answers 202 again.

    Right after the kill the test holds the broker's port with a socket that never answers (the
    worst case: connections open, requests hang), so the broker stays down as long as needed."""
    broker = EmbeddedBroker(tmp_path / "broker", "127.0.0.1", free_port())
    broker.start()
    service = Service(tmp_path, broker.port, "api", TRACEHOUSE_KAFKA_BOOTSTRAP=broker.bootstrap)
    service.start()
    try:
        async with Api(service.url) as api:
            key = await api.org_key(uid("down"))
            status, _ = await api.post("/v1/events", key, [{"trace_id": "t"}])
            assert status == 202
            pid = broker.pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            holder = socket.socket()
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await eventually(lambda: asyncio.to_thread(try_bind, holder, broker.port), bool, timeout=5, interval=0.01)
            holder.listen(64)
            for _ in range(2):
                started = time.monotonic()
                status, body, headers = await post_raw(service, key, json.dumps([{"trace_id": "t"}]).encode())
                took = time.monotonic() - started
                assert status == 503 and json.loads(body)["error"]["code"] == "broker_unavailable", (status, body)
                assert took < 5 and int(headers["Retry-After"]) >= 1, took
                # OTLP: the same 503, as the google.rpc.Status an exporter retries (14: UNAVAILABLE)
                status, body, headers = await post_raw(service, key, request_of(["ab" * 16]),
                                                       "/v1/traces", "application/x-protobuf")
                assert status == 503 and status_pb2.Status.FromString(body).code == 14, (status, body)
                assert int(headers["Retry-After"]) >= 1
                status, ready = await api.get("/readyz")
                assert status == 503 and ready["components"] == {"broker": "down", "clickhouse": "up"}, ready
            holder.close()
            broker.start()
            await eventually(lambda: api.get("/readyz"), lambda r: r[0] == 200, timeout=30)

            async def post_after() -> tuple[int, object]:
                return await api.post("/v1/events", key, [{"trace_id": "t"}])
            # a client retries a 503 after Retry-After; the first send may meet a stale connection
            await eventually(post_after, lambda r: r[0] == 202, timeout=30, interval=1.0)
    finally:
        service.stop()
        broker.stop()


async def test_a_killed_broker_restarts_tracehouse_and_ingest_resumes(tmp_path: Path):
    """kill -9 of the embedded broker under ``tracehouse run``: the broker lost what it
    acknowledged in its last second or so, and the worker's memory may be ahead of it, so the
    service restarts itself (same pid: exec), the broker first, and recovers as after a power
    cut. No request hangs meanwhile (each answers or fails within 5 s), and afterwards ingest
    answers 202 and every event acknowledged before the broker's last write is stored."""
    broker, service = start_stack(tmp_path)
    try:
        async with Api(service.url) as api:
            key = await api.org_key(uid("kill"))
            trace = uid("tr")
            status, _ = await api.post("/v1/events", key, [{"event_id": "before", "trace_id": trace}])
            assert status == 202
            await wait_event_count(api, key, f"/v1/traces/{trace}", 1)
            await asyncio.sleep(2.5)  # noida writes its state once a second: let "before" reach the disk
            pid = broker.pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while True:  # during the restart: 503s or refused connections, never a hang
                started = time.monotonic()
                try:
                    status, _, _ = await asyncio.wait_for(post_raw(service, key, json.dumps(
                        [{"event_id": "after", "trace_id": trace}]).encode()), 10)
                except (aiohttp.ClientError, json.JSONDecodeError):
                    status = None
                assert time.monotonic() - started < 5
                if status == 202:
                    break
                assert status in (None, 503), status
                assert time.monotonic() < deadline, "ingest did not come back"
                await asyncio.sleep(0.5)
            new_pid = broker.pid()
            assert new_pid is not None and new_pid != pid
            stored = await wait_event_count(api, key, f"/v1/traces/{trace}", 2)
            assert sorted(e["event_id"] for e in stored["events"]) == ["after", "before"]
        assert service.proc is not None and service.proc.poll() is None  # the same process, restarted
        assert "restarting tracehouse" in service.log_path.read_text()
    finally:
        service.stop()
        broker.stop()


async def post_through_outage(api: Api, key: str, todo: list[list[dict]], progress: list[str],
                              refused: list[int], enough: asyncio.Event) -> None:
    """POST each batch until it is acknowledged, as a producer honouring 503 + Retry-After would, until
    ``enough`` is set: a 503 or a connection error is retried after a short wait (a resend of a batch
    that did reach the broker is recognised by the chain agents, which link each event id once)."""
    for batch in todo:
        if enough.is_set():
            return
        while True:
            try:
                status, body = await asyncio.wait_for(api.post("/v1/events", key, batch), 10)
            except (TimeoutError, aiohttp.ClientError):
                status, body = None, None
            if status == 202:
                progress.extend(body["accepted"])
                break
            assert status in (None, 503), (status, body)
            refused.append(len(progress))
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.05)  # a steady stream, not a burst that ends before the broker stops
    raise AssertionError("the producer ran out of events before the test had what it needed")


@pytest.mark.parametrize("broker_kind", ["kafka"])
async def test_a_kafka_broker_restarted_under_ingest_loses_nothing(tmp_path: Path, broker_kind: str):
    """Apache Kafka stopped (a controlled shutdown, as for an upgrade) and started again while
    producers post: tracehouse is not restarted (same process throughout); meanwhile ingest answers
    503, and after the broker is back its producers and consumers carry on by themselves: every
    event acknowledged is stored once, every chain verifies, checkpoints go on, the rollups count
    each event once. (The embedded broker's restart is the test above: there tracehouse restarts.)"""
    from tests.e2e.test_chain_workers import stored_once_and_verified
    from tests.e2e.test_crash_recovery import batches

    broker, service = start_stack(tmp_path, broker_kind, TRACEHOUSE_CHECKPOINT_INTERVAL_SECONDS="1",
                                  TRACEHOUSE_SINK_BATCH_RECORDS="50")
    try:
        assert service.proc is not None
        pid = service.proc.pid
        async with Api(service.url) as api:
            key = await api.org_key(uid("restart"))
            progress: list[str] = []
            refused: list[int] = []
            enough = asyncio.Event()
            poster = asyncio.create_task(post_through_outage(api, key, batches("r", 200_000, per_trace=16),
                                                             progress, refused, enough))
            await eventually(lambda: api.get("/v1/traces", key, limit="1"), lambda r: r[1]["events"], timeout=60)
            await asyncio.to_thread(broker.stop)  # with events posted, sealed and stored
            at_stop = len(progress)
            await eventually(lambda: asyncio.sleep(0, len(refused)), lambda n: n >= 3, timeout=30)
            # down longer than a group member's session (10 s): every group joins again after the restart
            await asyncio.sleep(12)
            await asyncio.to_thread(broker.start)
            at_start = len(progress)
            await eventually(lambda: asyncio.sleep(0, len(progress)), lambda n: n >= at_start + 2_000, timeout=60)
            enough.set()
            await asyncio.wait_for(poster, 30)
            assert refused[0] >= at_stop - 200, "no request met the stopped broker"

            expected = set(progress)
            # the rollups too: a sealed record appended twice (a produce resent across the restart)
            # is stored once but counted twice there
            await stored_once_and_verified(api, key, expected)
        assert service.proc.pid == pid and service.proc.poll() is None, "tracehouse restarted"
    finally:
        service.stop()
        broker.stop()
