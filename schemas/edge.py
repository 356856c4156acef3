"""The ingest edge's fast path: a JSON object to the Avro bytes of a valid event, in one pass.

At the HTTP edge every event used to be walked twice: ``schemas.model`` validated the JSON
object into a datum dict, then the compiled codec (``schemas.compiled``) encoded the datum.
``edge_encoder(name)`` generates one function per event schema that checks and encodes each
field in the same step, with no datum in between (about a third of the CPU per event).

It is a fast path, not a second set of rules. It accepts only values that
``RecordSpec.validate`` accepts, and they encode to the same bytes; on anything else (a
wrong type, a null where none is allowed, an unknown or missing field, a bad timestamp,
text that is not valid Unicode) it raises ``Declined`` and the caller runs ``validate``,
whose ValidationError names the field. ``tests/unit/test_edge.py`` holds both paths to the
same bytes and the same verdicts on random objects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

from schemas.canonical import canonical_json, encode_json_string
from schemas.compiled import _SMALL, HELPERS, zigzag
from schemas.model import (
    MAX_COST,
    MAX_ID_LEN,
    MAX_TOKENS,
    SERVER_DEFAULTS,
    SERVER_FIELDS,
    _cost,
    _double,
    _double_map,
    _id,
    _json_text,
    _long,
    _string,
    _string_array,
    _string_map,
    _timestamp,
    _tokens,
    spec,
    unaddressable_id,
)
from schemas.registry import record_fields, schema
from schemas.timefmt import MAX_MS, MIN_MS, parse_ms


class Declined(Exception):  # noqa: N818 - it is an outcome, not an error
    """The fast path does not decide this object: validate it the general way."""


#: (object, org_id, now) -> (the event's Avro bytes, its id, its trace_id or None)
EdgeEncode = Callable[[Any, str, int], tuple[bytes, str, str | None]]


def _enc_str(v: str, ind: str) -> list[str]:
    return [f"{ind}b = {v}.encode()", f"{ind}n = len(b)",
            f"{ind}out += _LENS[n] if n < {_SMALL} else _long(n)", f"{ind}out += b"]


def _enc_double(v: str, ind: str) -> list[str]:
    return [f"{ind}if {v}.__class__ is float:",
            f"{ind}    if not _isfinite({v}): raise Declined",
            f"{ind}elif {v}.__class__ is int: {v} = float({v})",
            f"{ind}else: raise Declined",
            f"{ind}out += _pack_d({v})"]


def _check_and_encode(check: Callable[..., Any], v: str, ind: str) -> list[str]:
    """Lines that check ``v`` as ``check`` does and append its encoding, or raise Declined."""
    if check is _id:
        return [f"{ind}if {v}.__class__ is not str or not 0 < len({v}) <= {MAX_ID_LEN}: raise Declined",
                f"{ind}if _unaddressable({v}): raise Declined",
                *_enc_str(v, ind)]
    if check is _string:
        return [f"{ind}if {v}.__class__ is not str: raise Declined", *_enc_str(v, ind)]
    if check is _json_text:
        return [f"{ind}{v} = _json_str({v}) if {v}.__class__ is str else _canonical({v})", *_enc_str(v, ind)]
    if check is _long:
        return [f"{ind}if {v}.__class__ is not int or not {-(2**63)} <= {v} < {2**63}: raise Declined",
                f"{ind}out += _long({v})"]
    if check is _double:
        return _enc_double(v, ind)
    if check is _cost:
        return [f"{ind}if {v}.__class__ is int and {-MAX_COST!r} <= {v} <= {MAX_COST!r}: {v} = float({v})",
                f"{ind}if {v}.__class__ is not float or not {-MAX_COST!r} <= {v} <= {MAX_COST!r}: raise Declined",
                f"{ind}out += _pack_d({v})"]
    if check is _tokens:
        return [f"{ind}if {v}.__class__ is not int or not 0 <= {v} <= {MAX_TOKENS}: raise Declined",
                f"{ind}out += _long({v})"]
    if check is _timestamp:
        return [f"{ind}if {v}.__class__ is str: {v} = _parse_ms({v})",
                f"{ind}elif {v}.__class__ is not int: raise Declined",
                f"{ind}if not {MIN_MS} <= {v} < {MAX_MS}: raise Declined",
                f"{ind}out += _long({v})"]
    if check in (_string_map, _double_map, _string_array):
        container, items = ("list", f"for item in {v}:") if check is _string_array else \
            ("dict", f"for key, item in {v}.items():")
        each = [f"{ind}        if key.__class__ is not str: raise Declined", *_enc_str("key", ind + "        ")] \
            if container == "dict" else []
        value = _enc_double("item", ind + "        ") if check is _double_map else \
            [f"{ind}        if item.__class__ is not str: raise Declined", *_enc_str("item", ind + "        ")]
        return [f"{ind}if {v}.__class__ is not {container}: raise Declined",
                f"{ind}if {v}:",
                f"{ind}    out += _long(len({v}))",
                f"{ind}    {items}",
                *each, *value,
                f"{ind}out += b'\\x00'"]
    raise AssertionError(f"no fast path for {check.__name__}")  # a new check needs its lines here


def _server_default(fname: str) -> str:
    """The expression of a server-side default (``schemas.model.SERVER_DEFAULTS``)."""
    return "now" if SERVER_DEFAULTS[fname] is None else f"_SERVER_DEFAULTS[{fname!r}]()"


def _union_bytes(avro_type: Any) -> tuple[bytes, bytes]:
    """(null branch, value branch) index bytes of a nullable field's union."""
    null_index = avro_type.index("null")
    return zigzag(null_index), zigzag(1 - null_index)


