"""Daily dumps: one org's events and audit log of one UTC day, written to a directory or to object
storage through fsspec (``s3://``, ``gs://``, ``az://``), as Parquet and gzipped JSON lines, then a
signed ``manifest.json`` (layout and manifest: ``schemas.day_dump``).

Rows are read in keyset chunks (``EventExports.dump_chunks``, ``AuditEventRepository.chunks``: one
bounded query each, chdb buffers a whole result) and written chunk by chunk (a Parquet row group and
a piece of the gzip stream each), so memory stays flat whatever the day holds; only the per-trace
heads of the day (a seq and a hash per trace touched) are kept. File writes run on a thread, never
on the event loop.

Re-running a day replaces it: the old manifest goes first (a reader trusts a day only through its
manifest), then, on a local directory, each file is written under a temporary name and renamed over
the old one; object stores have no rename, so there the final names are written directly. The new
manifest is written last.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem

from schemas.day_dump import (
    AUDIT_JSONL,
    AUDIT_PARQUET,
    EVENTS_JSONL,
    EVENTS_PARQUET,
    MANIFEST,
    AuditHead,
    TraceHeads,
    day_bounds,
    file_entry,
    manifest,
    org_dir,
)
from schemas.timefmt import format_ms, ms_datetime, now_ms
from sinks.clickhouse import ClickHouse
from sinks.repositories.audit_events import AuditEventRepository
from sinks.repositories.events import DUMP_CHUNK_ROWS, EventExports
from sinks.write_only import WriteOnly

#: ``progress(file name, rows written so far)``, called after each chunk.
Progress = Callable[[str, int], None]

#: The audit Parquet file's columns.
AUDIT_SCHEMA = pa.schema([
    ("id", pa.string()), ("org_id", pa.string()), ("actor", pa.string()), ("action", pa.string()),
    ("target", pa.string()), ("metadata", pa.map_(pa.string(), pa.string())),
    ("occurred_at", pa.timestamp("ms", tz="UTC")), ("seq", pa.uint64()), ("prev_hash", pa.string()),
    ("hash", pa.string()), ("hash_version", pa.uint8())])
_TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class DayDump:
    """What one dump wrote: the manifest and where it is."""

    org_id: str
    day: dt.date
    manifest: dict[str, Any]
    path: str

    def rows(self, name: str) -> int:
        return int(self.manifest["files"][name]["rows"])


class _Tap(WriteOnly):
    """A write-only file object that hands every byte on to ``target`` and counts and hashes them."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        if self.closed:  # a writer finishing after its dump was given up: nowhere to go
            return view.nbytes
        self.sha256.update(view)
        self.size += view.nbytes
        self.target.write(view)
        return view.nbytes

    def flush(self) -> None:
        self.target.flush()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.target.close()


