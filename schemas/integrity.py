"""Hash chains: link events of one chain (a trace, or an org's audit log) and verify them.

Each event's hash is sha256 over the canonical JSON (sorted keys, no whitespace,
UTF-8) of the whole event datum with two more members, ``seq`` and ``prev_hash``:

    hash = sha256(canonical_json({**event, "seq": seq, "prev_hash": prev_hash}))

``seq`` counts 1, 2, 3… per chain and the first event's ``prev_hash`` is
``GENESIS``. The event datum is exactly what the Avro schema holds (timestamps in
epoch milliseconds, JSON-valued fields as their canonical text), so anyone can
recompute a chain from an export with a JSON library and sha256.

Pure functions only: the chain agents link (``streams.chaining``), the API verifies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.canonical import canonical_json

GENESIS = "0" * 64


def link_hash(event: Mapping[str, Any], seq: int, prev_hash: str) -> str:
    """The hash of ``event`` as link ``seq`` after ``prev_hash`` (hex)."""
    document = dict(event)
    document["seq"] = seq
    document["prev_hash"] = prev_hash
    return _document_hash(document)


def _document_hash(document: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of an event datum that holds its seq and prev_hash."""
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """The result of verifying one chain (seed 003's verify response, minus timestamps)."""

    valid: bool
    event_count: int
    first_invalid_event: str | None = None
    reason: str | None = None


def verify(rows: Sequence[Mapping[str, Any]], id_field: str, *, first_seq: int = 1,
           prev_hash: str = GENESIS, expected_head: tuple[int, str] | None = None) -> Verdict:
    """Verify stored links, ordered by ``seq``, each row an event datum plus seq/prev_hash/hash.

    Names the first event that breaks the chain: a changed field (its hash no longer
    matches), an event deleted before it or inserted, reordered or duplicated (seq or
    prev_hash out of line). A span of a chain starts at ``first_seq`` after the link
    hashed ``prev_hash``. ``expected_head`` (seq, hash), e.g. from a signed checkpoint,
    also catches a truncated tail (whole chains only).
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
        if _document_hash({k: v for k, v in row.items() if k != "hash"}) != row["hash"]:
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
