"""Hash chains: link events of one chain (a trace, or an org's audit log) and verify them.

Each event's hash is sha256 over the RFC 8785 (JCS) canonical JSON, UTF-8, of the whole event
datum with three more members, ``seq``, ``prev_hash`` and ``hash_version``:

    hash = sha256(jcs({**event, "seq": seq, "prev_hash": prev_hash, "hash_version": 2}))

``seq`` counts 1, 2, 3… per chain and the first event's ``prev_hash`` is ``GENESIS``. The
event datum is exactly what the Avro schema holds (timestamps in epoch milliseconds,
JSON-valued fields as their canonical text), so anyone can recompute a chain from an export
with a JCS library and sha256: a stored link minus its ``hash`` is the hashed document.

A field added to an event schema after its links were first sealed is marked
``"tracehouse.link": "omit-null"`` in its .avsc (``TraceEvent.app_id``): a link leaves it out
when it is null, so the documents of links sealed before it existed are unchanged and keep
verifying, and an exported link (``as_link``) is still its hashed document.

Links sealed before 2026-12-05 have ``hash_version`` 1: sha256 over Python's sorted-keys JSON
of the datum with ``seq`` and ``prev_hash`` only (floats as Python writes them, ``1e-07``,
``1.0``). They keep verifying; every new link is version 2. A chain may hold both.

Pure functions only: the chain agents link (``streams.chaining``), the API verifies.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import fastavro

from schemas.avro_jcs import JcsReader, jcs_reader
from schemas.canonical import canonical_json
from schemas.compiled import CorruptRecord, read_long
from schemas.jcs import canonicalize, value_text
from schemas.registry import record_fields, schema

GENESIS = "0" * 64
LEGACY_HASH = 1  # sha256 of Python's sorted-keys JSON; links sealed before 2026-12-05
JCS_HASH = 2  # sha256 of RFC 8785 JSON, hash_version included in the document
#: What the chain agents seal with.
HASH_VERSION = JCS_HASH
_JCS_HASH_TEXT = str(JCS_HASH)


#: The event schemas whose records are chained.
CHAINED_SCHEMAS = ("TraceEvent", "AuditEvent")


@cache
def omitted_when_null(schema_name: str) -> tuple[str, ...]:
    """The fields of event schema ``schema_name`` a link leaves out when they are null."""
    return tuple(f["name"] for f in record_fields(schema_name) if f.get("tracehouse.link") == "omit-null")


@cache
def _omitted_anywhere() -> frozenset[str]:
    return frozenset(name for s in CHAINED_SCHEMAS for name in omitted_when_null(s))


def as_link(datum: Mapping[str, Any]) -> dict[str, Any]:
    """An event datum (or a stored link) as a link holds it: without the ``omit-null`` fields that are null."""
    omitted = _omitted_anywhere()
    return {k: v for k, v in datum.items() if v is not None or k not in omitted}


def link_hash(event: Mapping[str, Any], seq: int, prev_hash: str, version: int = HASH_VERSION) -> str:
    """The hash of ``event`` as link ``seq`` after ``prev_hash`` (hex), computed as ``version`` says."""
    document = as_link(event)
    document["seq"] = seq
    document["prev_hash"] = prev_hash
    if version != LEGACY_HASH:
        document["hash_version"] = version
    return _document_hash(document, version)


@cache
def avro_link_reader(event_schema: str, kept: tuple[str, ...]) -> JcsReader:
    """A reader of ``event_schema`` records (Avro binary, its current version) that also writes
    their link documents' JCS text (``schemas.avro_jcs``): ``avro_link`` of its ``parts`` is
    ``link_hash`` of the decoded event, as raw bytes, without decoding the event into a dict
    (``kept``: the fields it decodes too). The ``omit-null`` fields are left out when null."""
    return jcs_reader(schema(event_schema).wire, ("seq", "prev_hash", "hash_version"), kept,
                      omitted_when_null(event_schema))


def avro_link(reader: JcsReader, parts: list[str | None], seq: int, prev_hash: str) -> bytes:
    """The raw ``link_hash`` (version 2) of the event ``reader`` read as ``parts``, as link ``seq``
    after ``prev_hash`` (hex)."""
    document = reader.text(parts, value_text(seq), value_text(prev_hash), _JCS_HASH_TEXT)
    return hashlib.sha256(document.encode()).digest()


def _document_hash(document: Mapping[str, Any], version: int) -> str:
    """sha256 (hex) of the canonical JSON of a hashed document (``version`` says which canonical form)."""
    if version == JCS_HASH:
        return hashlib.sha256(canonicalize(document).encode()).hexdigest()
    if version == LEGACY_HASH:
        return hashlib.sha256(canonical_json(document).encode()).hexdigest()
    raise ValueError(f"unknown hash_version {version}")


def stored_link_hash(row: Mapping[str, Any]) -> str:
    """The hash a stored link (an event datum plus seq, prev_hash, hash and hash_version; a row
    without hash_version is version 1) should carry."""
    version = row.get("hash_version", LEGACY_HASH)
    skipped = ("hash", "hash_version") if version == LEGACY_HASH else ("hash",)
    return _document_hash({k: v for k, v in as_link(row).items() if k not in skipped}, version)


@dataclass(frozen=True)
class Verdict:
    """The result of verifying one chain (seed 003's verify response, minus timestamps)."""

    valid: bool
    event_count: int
    first_invalid_event: str | None = None
    reason: str | None = None


def verify(rows: Sequence[Mapping[str, Any]], id_field: str, *, first_seq: int = 1,
           prev_hash: str = GENESIS, expected_head: tuple[int, str] | None = None,
           recompute: Callable[[Mapping[str, Any]], str] = stored_link_hash) -> Verdict:
    """Verify stored links, ordered by ``seq``, each row an event datum plus seq/prev_hash/hash.

    Names the first event that breaks the chain: a changed field (its hash no longer
    matches), an event deleted before it or inserted, reordered or duplicated (seq or
    prev_hash out of line). A span of a chain starts at ``first_seq`` after the link
    hashed ``prev_hash``. ``expected_head`` (seq, hash), e.g. from a signed checkpoint,
    also catches a truncated tail (whole chains only). ``recompute`` gives the hash a row's
    content makes (``stored_link_hash``; ``checked_links`` rows carry it already).
    """
    expected_seq, prev = first_seq, prev_hash
    count = 0
    for row in rows:
        count += 1
        event_id = row[id_field]
        if row["seq"] != expected_seq:
            return Verdict(False, count, event_id, f"seq {row['seq']} where {expected_seq} was expected")
        if row["prev_hash"] != prev:
            return Verdict(False, count, event_id, "prev_hash does not match the previous event's hash")
        # seq and prev_hash are checked: the row minus its hash is the hashed document
        try:
            recomputed = recompute(row)
        except (TypeError, ValueError) as exc:  # an unknown hash_version, or a value JSON cannot hold
            return Verdict(False, count, event_id, f"hash cannot be recomputed: {exc}")
        if recomputed != row["hash"]:
            return Verdict(False, count, event_id, "hash does not match the event's content")
        prev = row["hash"]
        expected_seq += 1
    if expected_head is not None:
        head_seq, head_hash = expected_head
        if count < head_seq:
            return Verdict(False, count, None, f"chain ends at seq {count}, a checkpoint covers seq {head_seq}")
        if head_seq > 0 and _hash_at(rows, head_seq) != head_hash:
            return Verdict(False, count, None, f"seq {head_seq} differs from the checkpointed head")
    return Verdict(True, count)


def verify_span(rows: Sequence[Mapping[str, Any]], id_field: str, first_seq: int, anchor: str | None) -> Verdict:
    """Verify a span of a chain that starts at ``first_seq``, after the link hashed
    ``anchor`` (None: that link is missing, so the span's first event is named)."""
    if first_seq == 1:
        anchor = GENESIS
    if anchor is None:
        first = rows[0][id_field] if rows else None
        return Verdict(False, 0, first, f"the link before seq {first_seq} is missing")
    return verify(rows, id_field, first_seq=first_seq, prev_hash=anchor)


def _hash_at(rows: Sequence[Mapping[str, Any]], seq: int) -> str | None:
    return rows[seq - 1]["hash"] if 0 < seq <= len(rows) else None


def _avro_shape(node: Any) -> Any:
    """An Avro type without what leaves its binary encoding unchanged (names, logical types)."""
    if isinstance(node, list):
        return [_avro_shape(n) for n in node]
    if isinstance(node, dict):
        kind = node["type"]
        if kind == "record":
            return ["record", [(f["name"], _avro_shape(f["type"])) for f in node["fields"]]]
        if kind == "array":
            return ["array", _avro_shape(node["items"])]
        if kind == "map":
            return ["map", _avro_shape(node["values"])]
        return _avro_shape(kind)
    return "string" if node == "bytes" else node


#: What follows the event datum in each record ``avro_link_blocks`` reads, and its Avro types.
LINK_TAIL = (("seq", "long"), ("prev_hash", "string"), ("hash", "string"), ("hash_version", "int"))


def avro_link_blocks(container: bytes, event_schema: str) -> list[tuple[bytes, int]] | None:
    """The blocks of stored links written as an Avro object container file, each record an
    ``event_schema`` datum (its current version) then ``LINK_TAIL``: (records' bytes, count) each, to
    hash with ``checked_links`` (one block or several joined); None when the records are not that shape."""
    expected = ["record", [*_avro_shape(schema(event_schema).wire)[1], *LINK_TAIL]]
    blocks = []
    try:
        for block in fastavro.block_reader(io.BytesIO(container)):
            if _avro_shape(block.writer_schema) != expected:
                return None
            blocks.append((block.bytes_.getvalue(), block.num_records))
    except (ValueError, EOFError):
        return None
    return blocks


def checked_links(data: bytes, count: int, event_schema: str, id_field: str) -> list[tuple] | None:
    """The ``count`` links in ``data`` (``avro_link_blocks``' bytes) as (``id_field``, seq, prev_hash,
    hash, hash_version, recomputed) each, ``recomputed`` the hash the link's content makes, computed
    from its Avro binary without a dict (``avro_link_reader``). None when a link is not of
    ``HASH_VERSION`` or its content has no JCS text: read those as dicts instead."""
    reader = avro_link_reader(event_schema, (id_field,))
    links = []
    pos = 0
    try:
        for _ in range(count):
            pos, (event_id,), parts = reader.read(data, pos)
            seq, pos = read_long(data, pos)
            n, pos = read_long(data, pos)
            prev_hash, pos = data[pos:pos + n].decode(), pos + n
            n, pos = read_long(data, pos)
            stored, pos = data[pos:pos + n].decode(), pos + n
            version, pos = read_long(data, pos)
            if version != HASH_VERSION:
                return None
            links.append((event_id, seq, prev_hash, stored, version, avro_link(reader, parts, seq, prev_hash).hex()))
    except (ValueError, IndexError, CorruptRecord, UnicodeDecodeError):
        return None
    return links


def link_rows(links: Sequence[tuple], id_field: str) -> list[dict[str, Any]]:
    """``checked_links``' tuples as verify's rows (``recompute`` with ``itemgetter("recomputed")``)."""
    names = (id_field, "seq", "prev_hash", "hash", "hash_version", "recomputed")
    return [dict(zip(names, link, strict=True)) for link in links]
