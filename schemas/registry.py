"""Load the ``*.avsc`` files of this folder: the source of truth for every event shape."""

from __future__ import annotations

import copy
import dataclasses
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


#: Earlier versions of a schema whose records may still be on a topic, oldest first:
#: ``schemas/previous/<version>/`` holds each as it was (with the schemas it names). A later version
#: may only add fields with defaults, at the end of a record (its own or a nested one, such as a
#: batch's events), so an earlier record reads as the current version with those defaults (Avro
#: schema resolution). v1: before ``hash_version``; v2: before ``TraceEvent.app_id``; v3: before
#: ``SealedTraceEventBatch.agent_named``.
PREVIOUS = {"SealedTraceEventBatch": ("v1", "v2", "v3"), "SealedAuditEventBatch": ("v1",),
            "TraceEventBatch": ("v2",), "TraceEvent": ("v2",)}


@dataclass(frozen=True)
class Schema:
    """A named Avro schema with its CRC-64-AVRO fingerprint (Avro single-object encoding)."""

    name: str
    raw: dict[str, Any]  # the schema as published (logical types included)
    wire: Any  # parsed for fastavro, logical types stripped: timestamps stay int millis
    fingerprint: bytes  # 8 bytes, little endian, as single-object encoding writes it
    codec: Codec  # compiled from ``wire``: byte-for-byte what fastavro writes, several times faster
    #: An earlier version: the current version's ``wire``, which its records are read as (None: current)
    reader: Any = None


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


def _appended_with_defaults(old: Any, new: Any, where: str) -> None:
    """Raise unless ``new`` is ``old`` with fields appended (each with a default) to its records."""
    kind = old.get("type") if isinstance(old, dict) else None
    if kind == "record":
        kept = [f["name"] for f in old["fields"]]
        fields = new.get("fields", []) if isinstance(new, dict) else []
        if [f["name"] for f in fields[:len(kept)]] != kept or any("default" not in f for f in fields[len(kept):]):
            raise ValueError(f"{where}: a later version may only append fields with defaults")
        for before, after in zip(old["fields"], fields, strict=False):
            _appended_with_defaults(before["type"], after["type"], f"{where}.{before['name']}")
    elif kind == "array" and isinstance(new, dict) and new.get("type") == "array":
        _appended_with_defaults(old["items"], new["items"], where)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for before, after in zip(old, new, strict=True):
            _appended_with_defaults(before, after, where)
    elif isinstance(old, dict) and isinstance(new, dict) and kind not in ("array", "record"):
        return  # a map, enum or fixed: Avro schema resolution checks it as it reads
    elif old != new:
        raise ValueError(f"{where}: a later version may not change a field's type")


@cache
def previous_schemas(name: str) -> tuple[Schema, ...]:
    """The earlier versions of ``tracehouse.<name>`` (``PREVIOUS``), each read as the current one."""
    current = schema(name)
    out = []
    for version in PREVIOUS.get(name, ()):
        old = _load(name, SCHEMA_DIR / "previous" / version)
        _appended_with_defaults(old.wire, current.wire, f"{name} {version}")
        out.append(dataclasses.replace(old, reader=current.wire))
    return tuple(out)


def record_fields(name: str) -> list[dict[str, Any]]:
    """The fields of a record schema as written in its .avsc file."""
    return schema(name).raw["fields"]
