"""Daily dumps (``sinks.day_dump``, ``tracehouse dump``, ``tracehouse verify-export`` of a manifest) on
the in-process API's ClickHouse, data made through the API and ``pipeline``: every file read back with
independent readers (pyarrow.parquet, gzip + json) and compared row by row with what ClickHouse holds
for the org and day; other orgs and days never appear; the manifest verifies and a changed byte fails
it; a re-run replaces the day; small chunks; the same against S3 (moto's server, in this process)."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.checkpoints import public_key_text
from schemas.day_dump import DATA_FILES, MANIFEST, day_bounds, org_dir
from schemas.timefmt import format_ms, ms_datetime
from sinks.day_dump import DayDumper
from sinks.repositories.events import EventExports
from tests.support.in_process import Pipeline
from tests.support.service import Api, uid
from tracehouse import verify_export
from tracehouse.dump import dump_day

pytestmark = pytest.mark.asyncio(loop_scope="session")

DAY = dt.date(2026, 11, 10)
START, END = day_bounds(DAY)
PREVIOUS_DAY = DAY - dt.timedelta(days=1)
KEY = Ed25519PrivateKey.generate()
PUBLIC = public_key_text(KEY)


def trace_events(trace: str, count: int, start: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"event_id": f"{trace}-{i}", "trace_id": trace, "type": "GENERATION", "name": f"step {i}",
             "occurred_at": format_ms(start + i * 997), "model": "gpt-4o", "input": {"q": i, "text": "hé 😀"},
             "output": f"answer {i}", "input_tokens": i, "cost": 0.5 * i, "scores": {"quality": 0.25 * i},
             "tags": ["a", f"t{i}"], "metadata": {"customer": "c-1", "n": str(i)}} | fields for i in range(count)]


def audit_entries(prefix: str, count: int, start: int) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{i}", "actor": f"user-{i}", "action": "doc.updated", "target": f"doc/{i}",
             "metadata": {"n": str(i)}, "occurred_at": format_ms(start + i * 60_000)} for i in range(count)]


async def make_org(api: Api, pipeline: Pipeline, traces: int = 3, per_trace: int = 4, audit: int = 5) -> str:
    """An org with ``traces`` traces and ``audit`` audit entries on DAY, and rows the day before and after."""
    org = uid("dump-org")
    key = await api.org_key(org)
    events = [e for t in range(traces) for e in trace_events(f"{org}-tr{t}", per_trace, START + 3_600_000 * (t + 1))]
    events += trace_events(f"{org}-before", 2, START - 500)  # the second one is still on DAY
    events += trace_events(f"{org}-after", 1, END + 1)
    status, body = await api.post("/v1/events", key, events)
    assert status == 202 and body["rejected"] == [], body
    entries = audit_entries(f"{org}-a", audit, START + 1) + audit_entries(f"{org}-late", 1, END + 1)
    status, body = await api.post("/v1/audit/events", key, entries)
    assert status == 202 and len(body["accepted"]) == len(entries), body
    await pipeline.flush()
    return org


async def stored_events(pipeline: Pipeline, org: str) -> list[dict[str, Any]]:
    """The org's events of DAY as ClickHouse holds them, in dump order, read one at a time with
    clickhouse-connect's own types."""
    ch = pipeline.clickhouse
    rows = await ch.query(
        "SELECT event_id, trace_id, org_id, type, name, occurred_at, model, input, output, input_tokens, cost, "
        "scores, tags, metadata, seq, lower(hex(prev_hash)) AS prev_hash, lower(hex(hash)) AS hash, hash_version, "
        f"_doc FROM {ch.database}.events WHERE org_id = {{org:String}} AND occurred_at >= {{s:DateTime64(3, 'UTC')}} "
        "AND occurred_at <= {e:DateTime64(3, 'UTC')} ORDER BY occurred_at, event_id",
        {"org": org, "s": ms_datetime(START), "e": ms_datetime(END)})
    return rows.dicts()


