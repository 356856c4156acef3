"""Validation at the edge: JSON objects in, Avro datums out, or an error naming the field.

The rules come from the ``.avsc`` files: a field's Avro type decides what JSON it
accepts, ``"tracehouse.json": true`` marks fields that hold any JSON value (stored
as canonical JSON text), and a field without a default is required. A few fields
have server-side defaults (event_id, occurred_at) and org_id always comes from
the caller's key, never from the body.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from schemas.canonical import canonical_json, encode_json_string
from schemas.registry import record_fields
from schemas.timefmt import MAX_MS, MIN_MS, parse_ms

MAX_ID_LEN = 256
#: Control characters (U+0000-U+001F, U+007F-U+009F): no id may hold one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def unaddressable_id(v: str) -> bool:
    """True for an id a URL path cannot name (percent-encoded) and read back: one holding a
    control character, or exactly ``.`` or ``..`` (URL normalization removes such segments)."""
    if v.isascii() and v.isprintable():  # the common case, ~10x cheaper than the search
        return v == "." or v == ".."
    return _CONTROL.search(v) is not None


ID_FIELDS = frozenset({"event_id", "trace_id", "parent_id", "id", "app_id"})
SERVER_FIELDS = frozenset({"org_id"})


class ValidationError(ValueError):
    """One invalid field: ``field`` is a dotted path such as ``metadata.k``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


Check = Callable[[str, Any], Any]


def _unicode(name: str, v: str) -> str:
    """``v`` if it is valid Unicode: JSON's ``\\ud800`` escapes can make lone surrogates, which
    have no UTF-8 encoding."""
    if not v.isascii():
        try:
            v.encode()
        except UnicodeEncodeError as exc:
            raise ValidationError(name, f"not valid Unicode: lone surrogate at position {exc.start}") from None
    return v


def _string(name: str, v: Any) -> str:
    if v.__class__ is not str:
        raise ValidationError(name, f"expected a string, got {_kind(v)}")
    return _unicode(name, v)


def _id(name: str, v: Any) -> str:
    if v.__class__ is not str:
        raise ValidationError(name, f"expected a string, got {_kind(v)}")
    if not (0 < len(v) <= MAX_ID_LEN):
        raise ValidationError(name, f"must be 1 to {MAX_ID_LEN} characters")
    if unaddressable_id(v):
        raise ValidationError(name, "must not hold control characters or be . or ..")
    return _unicode(name, v)


