"""``tracehouse verify-export <url>/manifest.json --public-key KEY``: check a daily dump offline.

Reads the manifest and the files beside it (a directory or any fsspec URL) and checks:

1. the manifest's signature with KEY (ed25519 over the RFC 8785 JSON of every member but ``signature``);
2. each data file's byte size and sha256, recomputed, and its row count (Parquet: every row group's
   rows; JSON lines: every line parsed);
3. the chain heads: the audit log's last link of the day and the traces' count and Merkle root,
   recomputed from the Parquet files, and every row belongs to the manifest's org.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import fsspec
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.checkpoints import parse_public_key
from schemas.day_dump import (
    AUDIT_PARQUET,
    DATA_FILES,
    EVENTS_PARQUET,
    MANIFEST_FORMAT,
    AuditHead,
    TraceHeads,
    signature_valid,
)
from tracehouse.verify_export import Report

_BLOCK = 1 << 20


def is_manifest(document: Any) -> bool:
    return isinstance(document, dict) and document.get("format") == MANIFEST_FORMAT


def verify_dump(manifest_url: str, document: Mapping[str, Any], public_key_text: str,
                storage_options: dict[str, Any] | None = None) -> Report:
    """Check the dump whose manifest (parsed) was read from ``manifest_url``."""
    report = Report()
    try:
        key = parse_public_key(public_key_text)
    except ValueError as exc:
        report.problems.append(f"malformed key: {exc}")
        return report
    if signature_valid(document, key):
        report.notes.append("manifest: signature valid")
    else:
        report.problems.append("the manifest is not signed by this public key (or was changed since)")
    files = document.get("files")
    org_id = document.get("org_id")
    if not isinstance(files, dict) or not isinstance(org_id, str):
        report.problems.append("not a daily dump manifest (files or org_id missing)")
        return report
    fs, path = fsspec.core.url_to_fs(manifest_url, **(storage_options or {}))
    folder = path.rsplit("/", 1)[0] if "/" in path else "."
    for name in DATA_FILES:
        entry = files.get(name)
        if not isinstance(entry, dict):
            report.problems.append(f"{name}: not in the manifest")
            continue
        try:
            _check_file(fs, f"{folder}/{name}", name, entry, report)
        except (OSError, ValueError, EOFError, gzip.BadGzipFile) as exc:  # pyarrow's errors are ValueErrors too
            report.problems.append(f"{name}: cannot be read: {exc}")
    try:
        _check_heads(fs, folder, org_id, document.get("chains"), report)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        report.problems.append(f"chain heads cannot be recomputed: {exc}")
    return report


def _check_file(fs: Any, path: str, name: str, entry: Mapping[str, Any], report: Report) -> None:
    digest = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
            size += len(block)
    if (size, digest.hexdigest()) != (entry.get("bytes"), entry.get("sha256")):
        report.problems.append(f"{name}: {size} bytes with sha256 {digest.hexdigest()}, "
                               f"the manifest says {entry.get('bytes')} bytes with sha256 {entry.get('sha256')}")
        return
    rows = _rows(fs, path, name)
    if rows != entry.get("rows"):
        report.problems.append(f"{name}: {rows} rows, the manifest says {entry.get('rows')}")
        return
    report.notes.append(f"{name}: {rows} rows, {size} bytes, sha256 recomputed")


def _rows(fs: Any, path: str, name: str) -> int:
    if name.endswith(".parquet"):
        with fs.open(path, "rb") as f:
            return int(pq.ParquetFile(f).metadata.num_rows)
    rows = 0
    with fs.open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as lines:
        for line in lines:
            json.loads(line)  # ValueError when a line is not JSON
            rows += 1
    return rows


def _check_heads(fs: Any, folder: str, org_id: str, chains: Any, report: Report) -> None:
    traces, audit = TraceHeads(), AuditHead()
    for name, columns in ((EVENTS_PARQUET, ["org_id", "trace_id", "seq", "hash"]),
                          (AUDIT_PARQUET, ["org_id", "seq", "hash"])):
        with fs.open(f"{folder}/{name}", "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(columns=columns):
                if not pc.all(pc.equal(batch.column("org_id"), org_id)).as_py() and batch.num_rows:
                    report.problems.append(f"{name}: holds rows of another org than {org_id}")
                seqs, hashes = batch.column("seq").to_pylist(), batch.column("hash").to_pylist()
                if name == EVENTS_PARQUET:
                    traces.add(batch.column("trace_id").to_pylist(), seqs, hashes)
                else:
                    audit.add(seqs, hashes)
    expected = {"traces": traces.summary(org_id), "audit": audit.summary()}
    for chain in ("traces", "audit"):
        if chains.get(chain) != expected[chain]:
            report.problems.append(f"chains.{chain} is {chains.get(chain)}, the files give {expected[chain]}")
    if chains == expected:
        report.notes.append(f"chain heads recomputed: {expected['traces']['count']} traces, audit "
                            + (f"seq {expected['audit']['seq']}" if expected["audit"] else "unchained or empty"))
