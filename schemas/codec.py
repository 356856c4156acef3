"""Avro single-object encoding (magic ``C3 01`` + 8-byte fingerprint + body) for every record.

The fingerprint tells a reader which schema wrote a record, so the ``trace-events``
topic can carry both ``TraceEventBatch`` records (what tracehouse's producers write)
and single ``TraceEvent`` records (what any other Avro client may write).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from typing import Any

from fastavro import schemaless_reader

from schemas.compiled import CorruptRecord, boolean_bytes, bytes_array, long_bytes
from schemas.registry import NAMES, Schema, previous_schemas, schema

MAGIC = b"\xc3\x01"
HEADER_LEN = 10


class DecodeError(ValueError):
    """A record that is not single-object-encoded Avro of a known tracehouse schema."""


@dataclass(frozen=True)
class Decoded:
    """A decoded record: the schema name and the datum (a dict)."""

    schema: str
    datum: dict[str, Any]


def encode(name: str, datum: dict[str, Any]) -> bytes:
    """Encode ``datum`` with schema ``tracehouse.<name>`` as a single-object record."""
    s = schema(name)
    return MAGIC + s.fingerprint + s.codec.encode(datum)


@cache
def _by_fingerprint() -> dict[bytes, Schema]:
    """Every schema a record may have been written with: the current ones and their earlier versions."""
    found = {schema(n).fingerprint: schema(n) for n in NAMES}
    for n in NAMES:
        found.update((old.fingerprint, old) for old in previous_schemas(n))
    return found


def sealed_links(first_seq: int, prev_hash: bytes, hashes: list[bytes]) -> bytes:
    """The Avro encoding of a sealed batch's last fields (``first_seq``, ``prev_hash``,
    ``hashes``): appended to a raw batch body it makes the sealed body."""
    return long_bytes(first_seq) + long_bytes(len(prev_hash)) + prev_hash + bytes_array(hashes)


def trace_summary(started_at: int, final_outcome: str | None = None, completed_at: int | None = None) -> bytes:
    """The Avro encoding of a sealed trace batch's summary fields (``started_at``,
    ``final_outcome``, ``completed_at``): they follow its links."""
    outcome = b"\x00"
    if final_outcome is not None:
        raw = final_outcome.encode()
        outcome = b"\x02" + long_bytes(len(raw)) + raw
    completed = b"\x00" if completed_at is None else b"\x02" + long_bytes(completed_at)
    return long_bytes(started_at) + outcome + completed


def sealed_record(sealed_schema: str, body: bytes, first_seq: int, prev_hash: bytes, hashes: list[bytes],
                  summary: bytes = b"", *, hash_version: int, agent_named: bool | None = None) -> bytes:
    """A sealed record of ``sealed_schema``: a raw batch's Avro ``body``, then its links, then (a
    trace batch) its ``trace_summary``, then how its hashes were computed (``schemas.integrity``),
    then (a trace batch) whether it holds the trace's first event naming an agent. The one place
    that frames sealed records."""
    named = b"" if agent_named is None else boolean_bytes(agent_named)
    return (MAGIC + schema(sealed_schema).fingerprint + body + sealed_links(first_seq, prev_hash, hashes) + summary
            + long_bytes(hash_version) + named)


def schema_of(value: bytes) -> str:
    """The name of the schema a single-object record was written with (DecodeError if none)."""
    if not value or len(value) < HEADER_LEN or value[:2] != MAGIC:
        raise DecodeError("not an Avro single-object record (missing C3 01 header)")
    s = _by_fingerprint().get(value[2:HEADER_LEN])
    if s is None:
        raise DecodeError(f"unknown schema fingerprint {value[2:HEADER_LEN].hex()}")
    return s.name


def _writer(value: bytes) -> Schema:
    schema_of(value)
    return _by_fingerprint()[value[2:HEADER_LEN]]


def decode(value: bytes) -> Decoded:
    """Decode a single-object record; raise DecodeError naming what is wrong. A record of an
    earlier version of its schema reads as the current version: the fields added since hold
    their defaults."""
    s = _writer(value)
    try:
        if s.reader is None:
            return Decoded(s.name, s.codec.decode(value[HEADER_LEN:]))
        return Decoded(s.name, schemaless_reader(io.BytesIO(value[HEADER_LEN:]), s.wire, s.reader))
    except CorruptRecord as exc:
        raise DecodeError(f"corrupt {s.name} body: {exc}") from None
    except (ValueError, EOFError, IndexError, TypeError) as exc:  # what fastavro raises on bad bytes
        raise DecodeError(f"corrupt {s.name} body: {exc}") from None


def current_body(value: bytes) -> bytes:
    """The Avro body of a single-object record in its schema's current version (an earlier
    version's record read and written again)."""
    s = _writer(value)
    if s.reader is None:
        return value[HEADER_LEN:]
    return schema(s.name).codec.encode(decode(value).datum)