def _long(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValidationError(name, f"expected an integer, got {_kind(v)}")
    if not -(2**63) <= v < 2**63:
        raise ValidationError(name, "integer out of range")
    return v


def _double(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValidationError(name, f"expected a finite number, got {_kind(v)}")
    try:
        v = float(v)
    except OverflowError:
        raise ValidationError(name, "number out of range") from None
    if not math.isfinite(v):
        raise ValidationError(name, f"expected a finite number, got {v}")
    return v


#: Largest cost (either sign) and token count one event may carry: sums over billions of events
#: stay finite (Float64) and exact (Int64), so no total a read returns can overflow.
MAX_COST = 1e12
MAX_TOKENS = 10**12


def _cost(name: str, v: Any) -> float:
    v = _double(name, v)
    if not -MAX_COST <= v <= MAX_COST:
        raise ValidationError(name, f"must be between -{MAX_COST:.0e} and {MAX_COST:.0e}")
    return v


def _tokens(name: str, v: Any) -> int:
    v = _long(name, v)
    if not 0 <= v <= MAX_TOKENS:
        raise ValidationError(name, f"must be between 0 and {MAX_TOKENS}")
    return v


#: Numeric fields that are summed by reads, and their bounded checks.
BOUNDED_FIELDS: dict[str, Check] = {"cost": _cost, "input_tokens": _tokens, "output_tokens": _tokens,
                                    "total_tokens": _tokens}


def _timestamp(name: str, v: Any) -> int:
    if isinstance(v, bool):
        raise ValidationError(name, "expected an ISO 8601 timestamp, got boolean")
    try:
        ms = v if isinstance(v, int) else parse_ms(v)
    except ValueError as exc:
        raise ValidationError(name, str(exc)) from None
    if not MIN_MS <= ms < MAX_MS:
        raise ValidationError(name, "timestamp outside 2000-01-01 .. 2100-01-01")
    return ms


def _json_text(name: str, v: Any) -> str:
    if v.__class__ is str:  # the common case: the same text canonical_json gives, much cheaper
        return _unicode(name, encode_json_string(v))
    try:
        text = canonical_json(v)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, f"not representable as JSON: {exc}") from None
    except RecursionError:
        raise ValidationError(name, "nested too deeply") from None
    return _unicode(name, text)


def _string_map(name: str, v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise ValidationError(name, f"expected an object of strings, got {_kind(v)}")
    for k, item in v.items():
        if not isinstance(item, str):
            raise ValidationError(f"{name}.{k}", f"expected a string value, got {_kind(item)}")
        _unicode(f"{name}.{k}", k)
        _unicode(f"{name}.{k}", item)
    return v


def _double_map(name: str, v: Any) -> dict[str, float]:
    if not isinstance(v, dict):
        raise ValidationError(name, f"expected an object of numbers, got {_kind(v)}")
    return {_unicode(f"{name}.{k}", k): _double(f"{name}.{k}", item) for k, item in v.items()}


def _string_array(name: str, v: Any) -> list[str]:
    if not isinstance(v, list):
        raise ValidationError(name, f"expected an array of strings, got {_kind(v)}")
    for i, item in enumerate(v):
        if not isinstance(item, str):
            raise ValidationError(f"{name}[{i}]", f"expected a string, got {_kind(item)}")
        _unicode(f"{name}[{i}]", item)
    return v


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "array", dict: "object"}.get(type(v), type(v).__name__)


def _check_for(field: dict[str, Any]) -> tuple[Check, bool]:
    """The check of one Avro field and whether null is allowed."""
    t = field["type"]
    nullable = isinstance(t, list) and "null" in t
    if nullable:
        t = next(x for x in t if x != "null")
    if field.get("tracehouse.json"):
        return _json_text, nullable
    if isinstance(t, dict):
        if t.get("logicalType") == "timestamp-millis":
            return _timestamp, nullable
        if t["type"] == "map":
            return (_double_map if t["values"] == "double" else _string_map), nullable
        if t["type"] == "array":
            return _string_array, nullable
    if t == "string" and field["name"] in ID_FIELDS:
        return _id, nullable
    if field["name"] in BOUNDED_FIELDS:
        return BOUNDED_FIELDS[field["name"]], nullable
    return {"string": _string, "long": _long, "double": _double}[t], nullable


@dataclass(frozen=True)
class RecordSpec:
    """How to validate one record type at the edge."""

    name: str
    checks: dict[str, tuple[Check, bool]]
    template: dict[str, Any]  # every field at its immutable default (None for the nullable ones)
    fresh: tuple[tuple[str, Callable[[], Any]], ...]  # defaults made anew for each datum
    required: frozenset[str]

    def validate(self, obj: Any, *, org_id: str, now: int) -> dict[str, Any]:
        """Validate one JSON object into an Avro datum; raise ValidationError."""
        if not isinstance(obj, dict):
            raise ValidationError("(event)", f"expected an object, got {_kind(obj)}")
        datum = self.template.copy()
        checks = self.checks
        for key, value in obj.items():
            spec = checks.get(key)
            if spec is None:
                raise ValidationError(key, "unknown field")
            if value is None:
                if not spec[1]:
                    raise ValidationError(key, "must not be null")
                datum[key] = None
            else:
                datum[key] = spec[0](key, value)
        missing = self.required - obj.keys()
        if missing:
            raise ValidationError(min(missing), "is required")
        for key, make in self.fresh:
            if key not in obj:
                datum[key] = make()
        datum["org_id"] = org_id
        if "occurred_at" not in obj:
            datum["occurred_at"] = now
        return datum


def _new_id() -> str:
    return str(uuid.uuid4())


#: Fields the server fills in when a body leaves them out: a fresh id, or (None) the request time.
SERVER_DEFAULTS: dict[str, Callable[[], str] | None] = {"event_id": _new_id, "id": _new_id, "occurred_at": None}


@cache
def spec(name: str) -> RecordSpec:
    """The edge spec of ``TraceEvent`` or ``AuditEvent``."""
    checks: dict[str, tuple[Check, bool]] = {}
    template: dict[str, Any] = {}
    fresh: list[tuple[str, Callable[[], Any]]] = []
    required: set[str] = set()
    for f in record_fields(name):
        fname = f["name"]
        template[fname] = None
        if fname in SERVER_FIELDS:
            continue
        checks[fname] = _check_for(f)
        if fname in SERVER_DEFAULTS:
            make = SERVER_DEFAULTS[fname]
            if make is not None:
                fresh.append((fname, make))
        elif "default" in f:
            d = f["default"]
            if isinstance(d, (dict, list)):
                fresh.append((fname, type(d)))
            else:
                template[fname] = d
        else:
            required.add(fname)
    return RecordSpec(name, checks, template, tuple(fresh), frozenset(required))


def validate_trace_event(obj: Any, *, org_id: str, now: int) -> dict[str, Any]:
    """A JSON trace event as a ``TraceEvent`` datum; raise ValidationError."""
    return spec("TraceEvent").validate(obj, org_id=org_id, now=now)


def validate_audit_event(obj: Any, *, org_id: str, now: int) -> dict[str, Any]:
    """A JSON audit event as an ``AuditEvent`` datum; raise ValidationError."""
    return spec("AuditEvent").validate(obj, org_id=org_id, now=now)
