"""SIEM formats of seed 003's audit export beyond its JSON and CSV: OCSF and CEF, one event per line.

- **OCSF** (Open Cybersecurity Schema Framework 1.1, class API Activity, ``class_uid`` 6003 in the
  Application Activity category): what Amazon Security Lake, Splunk and Sentinel's OCSF pipelines
  ingest. An event's type becomes ``api.operation``, its actor ``actor.user``, its trace
  ``metadata.correlation_uid``; the fields OCSF has no place for go to ``unmapped``.
- **CEF** (ArcSight Common Event Format 0): what most SIEM syslog collectors parse. Header fields
  escape ``\\`` and ``|``; extension values escape ``\\``, ``=`` and line breaks, as the CEF spec says.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PRODUCT = "tracehouse"
OCSF_VERSION = "1.1.0"
API_ACTIVITY, APPLICATION_ACTIVITY = 6003, 6
OTHER_ACTIVITY = 99
INFORMATIONAL = 1
#: OCSF status_id: 1 success, 2 failure, 0 unknown
_FAILED = {"error", "failed", "failure", "denied", "blocked", "STATUS_CODE_ERROR"}


def ocsf_line(event: Mapping[str, Any], occurred_ms: int) -> bytes:
    """One SIEM export event (seed 003's fields) as an OCSF API Activity object, one JSON line."""
    status = event.get("status")
    status_id = 0 if status is None else 2 if status in _FAILED else 1
    record = {
        "class_uid": API_ACTIVITY, "category_uid": APPLICATION_ACTIVITY, "activity_id": OTHER_ACTIVITY,
        "type_uid": API_ACTIVITY * 100 + OTHER_ACTIVITY, "severity_id": INFORMATIONAL,
        "time": occurred_ms, "status_id": status_id, "status": status,
        "message": event.get("description"),
        "metadata": {"version": OCSF_VERSION, "uid": event["event_id"], "correlation_uid": event.get("trace_id"),
                     "product": {"name": PRODUCT, "vendor_name": PRODUCT}},
        "actor": {"user": {"name": event.get("actor_name"), "type": event.get("actor_type")}},
        "api": {"operation": event.get("event_type")},
        "unmapped": {"agent_id": event.get("agent_id"), "policy_version": event.get("policy_version"),
                     "integrity_hash": event.get("integrity_hash"), "timestamp": event.get("timestamp")},
    }
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


def _header(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _extension(value: Any) -> str:
    return (str(value).replace("\\", "\\\\").replace("=", "\\=").replace("\r\n", "\\n")
            .replace("\n", "\\n").replace("\r", "\\r"))


#: (CEF extension key, label for custom strings or None, field of the export event)
_EXTENSIONS = (("rt", None, "occurred_ms"), ("externalId", None, "event_id"), ("suser", None, "actor_name"),
               ("outcome", None, "status"), ("msg", None, "description"), ("cs1", "trace_id", "trace_id"),
               ("cs2", "agent_id", "agent_id"), ("cs3", "integrity_hash", "integrity_hash"),
               ("cs4", "actor_type", "actor_type"), ("cn1", "policy_version", "policy_version"))


def cef_line(event: Mapping[str, Any], occurred_ms: int) -> bytes:
    """One SIEM export event as a CEF:0 line (severity 3: informational governance activity)."""
    fields = dict(event) | {"occurred_ms": occurred_ms}
    header = "|".join(["CEF:0", PRODUCT, PRODUCT, "1", _header(event["event_type"]),
                       _header(event.get("description") or event["event_type"]), "3"])
    extension = []
    for key, label, name in _EXTENSIONS:
        value = fields.get(name)
        if value is None:
            continue
        if label is not None:
            extension.append(f"{key}Label={label}")
        extension.append(f"{key}={_extension(value)}")
    return f"{header}|{' '.join(extension)}\n".encode()