#: Shapes (ordered key tuples) compiled per schema; objects of other shapes take the generic function.
MAX_SHAPES = 256


class EdgeEncoder:
    """The fast path for one event schema.

    The events of one producer nearly always carry the same fields in the same order, so
    the function is generated per *shape* (the object's key tuple): fields the shape lacks
    become constant bytes (a null, a default) and the rest are read without a lookup that
    may miss. Shapes beyond ``MAX_SHAPES`` share a generic function that looks every field up.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._rules = spec(name)
        self._fields = record_fields(name)
        self._id_field = "event_id" if name == "TraceEvent" else "id"
        self._key_field = "trace_id" if any(f["name"] == "trace_id" for f in self._fields) else None
        self._namespace = dict(HELPERS, Declined=Declined, _MISSING=object(), _KNOWN=frozenset(self._rules.checks),
                               _SERVER_DEFAULTS=SERVER_DEFAULTS, _unaddressable=unaddressable_id,
                               _isfinite=math.isfinite, _parse_ms=parse_ms,
                               _json_str=encode_json_string, _canonical=canonical_json)
        self._encode_datum = schema(name).codec.encode
        #: the bytes of each field with a default, for shapes that leave it out
        self._defaults = {f["name"]: self._default_bytes(f) for f in self._fields
                          if "default" in f and f["name"] not in SERVER_DEFAULTS}
        self._generic = self._compile(None)
        self._shapes: dict[tuple[str, ...], EdgeEncode] = {}

    def encode(self, obj: Any, org_id: str, now: int) -> tuple[bytes, str, str | None]:
        """(the event's Avro bytes, its id, its trace_id or None); Declined when undecided."""
        if obj.__class__ is not dict:
            raise Declined
        shape = tuple(obj)
        function = self._shapes.get(shape)
        if function is None:
            if len(self._shapes) < MAX_SHAPES:
                function = self._shapes[shape] = self._compile(shape)
            else:
                function = self._generic
        try:
            return function(obj, org_id, now)
        except (ValueError, TypeError, AttributeError, OverflowError, RecursionError):
            raise Declined from None

    def encode_datum(self, datum: dict[str, Any]) -> tuple[bytes, str, str | None]:
        """What ``encode`` returns, for a datum ``RecordSpec.validate`` made of a declined object."""
        return (self._encode_datum(datum), datum[self._id_field],
                datum[self._key_field] if self._key_field else None)

    def source(self, shape: tuple[str, ...] | None) -> str:
        """The generated function for objects with exactly the keys ``shape`` (None: any keys)."""
        known = self._rules.checks
        if shape is not None and not set(shape) <= known.keys():
            return "def edge(obj, org_id, now):\n    raise Declined  # an unknown field\n"
        lines = ["def edge(obj, org_id, now):"]
        if shape is None:
            lines.append("    if not obj.keys() <= _KNOWN: raise Declined")
        lines.append("    out = bytearray()")
        constant = b""  # bytes of absent fields not yet appended: one append per run of them
        names: dict[str, str] = {}
        for index, f in enumerate(self._fields):
            fname = f["name"]
            v = names[fname] = f"v{index}"
            if fname in SERVER_FIELDS:  # org_id: from the caller's key
                field_lines = [f"    {v} = org_id", *_enc_str(v, "    ")]
            elif shape is not None and fname not in shape and fname not in SERVER_DEFAULTS:
                if "default" not in f:
                    return "def edge(obj, org_id, now):\n    raise Declined  # a required field is missing\n"
                constant += self._defaults[fname]
                continue
            else:
                state = "maybe" if shape is None else "present" if fname in shape else "absent"
                field_lines = self._field_lines(f, v, state)
            if constant:
                lines.append(f"    out += {constant!r}")
                constant = b""
            lines += field_lines
        if constant:
            lines.append(f"    out += {constant!r}")
        key = names[self._key_field] if self._key_field else "None"
        lines.append(f"    return bytes(out), {names[self._id_field]}, {key}")
        return "\n".join(lines) + "\n"

    def _field_lines(self, f: dict[str, Any], v: str, state: str) -> list[str]:
        """Read, check and encode one field that is ``present`` in the object, ``absent`` from
        it (a server default: a fresh id, the request time) or ``maybe`` (the generic function)."""
        fname = f["name"]
        check, nullable = self._rules.checks[fname]
        if state == "present":
            lines = [f"    {v} = obj[{fname!r}]"]
        elif state == "absent":
            lines = [f"    {v} = {_server_default(fname)}"]
        elif fname in SERVER_DEFAULTS or ("default" in f and f["default"] is not None):
            default = _server_default(fname) if fname in SERVER_DEFAULTS else repr(f["default"])
            lines = [f"    {v} = obj.get({fname!r}, _MISSING)", f"    if {v} is _MISSING: {v} = {default}"]
        else:  # missing reads as null: encoded as null, or declined below
            lines = [f"    {v} = obj.get({fname!r})"]
        if not nullable:
            return [*lines, f"    if {v} is None: raise Declined", *_check_and_encode(check, v, "    ")]
        null, value = _union_bytes(f["type"])
        return [*lines,
                f"    if {v} is None: out += {null!r}",
                "    else:",
                f"        out += {value!r}",
                *_check_and_encode(check, v, "        ")]

    def _default_bytes(self, f: dict[str, Any]) -> bytes:
        """The encoding of an absent field's default, by the same generated lines."""
        if f["default"] is None:
            return _union_bytes(f["type"])[0]
        check, _ = self._rules.checks[f["name"]]
        namespace = dict(self._namespace)
        body = ["def one(v):", "    out = bytearray()", *_check_and_encode(check, "v", "    "), "    return bytes(out)"]
        exec("\n".join(body), namespace)  # noqa: S102
        return namespace["one"](f["default"])

    def _compile(self, shape: tuple[str, ...] | None) -> EdgeEncode:
        namespace = dict(self._namespace)
        exec(compile(self.source(shape), f"<edge encoder {self.name}>", "exec"), namespace)  # noqa: S102
        return namespace["edge"]


@cache
def edge_encoder(name: str) -> EdgeEncoder:
    """The fast path of ``TraceEvent`` or ``AuditEvent`` (see the module docstring)."""
    return EdgeEncoder(name)