async def stored_audit(pipeline: Pipeline, org: str) -> list[dict[str, Any]]:
    ch = pipeline.clickhouse
    rows = await ch.query(
        "SELECT id, org_id, actor, action, target, metadata, occurred_at, seq, lower(hex(prev_hash)) AS prev_hash, "
        f"lower(hex(hash)) AS hash, hash_version FROM {ch.database}.audit_events WHERE org_id = {{org:String}} "
        "AND occurred_at >= {s:DateTime64(3, 'UTC')} AND occurred_at <= {e:DateTime64(3, 'UTC')} "
        "ORDER BY occurred_at, id", {"org": org, "s": ms_datetime(START), "e": ms_datetime(END)})
    return rows.dicts()


def jsonl(path: Any) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def check_files(folder: Any, opener: Any, events: list[dict[str, Any]], audit: list[dict[str, Any]]) -> None:
    """Every file under ``folder`` read back and compared row by row with ``events`` and ``audit``."""
    with opener(f"{folder}/events.parquet") as f:
        table = pq.read_table(f)
    assert table.schema.field("occurred_at").type == pa.timestamp("ms", tz="UTC")
    assert pa.types.is_map(table.schema.field("metadata").type)
    parquet_rows = table.to_pylist()
    assert len(parquet_rows) == len(events) > 0
    for got, want in zip(parquet_rows, events, strict=True):
        for name in ("event_id", "trace_id", "org_id", "type", "name", "model", "input", "output", "input_tokens",
                     "cost", "tags", "seq", "prev_hash", "hash", "hash_version"):
            assert got[name] == want[name], name
        assert aware(got["occurred_at"]) == aware(want["occurred_at"])
        assert dict(got["scores"]) == dict(want["scores"]) and dict(got["metadata"]) == dict(want["metadata"])
    with opener(f"{folder}/events.jsonl.gz") as f:
        lines = jsonl(f)
    assert lines == [json.loads(e["_doc"]) | {"seq": e["seq"], "prev_hash": e["prev_hash"], "hash": e["hash"],
                                              "hash_version": e["hash_version"]} for e in events]
    with opener(f"{folder}/audit.parquet") as f:
        audit_rows = pq.read_table(f).to_pylist()
    assert len(audit_rows) == len(audit) > 0
    for got, want in zip(audit_rows, audit, strict=True):
        assert aware(got["occurred_at"]) == aware(want["occurred_at"])
        assert dict(got["metadata"]) == dict(want["metadata"])
        assert {k: v for k, v in got.items() if k not in ("occurred_at", "metadata")} == \
            {k: v for k, v in want.items() if k not in ("occurred_at", "metadata")}
    with opener(f"{folder}/audit.jsonl.gz") as f:
        assert jsonl(f) == [a | {"metadata": dict(a["metadata"]), "occurred_at": format_ms(
            int(aware(a["occurred_at"]).timestamp() * 1000))} for a in audit]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def orgs(api: Api, pipeline: Pipeline) -> tuple[str, str]:
    return await make_org(api, pipeline), await make_org(api, pipeline, traces=2, per_trace=2, audit=2)


async def test_a_local_dump_holds_the_orgs_day_row_by_row(pipeline, orgs, tmp_path):
    org, other = orgs
    out = io.StringIO()
    written = await dump_day(pipeline.clickhouse, KEY, str(tmp_path), DAY, org, out, chunk_rows=4)
    assert [d.org_id for d in written] == [org]
    folder = tmp_path / org_dir(org) / DAY.isoformat()
    assert sorted(p.name for p in folder.iterdir()) == sorted([*DATA_FILES, MANIFEST])
    events, audit = await stored_events(pipeline, org), await stored_audit(pipeline, org)
    assert len(events) == 3 * 4 + 1 and len(audit) == 5  # the day's rows only: one "before" event is on DAY
    assert all(e["seq"] > 0 for e in events) and all(a["seq"] > 0 for a in audit)
    check_files(folder, lambda p: open(p, "rb"), events, audit)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert {name: manifest["files"][name]["rows"] for name in DATA_FILES} == {
        "events.parquet": len(events), "events.jsonl.gz": len(events), "audit.parquet": 5, "audit.jsonl.gz": 5}
    assert (manifest["org_id"], manifest["date"], manifest["public_key"]) == (org, DAY.isoformat(), PUBLIC)
    last = max(audit, key=lambda a: a["seq"])
    assert manifest["chains"]["audit"] == {"seq": last["seq"], "hash": last["hash"]}
    assert manifest["chains"]["traces"]["count"] == 4  # three traces and the one that began the day before
    assert out.getvalue() == f"{org} {DAY}: {len(events)} events, 5 audit entries -> {folder}/{MANIFEST}\n"
    every_file = b"".join(gzip.decompress(p.read_bytes()) if p.name.endswith(".gz") else p.read_bytes()
                          for p in folder.iterdir())
    assert other.encode() not in every_file  # no row of another org


