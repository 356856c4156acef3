"""Entries of the ``invalid-events`` topic: what could not be processed, why, and the bytes."""

from __future__ import annotations

import base64
import json

#: Bytes of a record an ``invalid-events`` entry carries: the record itself may be as large
#: as the record limit, and base64 in JSON would make the entry a third larger than any
#: producer or topic takes. The source offset finds the whole record.
MAX_REPORTED_BYTES = 64 * 1024


def invalid_report(topic: str, partition: int, offset: int, reason: str, payload: bytes) -> bytes:
    """The ``invalid-events`` entry for the record at ``topic[partition]@offset``: the
    record's first ``MAX_REPORTED_BYTES`` bytes, its size, and whether it was cut."""
    return json.dumps({
        "source": f"kafka:{topic}/{partition}@{offset}",
        "reason": reason,
        "payload_base64": base64.b64encode(payload[:MAX_REPORTED_BYTES]).decode(),
        "payload_bytes": len(payload),
        "payload_truncated": len(payload) > MAX_REPORTED_BYTES,
    }).encode()
