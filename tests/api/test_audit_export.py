"""``POST /v1/audit/export`` through the in-process API: JSON and CSV read back with the json and csv
modules and compared row by row with what ClickHouse holds, the from/to filter, every 400, 401 and
403, tenancy, the keyset chunks, and the audit entries the API's own mutations append."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import pytest

from api.routes import audit_export
from schemas.codec import decode
from schemas.timefmt import format_ms, now_ms, parse_ms
from schemas.topics import AUDIT_EVENTS
from sinks.repositories.audit_events import AuditEventRepository
from tests.support.in_process import Pipeline, RecordingProducer
from tests.support.service import ADMIN_KEY, Api, uid

pytestmark = pytest.mark.asyncio(loop_scope="session")

COLUMNS = ["id", "orgId", "actor", "action", "target", "metadata", "occurredAt"]
T0 = parse_ms("2026-11-20T08:00:00.000Z")


def entry(n: int, at: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"e{n:03d}", "actor": f"user-{n}", "action": "doc.updated", "target": f"doc/{n}",
            "metadata": {"n": str(n)}, "occurred_at": format_ms(at)} | fields


async def org_with_log(api: Api, pipeline: Pipeline, entries: list[dict[str, Any]],
                       scopes: tuple[str, ...] = ("audit:read", "audit:write")) -> tuple[str, str]:
    """A new org whose audit log holds ``entries`` (besides its key's ``api_key.created``), stored."""
    org = uid("ax-org")
    key = await api.org_key(org, list(scopes))
    if entries:
        status, body = await api.post("/v1/audit/events", key, entries)
        assert status == 202 and len(body["accepted"]) == len(entries), body
    await pipeline.flush()
    return org, key


async def stored(pipeline: Pipeline, org: str) -> list[list[Any]]:
    """The org's audit rows as ClickHouse holds them, in the export's order and columns."""
    ch = pipeline.clickhouse
    rows = await ch.query(
        f"SELECT id, org_id, actor, action, target, metadata, occurred_at FROM {ch.database}.audit_events "
        "WHERE org_id = {org:String} ORDER BY occurred_at, id", {"org": org})
    return [[i, o, a, act, t, dict(m), format_ms(parse_ms(at.isoformat()))] for i, o, a, act, t, m, at in rows.rows]


def published(producer: RecordingProducer, org: str, action: str) -> list[dict[str, Any]]:
    """The audit entries with ``action`` published for ``org``, in order."""
    found: list[dict[str, Any]] = []
    for sent in producer.sent:
        if sent.topic == AUDIT_EVENTS:
            batch = decode(sent.value).datum
            if batch["org_id"] == org:
                found += [e for e in batch["events"] if e["action"] == action]
    return found


async def export(client, key: str | None, body: Any = None, *, raw: bytes | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if raw is not None:
        return await client.post("/v1/audit/export", data=raw, headers=headers)
    return await client.post("/v1/audit/export", json=body, headers=headers)


async def exported_json(client, key: str, body: Any = None) -> tuple[Any, list[dict[str, Any]]]:
    r = await export(client, key, {} if body is None else body)
    assert r.status == 200, await r.text()
    assert r.headers["Content-Type"] == "application/json"
    return r, json.loads(await r.read())


async def test_json_export_is_every_entry_as_clickhouse_holds_it(api, client, pipeline):
    entries = [entry(1, T0 + 2000), entry(2, T0), entry(3, T0 + 1000, metadata={"ip": "1.2.3.4", "é": "ü"}),
               entry(4, T0 + 1000, actor="", target="", metadata={})]
    org, key = await org_with_log(api, pipeline, entries)
    r, rows = await exported_json(client, key)
    held = await stored(pipeline, org)
    assert len(held) == 5  # the four and the key's creation
    assert int(r.headers["X-Total-Count"]) == len(rows) == len(held)
    assert all(list(row) == COLUMNS for row in rows)  # exactly the seed's keys, in its order
    assert [[row[c] for c in COLUMNS] for row in rows] == held
    assert [row["id"] for row in rows if row["action"] == "doc.updated"] == ["e002", "e003", "e004", "e001"]
    third = next(row for row in rows if row["id"] == "e003")
    assert third == {"id": "e003", "orgId": org, "actor": "user-3", "action": "doc.updated", "target": "doc/3",
                     "metadata": {"ip": "1.2.3.4", "é": "ü"}, "occurredAt": "2026-11-20T08:00:01.000Z"}


async def test_csv_export_reads_back_cell_for_cell(api, client, pipeline):
    hostile = {"comma": "a,b", "quote": 'say "hi"', "newline": "line1\nline2\r\nline3", "unicode": "日本語 ✓ 🚀",
               "formula": "=cmd|' /C calc'!A0"}
    entries = [entry(1, T0, actor="=cmd|' /C calc'!A0", action="+sum(1)", target='x, "y"\nz',
                     metadata=hostile),
               entry(2, T0 + 5, actor="-2+3", target="@SUM(A1)", metadata={"k": "=1+1"}),
               entry(3, T0 + 9, actor="Zoë, \"the\" admin", target="línea\nnueva")]
    org, key = await org_with_log(api, pipeline, entries)
    before = format_ms(now_ms())
    r = await export(client, key, {"format": "csv"})
    assert r.status == 200, await r.text()
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    match = re.fullmatch(r'attachment; filename="audit-(.+)-(\d{8}T\d{6}Z)\.csv"', r.headers["Content-Disposition"])
    assert match and match[1] == org
    assert match[2] >= before[:19].replace("-", "").replace(":", "")
    raw = await r.read()
    assert raw.startswith(b"id,orgId,actor,action,target,metadata,occurredAt\r\n")
    table = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    header, rows = table[0], table[1:]
    assert header == COLUMNS
    held = await stored(pipeline, org)
    assert int(r.headers["X-Total-Count"]) == len(rows) == len(held) == 4

    def neutral(text: str) -> str:
        return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

    for got, want in zip(rows, held, strict=True):
        assert json.loads(got[5]) == want[5]  # metadata: compact JSON of the stored map
        assert got[:5] + got[6:] == [neutral(v) for v in want[:5]] + [want[6]]
    first = next(row for row in rows if row[0] == "e001")
    assert first[2] == "'=cmd|' /C calc'!A0" and first[3] == "'+sum(1)" and first[4] == 'x, "y"\nz'
    assert json.loads(first[5]) == hostile  # inside JSON a value is not a cell: kept as it is
    second = next(row for row in rows if row[0] == "e002")
    assert second[2] == "'-2+3" and second[4] == "'@SUM(A1)"
    third = next(row for row in rows if row[0] == "e003")
    assert third[2] == 'Zoë, "the" admin' and third[4] == "línea\nnueva"


async def test_from_and_to_bound_occurred_at_inclusively(api, client, pipeline):
    entries = [entry(i, T0 + i * 60_000) for i in range(6)]
    org, key = await org_with_log(api, pipeline, entries)
    body = {"from": format_ms(T0 + 60_000), "to": "2026-11-20T09:04:00+01:00"}  # an offset: 08:04Z
    r, rows = await exported_json(client, key, body)
    assert [row["id"] for row in rows] == ["e001", "e002", "e003", "e004"]
    assert r.headers["X-Total-Count"] == "4"
    _, rows = await exported_json(client, key, {"from": format_ms(T0 + 5 * 60_000)})
    assert [row["id"] for row in rows if row["action"] == "doc.updated"] == ["e005"]
    _, rows = await exported_json(client, key, {"to": format_ms(T0)})
    assert [row["id"] for row in rows] == ["e000"]
    r, rows = await exported_json(client, key, {"from": "2001-01-01T00:00:00Z", "to": "2001-01-02T00:00:00Z"})
    assert rows == [] and r.headers["X-Total-Count"] == "0"
    r = await export(client, key, {"format": "csv", "to": "2001-01-02T00:00:00Z"})
    assert r.status == 200 and await r.read() == b"id,orgId,actor,action,target,metadata,occurredAt\r\n"


BAD_BODIES = [
    ({"format": "xml"}, "format"),
    ({"format": "CSV"}, "format"),
    ({"format": None}, "format"),
    ({"format": ["csv"]}, "format"),
    ({"from": "yesterday"}, "from"),
    ({"to": 1700000000000}, "to"),
    ({"format": "json", "from": "2000-01-01T00:00:00Z", "to": None}, "to"),
    ({"from": None}, "from"),
    ({"from": "2026-13-01T00:00:00Z"}, "from"),
    ({"to": "2400-01-01T00:00:00Z"}, "to"),
    ({"from": "2026-11-20T10:00:00Z", "to": "2026-11-20T09:59:59.999Z"}, "from"),
    ({"format": "json", "limit": 10}, "limit"),
    ([], "(body)"),
    ("csv", "(body)"),
    (None, "(body)"),
]


async def test_bad_bodies_answer_400_naming_the_field_and_export_nothing(api, client, producer):
    org = uid("ax-org")
    key = await api.org_key(org, ["audit:read"])
    for body, field in BAD_BODIES:
        r = await export(client, key, raw=json.dumps(body).encode())
        assert r.status == 400, (body, await r.text())
        error = (await r.json())["error"]
        assert error["code"] == "validation_error" and error["details"]["field"] == field, (body, error)
    for raw in (b"", b"{format: csv}", b'{"format": "csv"'):
        r = await export(client, key, raw=raw)
        assert r.status == 400 and (await r.json())["error"]["details"]["field"] == "(body)", raw
    r = await client.post("/v1/audit/export?format=csv", json={}, headers={"Authorization": f"Bearer {key}"})
    assert r.status == 400 and (await r.json())["error"]["details"]["field"] == "format"
    assert published(producer, org, "audit.exported") == []


async def test_no_key_is_401_and_a_key_without_audit_read_is_403(api, client, producer, pipeline):
    org = uid("ax-org")
    assert (await export(client, None, {})).status == 401
    assert (await export(client, "th_nope_nope", {})).status == 401
    for scopes in (["traces:read", "traces:write", "audit:write", "webhooks:manage"],):
        r = await export(client, await api.org_key(org, scopes), {"format": "csv"})
        assert r.status == 403
        assert (await r.json())["error"]["details"] == {"scope": "audit:read"}
    assert (await export(client, ADMIN_KEY, {})).status == 403  # the operator key reads no org's data
    assert published(producer, org, "audit.exported") == []
    admin_key = await api.org_key(org, ["admin"])
    await pipeline.flush()
    _, rows = await exported_json(client, admin_key)  # admin implies audit:read
    assert [row["action"] for row in rows] == ["api_key.created"] * 2


async def test_another_orgs_entries_never_appear(api, client, pipeline):
    mine, key = await org_with_log(api, pipeline, [entry(1, T0), entry(2, T0 + 1)])
    theirs, their_key = await org_with_log(api, pipeline, [entry(1, T0), entry(2, T0 + 1), entry(3, T0 + 2)])
    _, rows = await exported_json(client, key)
    assert {row["orgId"] for row in rows} == {mine}
    assert [row["id"] for row in rows] == [row[0] for row in await stored(pipeline, mine)]
    _, rows = await exported_json(client, their_key)
    assert {row["orgId"] for row in rows} == {theirs} and len(rows) == 4
    r = await export(client, key, {"format": "csv"})
    assert theirs not in (await r.read()).decode()


async def test_chunks_return_every_entry_once_in_order(api, client, pipeline, monkeypatch):
    # ties on occurred_at across chunk boundaries: the keyset is (occurred_at, id)
    entries = [entry(i, T0 + (i // 4) * 1000) for i in range(11)]
    org, key = await org_with_log(api, pipeline, entries)
    held = await stored(pipeline, org)
    repo = AuditEventRepository(pipeline.clickhouse)
    for size in (1, 3, 4, 12, 10_000):
        chunks = [c async for c in repo.chunks(org, chunk_rows=size)]
        assert all(0 < len(c) <= size for c in chunks)
        assert len(chunks) == -(-len(held) // size)
        assert [r["id"] for c in chunks for r in c] == [row[0] for row in held]
    inside = [c async for c in repo.chunks(org, T0 + 1000, T0 + 2000, chunk_rows=3)]
    assert [r["id"] for c in inside for r in c] == [f"e{i:03d}" for i in range(4, 11)]
    assert await repo.count(org, T0 + 1000, T0 + 2000) == 7
    with pytest.raises(ValueError):
        [c async for c in repo.chunks(org, chunk_rows=0)]

    monkeypatch.setattr(audit_export, "CHUNK_ROWS", 3)  # the route reads in chunks of 3
    _, rows = await exported_json(client, key)
    assert [[row[c] for c in COLUMNS] for row in rows] == held
    r = await export(client, key, {"format": "csv"})
    table = list(csv.reader(io.StringIO((await r.read()).decode(), newline="")))
    assert [row[0] for row in table[1:]] == [row[0] for row in held]


async def test_key_changes_and_exports_are_in_the_audit_log(api, client, pipeline, producer):
    org = uid("ax-org")
    admin_key = await api.org_key(org, ["admin"])
    admin_id = admin_key.split("_")[1]
    status, made = await api.post("/v1/admin/keys", admin_key, {"org_id": org, "scopes": ["traces:read"],
                                                                "name": "ci, \"nightly\""})
    assert status == 201
    status, _ = await api.request("DELETE", f"/v1/admin/keys/{made['key_id']}", admin_key)
    assert status == 200
    await pipeline.flush()
    r = await export(client, admin_key, {"format": "csv", "from": "2026-01-01T00:00:00Z"})
    assert r.status == 200
    total = int(r.headers["X-Total-Count"])
    assert total == 3 and len((await r.read()).splitlines()) == 1 + total
    (exported,) = published(producer, org, "audit.exported")
    assert exported["actor"] == admin_id and exported["target"] == org
    assert exported["metadata"] == {"format": "csv", "rows": str(total), "from": "2026-01-01T00:00:00.000Z"}
    await pipeline.flush()

    _, rows = await exported_json(client, admin_key)
    by_action = {row["action"]: row for row in rows}
    assert [row["action"] for row in rows] == ["api_key.created", "api_key.created", "api_key.revoked",
                                               "audit.exported"]
    first, created, revoked = rows[0], rows[1], by_action["api_key.revoked"]
    assert first["actor"] == "operator" and first["target"] == admin_id  # the operator made the admin key
    assert created["actor"] == admin_id and created["target"] == made["key_id"]
    assert created["metadata"] == {"name": 'ci, "nightly"', "scopes": "traces:read"}
    assert created["occurredAt"] == made["created_at"]
    assert revoked["actor"] == admin_id and revoked["target"] == made["key_id"]
    assert revoked["metadata"] == {"name": 'ci, "nightly"', "scopes": "traces:read", "already_revoked": "false"}
    assert by_action["audit.exported"]["metadata"]["rows"] == "3"  # what was stored when it started
    assert by_action["audit.exported"]["id"] == exported["id"]
    assert not any(made["key"] in json.dumps(row) for row in rows)  # never the secret
    # the entries are chained like any other
    status, verdict = await api.get("/v1/audit/verify", admin_key)
    assert status == 200 and verdict["valid"] and verdict["event_count"] == 4


async def test_a_failed_key_request_writes_no_entry(api, producer):
    org = uid("ax-org")
    reader = await api.org_key(org, ["audit:read"])
    status, _ = await api.post("/v1/admin/keys", reader, {"org_id": org, "scopes": ["traces:read"]})
    assert status == 403
    status, _ = await api.post("/v1/admin/keys", ADMIN_KEY, {"org_id": org, "scopes": ["nope"]})
    assert status == 400
    status, _ = await api.request("DELETE", "/v1/admin/keys/missing", ADMIN_KEY)
    assert status == 404
    assert len(published(producer, org, "api_key.created")) == 1  # the reader's own
    assert published(producer, org, "api_key.revoked") == []
