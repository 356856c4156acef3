"""Parquet written piece by piece: one row group per Arrow table, each handed out as soon as it is
encoded, so an export holds one chunk in memory. The footer comes last, with the final piece."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pyarrow as pa
import pyarrow.parquet as pq

from sinks.write_only import WriteOnly


class _Pending(WriteOnly):
    """A write-only file object that keeps what was written until it is taken."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        self.data += view
        self.size += view.nbytes
        return view.nbytes

    def take(self) -> bytes:
        taken, self.data = bytes(self.data), bytearray()
        return taken

    def close(self) -> None:
        self.closed = True


async def parquet_pieces(tables: AsyncIterator[pa.Table]) -> AsyncIterator[bytes]:
    """A Parquet file (zstd) of ``tables``, which share the first one's schema, in pieces: a row
    group per non-empty table. ``tables`` yields at least one table, so the columns are known."""
    out = _Pending()
    writer: pq.ParquetWriter | None = None
    async for table in tables:
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema, compression="zstd")
        if table.num_rows:
            writer.write_table(table.cast(writer.schema))
        yield out.take()
    if writer is None:
        raise ValueError("parquet_pieces needs at least one table")
    writer.close()
    yield out.take()
