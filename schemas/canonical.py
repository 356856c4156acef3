"""Canonical JSON (RFC 8785 style): sorted keys, no whitespace, UTF-8."""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import Any

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """The canonical JSON text of ``value``."""
    return _encoder.encode(value)


#: The canonical JSON text of a string (C-accelerated): what ``canonical_json(s)`` returns.
encode_json_string = encode_basestring
