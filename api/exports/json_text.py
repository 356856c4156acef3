"""JSON as the exports write it: compact text, and arrays streamed chunk by chunk."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any


def compact_json(value: Any) -> str:
    """``value`` as JSON text with no spaces, non-ASCII characters as they are."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def json_array(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A JSON array written as it comes: each chunk is JSON texts already joined by commas (empty when
    the chunk holds none); ``[]`` when no chunk holds any."""
    separator = b"["
    async for chunk in chunks:
        if chunk:
            yield separator + chunk
            separator = b","
    yield b"]" if separator == b"," else b"[]"
