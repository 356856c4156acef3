"""Canonical JSON (RFC 8785 style): sorted keys, no whitespace, UTF-8."""

from __future__ import annotations

import json
from typing import Any

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``."""
    return _encoder.encode(value)
