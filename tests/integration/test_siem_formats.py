"""OCSF and CEF rows of the SIEM export as ClickHouse writes them (``SIEM_FORMATS``): the fields land
where those formats put them, and CEF's escaping keeps a hostile value inside its field."""

from __future__ import annotations

import json
import re

from sinks.repositories.export_sql import FORMAT_SETTINGS
from sinks.repositories.siem_sql import SIEM_FORMATS

EVENT = {"event_id": "evt-1", "trace_id": "tr-1", "agent_id": "agent-a", "type": "approval_granted",
         "actor_type": "human_reviewer", "actor_name": "Bob Smith", "description": "ok | a=b\\c\nnext",
         "status": "ok", "policy_version": 3}
AT_MS = 1_774_087_200_000
HASH = "ab" * 32


async def rows(clickhouse, fmt: str, **changes: object) -> list[str]:
    """The ``fmt`` rows ClickHouse writes for EVENT (with ``changes``), as text lines."""
    event = EVENT | changes
    columns = ", ".join(
        [f"{{{name}:Nullable(String)}} AS {name}" for name in event if name != "policy_version"]
        + ["{policy_version:Nullable(Int64)} AS policy_version",
           "fromUnixTimestamp64Milli(toInt64({at:Int64}), 'UTC') AS occurred_at",
           "toUInt64(1) AS seq", "unhex({hash:String}) AS hash"])
    select, output = SIEM_FORMATS[fmt]
    body = await clickhouse.raw_query(f"SELECT {select} FROM (SELECT {columns})",
                                      {**event, "at": AT_MS, "hash": HASH}, fmt=output, settings=FORMAT_SETTINGS)
    return body.decode().splitlines()


async def test_ocsf_is_an_api_activity_record(clickhouse):
    [line] = await rows(clickhouse, "ocsf")
    record = json.loads(line)
    assert (record["class_uid"], record["category_uid"], record["type_uid"], record["activity_id"]) == (
        6003, 6, 600399, 99)
    assert record["time"] == AT_MS and record["status_id"] == 1 and record["severity_id"] == 1
    assert record["metadata"] == {"version": "1.1.0", "uid": "evt-1", "correlation_uid": "tr-1",
                                  "product": {"name": "tracehouse", "vendor_name": "tracehouse"}}
    assert record["actor"] == {"user": {"name": "Bob Smith", "type": "human_reviewer"}}
    assert record["api"] == {"operation": "approval_granted"} and record["message"] == EVENT["description"]
    assert record["unmapped"] == {"agent_id": "agent-a", "policy_version": 3, "integrity_hash": "sha256:" + HASH,
                                  "timestamp": "2026-03-21T10:00:00.000Z"}
    assert json.loads((await rows(clickhouse, "ocsf", status="error"))[0])["status_id"] == 2
    bare = json.loads((await rows(clickhouse, "ocsf", status=None, actor_name=None, policy_version=None))[0])
    assert bare["status_id"] == 0 and bare["actor"]["user"]["name"] is None
    assert bare["unmapped"]["policy_version"] is None


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value)


def cef_fields(line: str) -> tuple[list[str], dict[str, str]]:
    header = re.split(r"(?<!\\)\|", line, maxsplit=7)  # pipes need no escape after the header
    pairs = dict((k, unescape(v)) for k, v in re.findall(r"(\w+)=((?:[^=\\]|\\.)*?)(?= \w+=|$)", header[7]))
    return header[:7], pairs


async def test_cef_escapes_keep_every_value_in_its_field(clickhouse):
    [line] = await rows(clickhouse, "cef")
    header, pairs = cef_fields(line)
    assert header[:5] == ["CEF:0", "tracehouse", "tracehouse", "1", "approval_granted"]
    assert unescape(header[5]) == "ok | a=b\\c next" and header[6] == "3"
    assert pairs["msg"] == EVENT["description"] and pairs["externalId"] == "evt-1" and pairs["rt"] == str(AT_MS)
    assert (pairs["cs1Label"], pairs["cs1"], pairs["cs3"]) == ("trace_id", "tr-1", "sha256:" + HASH)
    assert pairs["suser"] == "Bob Smith" and (pairs["cn1Label"], pairs["cn1"]) == ("policy_version", "3")
    # a hostile value stays in its field; absent values leave their key out; no description names the event
    [line] = await rows(clickhouse, "cef", actor_name="x=1 cs1=forged\r\nCEF:0|fake", description=None, status=None)
    header, pairs = cef_fields(line)
    assert unescape(header[5]) == "approval_granted" and "\n" not in line and "\r" not in line
    assert pairs["suser"] == "x=1 cs1=forged\nCEF:0|fake" and pairs["cs1"] == "tr-1"  # CRLF is one \\n
    assert "msg" not in pairs and "outcome" not in pairs
