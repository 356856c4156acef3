"""Daily dumps: the layout, the chain heads and the signed manifest that the dump writer
(``sinks.day_dump``) and the offline verifier (``tracehouse.verify_dump``) share.

A dump of one org and one UTC day lives under ``<url>/<org>/<YYYY-MM-DD>/``: the org's trace events
and audit log entries that occurred that day, each as Parquet and as gzipped JSON lines, then
``manifest.json``, written last. The manifest names every file with its row count, byte size and
sha256, the day's chain heads, the time it was made and the public key; ``signature`` is the ed25519
signature of the RFC 8785 JSON of every other member.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.checkpoints import head_leaf, public_key_text, sign, verify_signature
from schemas.jcs import canonicalize
from schemas.merkle import merkle_root
from schemas.timefmt import format_ms

#: ``format`` of a manifest: what the verifier recognises one by.
MANIFEST_FORMAT = "tracehouse.daily-dump.v1"
MANIFEST = "manifest.json"
EVENTS_PARQUET, EVENTS_JSONL = "events.parquet", "events.jsonl.gz"
AUDIT_PARQUET, AUDIT_JSONL = "audit.parquet", "audit.jsonl.gz"
#: Every data file of a day, in the order they are written.
DATA_FILES = (EVENTS_PARQUET, EVENTS_JSONL, AUDIT_PARQUET, AUDIT_JSONL)
DAY_MS = 86_400_000


def day_bounds(day: dt.date) -> tuple[int, int]:
    """The first and the last epoch millisecond of the UTC day ``day`` (both inside it)."""
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
    return start, start + DAY_MS - 1


def parse_day(text: str) -> dt.date:
    """A ``YYYY-MM-DD`` date; ValueError for anything else."""
    try:
        day = dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"expected a date as YYYY-MM-DD, got {text!r}") from None
    if day.isoformat() != text:
        raise ValueError(f"expected a date as YYYY-MM-DD, got {text!r}")
    if not 1970 <= day.year <= 2299:  # what ClickHouse's time types hold
        raise ValueError(f"expected a date from 1970-01-01 to 2299-12-31, got {text!r}")
    return day


def org_dir(org_id: str) -> str:
    """The path component of an org: the org id percent-encoded (letters, digits, ``-``, ``_`` and
    ``.`` kept; a leading ``.`` encoded), so no org id can name another directory."""
    name = urllib.parse.quote(org_id, safe="-_.")
    return "%2E" + name[1:] if name.startswith(".") else name


def org_of_dir(name: str) -> str:
    """The org id ``org_dir`` encoded into ``name``."""
    return urllib.parse.unquote(name)


class TraceHeads:
    """The last link of the day of every trace touched that day: the highest seq seen per trace
    (unchained rows, seq 0, have none). Its root is the RFC 6962 Merkle root of the heads as
    checkpoint leaves (``schemas.checkpoints.head_leaf``, kind ``trace``), sorted by their bytes."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[int, str]] = {}

    def add(self, trace_ids: Iterable[str], seqs: Iterable[int], hashes: Iterable[str]) -> None:
        for trace_id, seq, hash_hex in zip(trace_ids, seqs, hashes, strict=True):
            if seq > 0 and seq > self.heads.get(trace_id, (0, ""))[0]:
                self.heads[trace_id] = (seq, hash_hex)

    def summary(self, org_id: str) -> dict[str, Any]:
        """``{"count", "root"}``: how many traces have a head, and the Merkle root over them (hex)."""
        leaves = sorted(head_leaf("trace", org_id, trace_id, seq, hash_hex)
                        for trace_id, (seq, hash_hex) in self.heads.items())
        return {"count": len(leaves), "root": merkle_root(leaves).hex()}


class AuditHead:
    """The org's last audit link of the day: the highest seq seen (None when no row is chained)."""

    def __init__(self) -> None:
        self.seq = 0
        self.hash = ""

    def add(self, seqs: Iterable[int], hashes: Iterable[str]) -> None:
        for seq, hash_hex in zip(seqs, hashes, strict=True):
            if seq > self.seq:
                self.seq, self.hash = seq, hash_hex

    def summary(self) -> dict[str, Any] | None:
        return {"seq": self.seq, "hash": self.hash} if self.seq else None


def file_entry(rows: int, size: int, sha256: str) -> dict[str, Any]:
    return {"rows": rows, "bytes": size, "sha256": sha256}


def manifest(org_id: str, day: dt.date, files: Mapping[str, Mapping[str, Any]], traces: Mapping[str, Any],
             audit: Mapping[str, Any] | None, created_at: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    """The signed manifest of one org's day."""
    start, end = day_bounds(day)
    body = {"format": MANIFEST_FORMAT, "org_id": org_id, "date": day.isoformat(),
            "from": format_ms(start), "to": format_ms(end), "files": {name: dict(files[name]) for name in DATA_FILES},
            "chains": {"traces": dict(traces), "audit": dict(audit) if audit is not None else None},
            "created_at": created_at, "public_key": public_key_text(key)}
    return body | {"signature": sign(key, signed_bytes(body))}


def signed_bytes(document: Mapping[str, Any]) -> bytes:
    """What a manifest's signature covers: the RFC 8785 JSON of every member but ``signature``."""
    return canonicalize({k: v for k, v in document.items() if k != "signature"}).encode("utf-8")


def signature_valid(document: Mapping[str, Any], key: Ed25519PublicKey) -> bool:
    """Whether ``document["signature"]`` is ``key``'s signature of ``signed_bytes(document)``."""
    return verify_signature(key, signed_bytes(document), document.get("signature"))
