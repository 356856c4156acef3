"""Load the ``*.avsc`` files of this folder: the source of truth for every event shape."""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
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


#: Earlier versions of a schema whose records may still be on a topic: ``schemas/previous/<version>/``
#: holds each as it was (with the schemas it names). A later version may only append fields with
#: defaults, so an earlier record is upgraded by appending the defaults' encoding.
PREVIOUS = {"SealedTraceEventBatch": ("v1",), "SealedAuditEventBatch": ("v1",)}


@dataclass(frozen=True)
class Schema:
    """A named Avro schema with its CRC-64-AVRO fingerprint (Avro single-object encoding)."""

    name: str
    raw: dict[str, Any]  # the schema as published (logical types included)
    wire: Any  # parsed for fastavro, logical types stripped: timestamps stay int millis
    fingerprint: bytes  # 8 bytes, little endian, as single-object encoding writes it
    codec: Codec  # compiled from ``wire``: byte-for-byte what fastavro writes, several times faster
    #: An earlier version's records: the fields the current version appended, with their defaults,
    #: and those defaults' encoding (empty for the current version)
    defaults: dict[str, Any] = field(default_factory=dict)
    upgrade: bytes = b""


def _strip_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


def _load(name: str, folder: Path) -> Schema:
    path = folder / f"tracehouse.{name}.avsc"
    parsed = load_schema(path, _write_hint=False)
    canonical = to_parsing_canonical_form(parsed)
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))[::-1]
    wire = parse_schema(_strip_logical_types(copy.deepcopy(parsed)), _write_hint=False)
    raw = json.loads(path.read_text())
    return Schema(name=name, raw=raw, wire=wire, fingerprint=fp, codec=compile_codec(wire))


@cache
def schema(name: str) -> Schema:
    """The schema ``tracehouse.<name>``, parsed once per process."""
    return _load(name, SCHEMA_DIR)


@cache
def previous_schemas(name: str) -> tuple[Schema, ...]:
    """The earlier versions of ``tracehouse.<name>`` (``PREVIOUS``), each with what upgrades its records."""
    current = schema(name)
    out = []
    for version in PREVIOUS.get(name, ()):
        old = _load(name, SCHEMA_DIR / "previous" / version)
        kept = [f["name"] for f in old.wire["fields"]]
        fields = current.wire["fields"]
        if [f["name"] for f in fields[:len(kept)]] != kept or any("default" not in f for f in fields[len(kept):]):
            raise ValueError(f"{name} {version}: a later version may only append fields with defaults")
        appended = fields[len(kept):]
        defaults = {f["name"]: f["default"] for f in appended}
        tail = compile_codec({"type": "record", "name": f"{name}Upgrade", "fields": appended}).encode(defaults)
        out.append(dataclasses.replace(old, defaults=defaults, upgrade=tail))
    return tuple(out)


def record_fields(name: str) -> list[dict[str, Any]]:
    """The fields of a record schema as written in its .avsc file."""
    return schema(name).raw["fields"]
