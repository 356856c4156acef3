"""Load the ``*.avsc`` files of this folder: the source of truth for every event shape."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from schemas.compiled import Codec, compile_codec

SCHEMA_DIR = Path(__file__).parent
NAMES = ("TraceEvent", "TraceEventBatch", "AuditEvent", "AuditEventBatch",
         "SealedTraceEventBatch", "SealedAuditEventBatch", "TraceCommand", "CommandVerdict", "WebhookEvent",
         "HourlyRollup", "WebhookSubscription", "WebhookDelivery", "WebhookAttempt")


@dataclass(frozen=True)
class Schema:
    """A named Avro schema with its CRC-64-AVRO fingerprint (Avro single-object encoding)."""

    name: str
    raw: dict[str, Any]  # the schema as published (logical types included)
    wire: Any  # parsed for fastavro, logical types stripped: timestamps stay int millis
    fingerprint: bytes  # 8 bytes, little endian, as single-object encoding writes it
    codec: Codec  # compiled from ``wire``: byte-for-byte what fastavro writes, several times faster


def _strip_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


@cache
def schema(name: str) -> Schema:
    """The schema ``tracehouse.<name>``, parsed once per process."""
    path = SCHEMA_DIR / f"tracehouse.{name}.avsc"
    parsed = load_schema(path, _write_hint=False)
    canonical = to_parsing_canonical_form(parsed)
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))[::-1]
    wire = parse_schema(_strip_logical_types(copy.deepcopy(parsed)), _write_hint=False)
    raw = json.loads(path.read_text())
    return Schema(name=name, raw=raw, wire=wire, fingerprint=fp, codec=compile_codec(wire))


def record_fields(name: str) -> list[dict[str, Any]]:
    """The fields of a record schema as written in its .avsc file."""
    return schema(name).raw["fields"]