async def test_without_org_every_org_with_rows_that_day_is_dumped(pipeline, orgs, tmp_path):
    org, other = orgs
    out = io.StringIO()
    dumped = {d.org_id: d for d in await dump_day(pipeline.clickhouse, KEY, str(tmp_path), DAY, None, out)}
    assert {org, other} <= set(dumped)
    assert len(out.getvalue().splitlines()) == len(dumped)
    folder = tmp_path / org_dir(other) / DAY.isoformat()
    check_files(folder, lambda p: open(p, "rb"), await stored_events(pipeline, other),
                await stored_audit(pipeline, other))
    no_rows = DAY - dt.timedelta(days=400)
    assert await DayDumper(pipeline.clickhouse, str(tmp_path), KEY).orgs(no_rows) == []


async def test_the_manifest_verifies_and_one_changed_byte_fails_it(pipeline, orgs, tmp_path, capsys):
    org, _ = orgs
    (done,) = await dump_day(pipeline.clickhouse, KEY, str(tmp_path), DAY, org, io.StringIO())
    manifest = Path(done.path)
    assert verify_export.main(str(manifest), PUBLIC) == 0
    out = capsys.readouterr().out
    assert "dump verified" in out and "events.parquet: 13 rows" in out and "chain heads recomputed" in out
    assert verify_export.main(str(manifest), public_key_text(Ed25519PrivateKey.generate())) == 1
    capsys.readouterr()
    for name in (*DATA_FILES, MANIFEST):
        path = manifest.parent / name
        original = path.read_bytes()
        # a data file's middle byte; in the manifest a digit of created_at (still JSON, signed nonetheless)
        at = original.index(b'"created_at": "') + 18 if name == MANIFEST else len(original) // 2
        path.write_bytes(original[:at] + bytes([original[at] ^ 0x01]) + original[at + 1:])
        try:
            assert verify_export.main(str(manifest), PUBLIC) == 1, name
            assert "dump NOT verified" in capsys.readouterr().out
        finally:
            path.write_bytes(original)
    assert verify_export.main(str(manifest), PUBLIC) == 0
    original = manifest.read_bytes()
    manifest.write_bytes(original[:-3])  # not JSON any more
    assert verify_export.main(str(manifest), PUBLIC) == 1
    assert "cannot read" in capsys.readouterr().out


async def test_a_rerun_replaces_the_day(api, pipeline, tmp_path):
    org = await make_org(api, pipeline, traces=1, per_trace=2, audit=1)
    (first,) = await dump_day(pipeline.clickhouse, KEY, str(tmp_path), DAY, org, io.StringIO())
    key = await api.org_key(org)
    status, _ = await api.post("/v1/events", key, trace_events(f"{org}-more", 3, START + 50_000))
    assert status == 202
    await pipeline.flush()
    (second,) = await dump_day(pipeline.clickhouse, KEY, str(tmp_path), DAY, org, io.StringIO(), chunk_rows=2)
    folder = Path(second.path).parent
    assert sorted(p.name for p in folder.iterdir()) == sorted([*DATA_FILES, MANIFEST])  # no temporary file left
    assert second.rows("events.parquet") == first.rows("events.parquet") + 3
    assert second.manifest["chains"]["traces"]["count"] == first.manifest["chains"]["traces"]["count"] + 1
    check_files(folder, lambda p: open(p, "rb"), await stored_events(pipeline, org), await stored_audit(pipeline, org))
    assert verify_export.main(second.path, PUBLIC) == 0