class _TableFiles:
    """One table's two files under way: Parquet (a row group per chunk) and gzipped JSON lines."""

    def __init__(self, fs: Any, parquet_path: str, jsonl_path: str, schema: pa.Schema | None = None) -> None:
        self.parquet = _Tap(fs.open(parquet_path, "wb"))
        self.jsonl = _Tap(fs.open(jsonl_path, "wb"))
        self.gzip = gzip.GzipFile(fileobj=self.jsonl, mode="wb", mtime=0)  # no name, no time: same rows, same bytes
        self.writer: pq.ParquetWriter | None = None
        self.schema = schema
        self.rows = 0

    def write(self, table: pa.Table, lines: Iterable[str]) -> None:
        if self.writer is None:
            self.schema = self.schema or table.schema
            self.writer = pq.ParquetWriter(self.parquet, self.schema, compression="zstd")
        if table.num_rows:
            self.writer.write_table(table.cast(self.schema))
            self.gzip.write("".join(line + "\n" for line in lines).encode("utf-8"))
            self.rows += table.num_rows

    def close(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Finish both files; their manifest entries (Parquet, JSON lines)."""
        if self.writer is None:
            self.write(self.schema.empty_table() if self.schema is not None else pa.table({}), [])
        assert self.writer is not None
        self.writer.close()
        self.parquet.close()
        self.gzip.close()
        self.jsonl.close()
        return (file_entry(self.rows, self.parquet.size, self.parquet.sha256.hexdigest()),
                file_entry(self.rows, self.jsonl.size, self.jsonl.sha256.hexdigest()))

    def abort(self) -> None:
        """Give both files up: an object store's upload is abandoned (a multipart upload aborted), a local
        file closed (the caller removes it)."""
        for tap in (self.parquet, self.jsonl):
            tap.closed = True
        for finish in (self.writer, self.gzip):  # their last writes are dropped
            with contextlib.suppress(Exception):
                if finish is not None:
                    finish.close()
        for tap in (self.parquet, self.jsonl):
            with contextlib.suppress(Exception):  # the dump failed already: that error is the one to raise
                if isinstance(tap.target, LocalFileOpener) or not hasattr(tap.target, "discard"):
                    tap.target.close()
                else:
                    tap.target.discard()
                    tap.target.closed = True


def audit_line(row: dict[str, Any]) -> str:
    """One audit entry as a JSON line: its stored fields (occurred_at in ISO 8601) and its link."""
    return json.dumps(row | {"occurred_at": format_ms(row["occurred_at"])}, ensure_ascii=False,
                      separators=(",", ":"))


def audit_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([row | {"metadata": list(row["metadata"].items())} for row in rows],
                                schema=AUDIT_SCHEMA)


class DayDumper:
    """Writes the daily dumps of ``ch``'s orgs under ``url`` (a directory or an fsspec URL; credentials as
    the fsspec backend reads them, ``storage_options`` passed on to it), signed with ``key``."""

    def __init__(self, ch: ClickHouse, url: str, key: Ed25519PrivateKey, *, chunk_rows: int = DUMP_CHUNK_ROWS,
                 storage_options: dict[str, Any] | None = None, clock: Callable[[], int] = now_ms) -> None:
        self.ch = ch
        self.url = url.rstrip("/")
        self.key = key
        self.chunk_rows = chunk_rows
        self.clock = clock
        self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.root = root.rstrip("/")
        self.renames = isinstance(self.fs, LocalFileSystem)  # object stores have no rename
        self.events = EventExports(ch)
        self.audit = AuditEventRepository(ch)

    def day_dir(self, org_id: str, day: dt.date) -> str:
        return f"{self.root}/{org_dir(org_id)}/{day.isoformat()}"

    async def orgs(self, day: dt.date) -> list[str]:
        """Every org with events or audit entries that occurred on ``day`` (one query)."""
        start, end = day_bounds(day)
        span = "occurred_at >= {since:DateTime64(3, 'UTC')} AND occurred_at <= {until:DateTime64(3, 'UTC')}"
        db = self.ch.database
        rows = await self.ch.query(
            f"SELECT DISTINCT org_id FROM (SELECT org_id FROM {db}.events WHERE {span} "
            f"UNION ALL SELECT org_id FROM {db}.audit_events WHERE {span}) ORDER BY org_id",
            {"since": ms_datetime(start), "until": ms_datetime(end)})
        return [org for (org,) in rows.rows]

    def dumped(self, pairs: Iterable[tuple[str, dt.date]]) -> set[tuple[str, dt.date]]:
        """Those of ``pairs`` (org, day) whose manifest is at the URL (blocking: call it on a thread)."""
        return {(org_id, day) for org_id, day in pairs if self.fs.exists(f"{self.day_dir(org_id, day)}/{MANIFEST}")}

    async def dump(self, org_id: str, day: dt.date, progress: Progress | None = None) -> DayDump:
        """Write (or rewrite) the dump of ``org_id``'s ``day``; its manifest."""
        folder = self.day_dir(org_id, day)
        await asyncio.to_thread(self._prepare, folder)
        token = secrets.token_hex(4)
        written: list[tuple[str, str]] = []  # (path written, final path)

        def target(name: str) -> str:
            final = f"{folder}/{name}"
            path = f"{folder}/.{name}.{token}{_TMP_SUFFIX}" if self.renames else final
            written.append((path, final))
            return path

        start, end = day_bounds(day)
        try:
            files, traces = await self._events(org_id, start, end, target(EVENTS_PARQUET), target(EVENTS_JSONL),
                                               progress)
            audit_files, audit = await self._audit(org_id, start, end, target(AUDIT_PARQUET), target(AUDIT_JSONL),
                                                   progress)
            files |= audit_files
            if self.renames:
                await asyncio.to_thread(self._rename, written)
            document = manifest(org_id, day, files, traces.summary(org_id), audit.summary(),
                                format_ms(self.clock()), self.key)
            path = f"{folder}/{MANIFEST}"
            await asyncio.to_thread(self._write_manifest, path, document, token)
        except BaseException:
            if self.renames:
                await asyncio.to_thread(self._remove, [p for p, final in written if p != final])
            raise
        return DayDump(org_id, day, document, f"{self.url}/{org_dir(org_id)}/{day.isoformat()}/{MANIFEST}")

    async def _events(self, org_id: str, start: int, end: int, parquet_path: str, jsonl_path: str,
                      progress: Progress | None) -> tuple[dict[str, Any], TraceHeads]:
        heads = TraceHeads()
        out = await asyncio.to_thread(_TableFiles, self.fs, parquet_path, jsonl_path)
        try:
            async for table in self.events.dump_chunks(org_id, start, end, chunk_rows=self.chunk_rows):
                heads.add(table.column("trace_id").to_pylist(), table.column("seq").to_pylist(),
                          table.column("hash").to_pylist())
                await asyncio.to_thread(out.write, table.drop_columns(["_line"]), table.column("_line").to_pylist())
                _report(progress, out.rows, EVENTS_PARQUET, EVENTS_JSONL)
            parquet, jsonl = await asyncio.to_thread(out.close)
        except BaseException:
            await asyncio.to_thread(out.abort)
            raise
        return {EVENTS_PARQUET: parquet, EVENTS_JSONL: jsonl}, heads

    async def _audit(self, org_id: str, start: int, end: int, parquet_path: str, jsonl_path: str,
                     progress: Progress | None) -> tuple[dict[str, Any], AuditHead]:
        head = AuditHead()
        out = await asyncio.to_thread(_TableFiles, self.fs, parquet_path, jsonl_path, AUDIT_SCHEMA)
        try:
            chunks: AsyncIterator[list[dict[str, Any]]] = self.audit.chunks(
                org_id, start, end, chunk_rows=self.chunk_rows, links=True)
            async for rows in chunks:
                head.add([r["seq"] for r in rows], [r["hash"] for r in rows])
                await asyncio.to_thread(out.write, audit_table(rows), [audit_line(r) for r in rows])
                _report(progress, out.rows, AUDIT_PARQUET, AUDIT_JSONL)
            parquet, jsonl = await asyncio.to_thread(out.close)
        except BaseException:
            await asyncio.to_thread(out.abort)
            raise
        return {AUDIT_PARQUET: parquet, AUDIT_JSONL: jsonl}, head

    def _prepare(self, folder: str) -> None:
        """Make the day's folder; drop its manifest (the day is not to be trusted until the new one
        is written) and temporary files an interrupted dump left."""
        self.fs.makedirs(folder, exist_ok=True)
        manifest_path = f"{folder}/{MANIFEST}"
        if self.fs.exists(manifest_path):
            self.fs.rm(manifest_path)
        if self.renames:
            self._remove([p for p in self.fs.ls(folder, detail=False)
                          if p.rsplit("/", 1)[-1].startswith(".") and p.endswith(_TMP_SUFFIX)])

    def _rename(self, written: list[tuple[str, str]]) -> None:
        for path, final in written:
            self.fs.mv(path, final)

    def _remove(self, paths: list[str]) -> None:
        for path in paths:
            if self.fs.exists(path):
                self.fs.rm(path)

    def _write_manifest(self, path: str, document: dict[str, Any], token: str) -> None:
        body = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        temporary = f"{path.rsplit('/', 1)[0]}/.{MANIFEST}.{token}{_TMP_SUFFIX}" if self.renames else path
        with self.fs.open(temporary, "wb") as f:
            f.write(body)
        if temporary != path:
            self.fs.mv(temporary, path)


def _report(progress: Progress | None, rows: int, *names: str) -> None:
    if progress is not None:
        for name in names:
            progress(name, rows)
