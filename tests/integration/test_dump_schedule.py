"""The ``dumps`` worker part against a real broker (its election) and real ClickHouse: started with
``TRACEHOUSE_DUMP_URL`` it writes yesterday's dump of every org with rows, nothing of today, and a
restarted part finds the manifests and writes nothing again."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.checkpoints import public_key_text
from schemas.codec import encode
from schemas.day_dump import MANIFEST, day_bounds
from schemas.timefmt import now_ms
from schemas.topics import AUDIT_EVENTS, ROLLUPS_HOURLY, TRACE_EVENTS
from streams.parts import create_dump_schedule, declared_parts
from streams.topics import ensure_topics
from tests.support.in_process import Pipeline, RecordingProducer
from tracehouse import verify_export
from tracehouse.settings import Settings


async def store(clickhouse, org: str, trace: str, ats: list[int], audit_at: int | None = None) -> None:
    """Events of one trace (and an audit entry) sealed and stored as the worker would."""
    producer = RecordingProducer()
    events = [{"event_id": f"{trace}-{i}", "org_id": org, "trace_id": trace, "type": "SPAN", "occurred_at": at,
               "scores": {}, "tags": [], "metadata": {}} for i, at in enumerate(ats)]
    await producer.send_records(TRACE_EVENTS, [(trace.encode(), encode(
        "TraceEventBatch", {"org_id": org, "trace_id": trace, "events": events}))])
    if audit_at is not None:
        entry = {"id": f"{org}-a", "org_id": org, "actor": "me", "action": "x", "target": "y", "metadata": {},
                 "occurred_at": audit_at}
        await producer.send_records(AUDIT_EVENTS, [(org.encode(), encode(
            "AuditEventBatch", {"org_id": org, "events": [entry]}))])
    await Pipeline(clickhouse, producer).flush()


async def until(probe, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_started_with_the_setting_it_writes_yesterdays_dump_once(clickhouse, broker, tmp_path: Path):
    today = dt.datetime.now(dt.UTC).date()
    yesterday = today - dt.timedelta(days=1)
    start, _ = day_bounds(yesterday)
    org, other = f"o-{uuid.uuid4().hex[:6]}", f"p-{uuid.uuid4().hex[:6]}"
    await store(clickhouse, org, "t1", [start + 5, start + 3_600_000], audit_at=start + 10)
    await store(clickhouse, org, "t2", [now_ms()])  # today: not due yet
    await store(clickhouse, other, "t3", [start + 7_200_000])
    key = Ed25519PrivateKey.generate()
    seed = base64.b64encode(key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                              serialization.NoEncryption())).decode()
    url = tmp_path / "dumps"
    settings = Settings(data_dir=tmp_path / "data", kafka_bootstrap=broker.bootstrap, checkpoint_key=seed,
                        dump_url=str(url), dump_hour_utc=0)
    # the topic its group elects over, as a deployment creates it (the session's broker is shared)
    await ensure_topics(broker.bootstrap, settings.topic_partitions, topics=(ROLLUPS_HOURLY,))
    (part,) = [p for p in declared_parts(settings) if p.name == "dumps"]
    manifests = [url / o / yesterday.isoformat() / MANIFEST for o in (org, other)]

    task = asyncio.create_task(part.build(clickhouse)())
    try:
        await until(lambda: all(m.exists() for m in manifests))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sorted(p.name for p in url.iterdir()) == sorted([org, other])
    assert [p.name for p in (url / org).iterdir()] == [yesterday.isoformat()]  # nothing of today
    document = json.loads(manifests[0].read_text())
    assert {n: f["rows"] for n, f in document["files"].items()} == {
        "events.parquet": 2, "events.jsonl.gz": 2, "audit.parquet": 1, "audit.jsonl.gz": 1}
    assert document["chains"]["traces"]["count"] == 1 and document["chains"]["audit"]["seq"] == 1
    assert verify_export.main(str(manifests[0]), public_key_text(key)) == 0
    written = [m.stat().st_mtime_ns for m in manifests]

    schedule = create_dump_schedule(settings, clickhouse)  # a restart finds the manifests: dumps nothing again
    restarted = asyncio.create_task(schedule.run())
    try:
        await until(lambda: schedule.checks >= 1)
    finally:
        restarted.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await restarted
    assert [m.stat().st_mtime_ns for m in manifests] == written