async def test_small_chunks_walk_every_row_once(pipeline, orgs):
    org, _ = orgs
    exports = EventExports(pipeline.clickhouse)
    tables = [t async for t in exports.dump_chunks(org, START, END, chunk_rows=3)]
    assert [t.num_rows for t in tables] == [3, 3, 3, 3, 1]
    ids = [i for t in tables for i in t.column("event_id").to_pylist()]
    assert ids == [e["event_id"] for e in await stored_events(pipeline, org)]
    assert len(set(ids)) == len(ids)
    empty = [t async for t in exports.dump_chunks(uid("nobody"), START, END, chunk_rows=3)]
    assert [t.num_rows for t in empty] == [0] and "_line" in empty[0].column_names


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """An S3 endpoint in this process (moto's server on a free port) and dummy credentials."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    try:
        yield endpoint
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


async def test_an_s3_dump_holds_the_same_rows_verifies_and_is_replaced(pipeline, orgs, capsys):
    import s3fs

    org, other = orgs
    with moto_s3() as endpoint:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
        fs.mkdir("dumps")
        url = "s3://dumps/daily"
        (done,) = await dump_day(pipeline.clickhouse, KEY, url, DAY, org, io.StringIO())
        assert done.path == f"{url}/{org_dir(org)}/{DAY}/{MANIFEST}"
        folder = f"dumps/daily/{org_dir(org)}/{DAY}"
        assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(folder)) == sorted([*DATA_FILES, MANIFEST])
        check_files(folder, lambda p: fs.open(p, "rb"), await stored_events(pipeline, org),
                    await stored_audit(pipeline, org))
        assert verify_export.main(done.path, PUBLIC) == 0, capsys.readouterr().out
        assert DayDumper(pipeline.clickhouse, url, KEY).dumped([(org, DAY), (other, DAY), (org, PREVIOUS_DAY)]) \
            == {(org, DAY)}

        with fs.open(f"{folder}/audit.jsonl.gz", "wb") as f:  # a changed file
            f.write(gzip.compress(b'{"id":"forged"}\n'))
        assert verify_export.main(done.path, PUBLIC) == 1
        (again,) = await dump_day(pipeline.clickhouse, KEY, url, DAY, org, io.StringIO())  # a re-run repairs it
        assert verify_export.main(again.path, PUBLIC) == 0
        assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(folder)) == sorted([*DATA_FILES, MANIFEST])
        assert not fs.exists(f"dumps/daily/{org_dir(other)}")


async def test_an_org_with_audit_entries_only_gets_empty_event_files_that_verify(api, pipeline, tmp_path):
    org = uid("dump-audit-only")
    key = await api.org_key(org)
    status, _ = await api.post("/v1/audit/events", key, audit_entries(f"{org}-a", 2, START + 5))
    assert status == 202
    await pipeline.flush()
    assert org in await DayDumper(pipeline.clickhouse, str(tmp_path), KEY).orgs(DAY)
    (done,) = await dump_day(pipeline.clickhouse, KEY, str(tmp_path), DAY, org, io.StringIO())
    folder = Path(done.path).parent
    events = pq.read_table(folder / "events.parquet")
    assert events.num_rows == 0 and "trace_id" in events.column_names and "hash" in events.column_names
    assert jsonl(folder / "events.jsonl.gz") == []
    assert done.manifest["chains"]["traces"]["count"] == 0 and done.rows("audit.parquet") == 2
    assert verify_export.main(done.path, PUBLIC) == 0


async def test_a_dump_that_fails_midway_leaves_no_manifest_and_no_temporary_file(pipeline, orgs, tmp_path):
    org, _ = orgs
    (done,) = await dump_day(pipeline.clickhouse, KEY, str(tmp_path), DAY, org, io.StringIO())
    folder = Path(done.path).parent
    dumper = DayDumper(pipeline.clickhouse, str(tmp_path), KEY, chunk_rows=2)
    real = dumper.events.dump_chunks

    async def failing(*args: Any, **kwargs: Any):
        async for table in real(*args, **kwargs):
            yield table
            raise ConnectionError("ClickHouse went away")

    dumper.events.dump_chunks = failing  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await dumper.dump(org, DAY)
    # the old files are still there, but no manifest vouches for them any more, and nothing half-written is left
    assert sorted(p.name for p in folder.iterdir()) == sorted(DATA_FILES)
    assert dumper.dumped([(org, DAY)]) == set()
    again = await DayDumper(pipeline.clickhouse, str(tmp_path), KEY).dump(org, DAY)
    assert verify_export.main(again.path, PUBLIC) == 0
