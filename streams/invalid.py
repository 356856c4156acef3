"""Entries of the ``invalid-events`` topic: what could not be processed, why, and the bytes."""

from __future__ import annotations

import base64
import json


def invalid_report(topic: str, partition: int, offset: int, reason: str, payload: bytes) -> bytes:
    """The ``invalid-events`` entry for the record at ``topic[partition]@offset``."""
    return json.dumps({
        "source": f"kafka:{topic}/{partition}@{offset}",
        "reason": reason,
        "payload_base64": base64.b64encode(payload).decode(),
    }).encode()
