"""Avro object container files: the framing ClickHouse's ``FORMAT Avro`` reads.

The sink hands ClickHouse the Avro bytes it consumed, wrapped as container rows, so
events are parsed once, in C++, instead of decoded and re-encoded in Python.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from schemas.compiled import long_bytes

MAGIC = b"Obj\x01"


def avro_string(value: str | bytes) -> bytes:
    """An Avro string or bytes value: length, then the UTF-8 bytes."""
    raw = value.encode() if isinstance(value, str) else value
    return long_bytes(len(raw)) + raw


class ContainerWriter:
    """Builds container files of one schema; every row gets a block of its own.

    One block per row makes ClickHouse check the sync marker after every row, so a
    corrupt row fails the insert instead of shifting into its neighbours.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.sync = os.urandom(16)
        meta = {"avro.schema": json.dumps(schema).encode(), "avro.codec": b"null"}
        self.header = (MAGIC + long_bytes(len(meta))
                       + b"".join(avro_string(k) + avro_string(v) for k, v in meta.items())
                       + b"\x00" + self.sync)

    def file(self, rows: Iterable[bytes]) -> bytes:
        """A whole container file holding ``rows`` (each one encoded datum of the schema)."""
        one, sync = long_bytes(1), self.sync
        return self.header + b"".join(one + long_bytes(len(r)) + r + sync for r in rows)
