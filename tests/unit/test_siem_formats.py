"""OCSF and CEF lines of the SIEM export: the fields land where those formats put them, and CEF's
escaping keeps a hostile value inside its field."""

from __future__ import annotations

import json
import re

from api.exports.siem import cef_line, ocsf_line

EVENT = {"event_id": "evt-1", "trace_id": "tr-1", "agent_id": "agent-a", "event_type": "approval_granted",
         "actor_type": "human_reviewer", "actor_name": "Bob Smith", "description": "ok | a=b\\c\nnext",
         "status": "ok", "timestamp": "2026-03-21T10:00:00.000Z", "policy_version": 3,
         "integrity_hash": "sha256:" + "ab" * 32}


def test_ocsf_is_an_api_activity_record():
    record = json.loads(ocsf_line(EVENT, 1_774_087_200_000))
    assert (record["class_uid"], record["category_uid"], record["type_uid"]) == (6003, 6, 600399)
    assert record["time"] == 1_774_087_200_000 and record["status_id"] == 1
    assert record["metadata"]["uid"] == "evt-1" and record["metadata"]["correlation_uid"] == "tr-1"
    assert record["actor"]["user"] == {"name": "Bob Smith", "type": "human_reviewer"}
    assert record["api"]["operation"] == "approval_granted" and record["message"] == EVENT["description"]
    assert record["unmapped"]["integrity_hash"] == EVENT["integrity_hash"]
    assert json.loads(ocsf_line(EVENT | {"status": "error"}, 0))["status_id"] == 2


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value)


def test_cef_escapes_keep_every_value_in_its_field():
    line = cef_line(EVENT, 1_774_087_200_000).decode()
    assert line.endswith("\n") and line.count("\n") == 1
    header = re.split(r"(?<!\\)\|", line.rstrip("\n"), maxsplit=7)  # pipes need no escape after the header
    assert header[:5] == ["CEF:0", "tracehouse", "tracehouse", "1", "approval_granted"]
    assert unescape(header[5]) == "ok | a=b\\c next" and header[6] == "3"
    pairs = dict((k, unescape(v)) for k, v in re.findall(r"(\w+)=((?:[^=\\]|\\.)*?)(?= \w+=|$)", header[7]))
    assert pairs["msg"] == EVENT["description"] and pairs["externalId"] == "evt-1" and pairs["rt"] == "1774087200000"
    assert (pairs["cs1Label"], pairs["cs1"], pairs["cs3"]) == ("trace_id", "tr-1", EVENT["integrity_hash"])
    assert pairs["suser"] == "Bob Smith" and pairs["cn1"] == "3"
