"""Events as JSON for webhook payloads: an Avro datum with its timestamps in ISO 8601 (UTC, ms),
everything else as stored."""

from __future__ import annotations

from functools import cache
from typing import Any

from schemas.registry import schema
from schemas.timefmt import format_ms


def _is_timestamp(avro_type: Any) -> bool:
    if isinstance(avro_type, list):
        return any(_is_timestamp(t) for t in avro_type)
    return isinstance(avro_type, dict) and avro_type.get("logicalType") == "timestamp-millis"


@cache
def timestamp_fields(name: str) -> frozenset[str]:
    """The fields of record schema ``name`` that hold epoch milliseconds."""
    return frozenset(f["name"] for f in schema(name).raw["fields"] if _is_timestamp(f["type"]))


def event_json(name: str, datum: dict[str, Any]) -> dict[str, Any]:
    """``datum`` (of record schema ``name``) with its timestamp fields as ISO 8601 strings."""
    stamps = timestamp_fields(name)
    return {k: format_ms(v) if k in stamps and v is not None else v for k, v in datum.items()}
