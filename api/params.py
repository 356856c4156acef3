"""Query-parameter parsing shared by every surface: each failure names its parameter."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from typing import Any

from api.errors import bad_param
from schemas.model import MAX_ID_LEN
from schemas.timefmt import check_query_ms, parse_ms


def reject_unknown(query: Mapping[str, str], allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    for name in query:
        if name not in allowed:
            raise bad_param(name, f"unknown parameter; allowed: {', '.join(sorted(allowed))}")


def int_param(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_param(name, f"expected an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise bad_param(name, f"must be between {lo} and {hi}")
    return value


def time_param(query: Mapping[str, str], name: str) -> int | None:
    """ISO 8601 in epoch millis; 400 when unparsable or outside ``schemas.timefmt.QUERY_RANGE``."""
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return check_query_ms(parse_ms(raw))
    except ValueError as exc:
        raise bad_param(name, str(exc)) from None


def str_param(query: Mapping[str, str], name: str, max_len: int = 256) -> str | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not raw or len(raw) > max_len:
        raise bad_param(name, f"must be 1 to {max_len} characters")
    return raw


def float_param(query: Mapping[str, str], name: str) -> float | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise bad_param(name, f"expected a number, got {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise bad_param(name, "must be a finite number")
    return value


def enum_param(query: Mapping[str, str], name: str, allowed: Iterable[str]) -> str | None:
    raw = query.get(name)
    allowed = tuple(allowed)
    if raw is not None and raw not in allowed:
        raise bad_param(name, f"expected one of {', '.join(allowed)}, got {raw!r}")
    return raw


def time_range(query: Mapping[str, str], start: str, end: str) -> tuple[int | None, int | None]:
    """Two time parameters (either may be absent); 400 naming ``start`` when it is after ``end``."""
    lo, hi = time_param(query, start), time_param(query, end)
    if lo is not None and hi is not None and lo > hi:
        raise bad_param(start, f"must not be after {end}")
    return lo, hi


def bool_param(query: Mapping[str, str], name: str) -> bool:
    raw = query.get(name, "false")
    if raw not in ("true", "false"):
        raise bad_param(name, f"expected true or false, got {raw!r}")
    return raw == "true"


def encode_cursor(key: Any) -> str:
    """An opaque cursor for a keyset position."""
    raw = json.dumps(["v1", key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(raw: str, name: str = "cursor") -> Any:
    """The keyset position inside a cursor from ``encode_cursor``; 400 when it is not one."""
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not (isinstance(data, list) and len(data) == 2 and data[0] == "v1"):
            raise ValueError
        return data[1]
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise bad_param(name, "not a cursor returned by this API") from None


def key_cursor(raw: str | None, name: str = "cursor") -> tuple[int, str] | None:
    """The (time in ms, id) keyset position inside a cursor, None when there is none."""
    if raw is None:
        return None
    return keyset_position(decode_cursor(raw, name), name)


def keyset_position(key: Any, name: str = "cursor") -> tuple[int, str]:
    """A decoded cursor's (time in ms, id) keyset position, checked; 400 naming ``name`` when it is not one."""
    if not (isinstance(key, list) and len(key) == 2 and type(key[0]) is int and isinstance(key[1], str)
            and 0 < len(key[1]) <= MAX_ID_LEN and is_utf8(key[1])):
        raise bad_param(name, "not a cursor returned by this API")
    try:
        check_query_ms(key[0])
    except ValueError:
        raise bad_param(name, "not a cursor returned by this API") from None
    return key[0], key[1]


def is_utf8(text: str) -> bool:
    """False for text with a lone surrogate (JSON's ``\\ud800``, or a header's bytes that were
    not UTF-8): it has no UTF-8 encoding."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
