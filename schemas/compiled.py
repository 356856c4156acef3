"""Avro binary encoders and decoders compiled from a schema into straight-line Python.

fastavro interprets the schema for every datum; for our 43-field events that costs
~33 µs to encode and ~25 µs to decode one event. Generating one function per record
schema, with every field's read or write spelled out, makes both several times
cheaper. The bytes are exactly fastavro's (``tests/unit/test_compiled_codec.py``
checks that on random datums), and fastavro stays the reference and the fallback:
``compile_codec`` raises ``Unsupported`` for a schema it cannot compile.

Supported: null, boolean, int, long, float, double, string, bytes, records,
arrays, maps and unions (of any of these).
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "string", "bytes")


class Unsupported(ValueError):
    """The schema uses a type this compiler does not handle (use fastavro)."""


class CorruptRecord(ValueError):
    """The bytes are not a valid encoding of the schema."""


class NotEncodable(ValueError):
    """The datum does not fit the schema (a missing field or a value of the wrong type)."""


def zigzag(n: int) -> bytes:
    """Avro's variable-length zig-zag encoding of a long."""
    z = (n << 1) ^ (n >> 63)
    if 1 << 35 <= z < 1 << 42:  # six bytes, unrolled: epoch milliseconds from 2001 to 2039
        return bytes((z & 0x7F | 0x80, z >> 7 & 0x7F | 0x80, z >> 14 & 0x7F | 0x80,
                      z >> 21 & 0x7F | 0x80, z >> 28 & 0x7F | 0x80, z >> 35))
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_SMALL = 4096
_LONGS = tuple(zigzag(i) for i in range(-_SMALL, _SMALL))


def long_bytes(n: int) -> bytes:
    """``zigzag(n)``, from a table for the small values that lengths and counts mostly are."""
    if -_SMALL <= n < _SMALL:
        return _LONGS[n + _SMALL]
    if not -(2**63) <= n < 2**63:
        raise OverflowError(f"{n} does not fit an Avro long")
    return zigzag(n)


def boolean_bytes(value: bool) -> bytes:
    """Avro ``boolean``: one byte."""
    return b"\x01" if value else b"\x00"


def bytes_array(items: list[bytes]) -> bytes:
    """Avro ``array<bytes>``: one block holding every item (none for an empty array), then
    the end marker."""
    if not items:
        return b"\x00"
    out = bytearray(long_bytes(len(items)))
    for item in items:
        out += long_bytes(len(item))
        out += item
    out += b"\x00"
    return bytes(out)


def long_array(items: list[int]) -> bytes:
    """Avro ``array<long>``: one block holding every item (none for an empty array), then
    the end marker."""
    if not items:
        return b"\x00"
    return long_bytes(len(items)) + b"".join(long_bytes(i) for i in items) + b"\x00"


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a zig-zag varint at ``pos``; return (value, next position)."""
    shift = 0
    z = 0
    while True:
        b = data[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7
        if shift > 63:
            raise CorruptRecord("varint longer than 10 bytes")


_D = struct.Struct("<d")
_F = struct.Struct("<f")

HELPERS: dict[str, Any] = {
    "_long": long_bytes,
    "_LENS": _LONGS[_SMALL:],
    "_read_long": read_long,
    "_pack_d": _D.pack,
    "_unpack_d": _D.unpack_from,
    "_pack_f": _F.pack,
    "_unpack_f": _F.unpack_from,
    "CorruptRecord": CorruptRecord,
    "NotEncodable": NotEncodable,
}


@dataclass(frozen=True)
class Codec:
    """``encode(datum) -> bytes`` and ``decode(bytes) -> datum`` for one schema."""

    encode: Callable[[dict[str, Any]], bytes]
    decode: Callable[[bytes], dict[str, Any]]
    source: str  # the generated module, kept for reading and debugging


class _Gen:
    """Emits the source of one function per named record, depth first."""

    def __init__(self) -> None:
        self.functions: dict[str, str] = {}
        self.getters: dict[str, Any] = {}
        self.counter = 0

    def var(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    # -- encoding ---------------------------------------------------------------------
    def enc(self, t: Any, expr: str, ind: str) -> list[str]:
        """Lines appending the encoding of ``expr`` (of Avro type ``t``) to ``out``."""
        kind = _kind(t)
        if kind == "null":
            return [f"{ind}if {expr} is not None: raise TypeError('expected null')"]
        if kind == "boolean":
            return [f"{ind}out += b'\\x01' if {expr} else b'\\x00'"]
        if kind in ("int", "long"):
            return [f"{ind}out += _long({expr}.__index__())"]
        if kind == "double":
            return [f"{ind}out += _pack_d({expr})"]
        if kind == "float":
            return [f"{ind}out += _pack_f({expr})"]
        if kind in ("string", "bytes"):
            b = self.var("b")
            conv = f"{expr}.encode()" if kind == "string" else f"bytes({expr})"
            n = self.var("n")
            return [f"{ind}{b} = {conv}", f"{ind}{n} = len({b})",
                    f"{ind}out += _LENS[{n}] if {n} < {_SMALL} else _long({n})", f"{ind}out += {b}"]
        if kind == "record":
            name = self.record(t)
            return [f"{ind}enc_{name}({expr}, out)"]
        if kind == "array":
            item = self.var("i")
            seq = self.var("s")
            return [f"{ind}{seq} = {expr}",
                    f"{ind}if len({seq}):",
                    f"{ind}    out += _long(len({seq}))",
                    f"{ind}    for {item} in {seq}:",
                    *self.enc(t["items"], item, ind + "        "),
                    f"{ind}out += b'\\x00'"]
        if kind == "map":
            k, v, m = self.var("k"), self.var("v"), self.var("m")
            return [f"{ind}{m} = {expr}",
                    f"{ind}if len({m}):",
                    f"{ind}    out += _long(len({m}))",
                    f"{ind}    for {k}, {v} in {m}.items():",
                    *self.enc("string", k, ind + "        "),
                    *self.enc(t["values"], v, ind + "        "),
                    f"{ind}out += b'\\x00'"]
        if kind == "union":
            return self.enc_union(t, expr, ind)
        raise Unsupported(f"cannot compile Avro type {t!r}")

    def enc_union(self, branches: list[Any], expr: str, ind: str) -> list[str]:
        v = self.var("u")
        lines = [f"{ind}{v} = {expr}"]
        kinds = [_kind(b) for b in branches]
        if len(set(kinds)) != len(kinds) or "union" in kinds:
            raise Unsupported(f"ambiguous union {branches!r}")
        first = True
        for index, (branch, kind) in enumerate(zip(branches, kinds, strict=True)):
            test = _PY_TEST.get(kind)
            if test is None:
                raise Unsupported(f"union branch {branch!r}")
            kw = "if" if first else "elif"
            first = False
            lines.append(f"{ind}{kw} {test.format(v=v)}:")
            lines.append(f"{ind}    out += {zigzag(index)!r}")
            if kind != "null":
                lines += self.enc(branch, v, ind + "    ")
        expected = "/".join(kinds)
        lines.append(f"{ind}else: raise TypeError(f'expected {expected}, got {{type({v}).__name__}}')")
        return lines

    # -- decoding ---------------------------------------------------------------------
    def dec(self, t: Any, target: str, ind: str) -> list[str]:
        """Lines decoding a value of Avro type ``t`` at ``pos`` into the local ``target``."""
        kind = _kind(t)
        if kind == "null":
            return [f"{ind}{target} = None"]
        if kind == "boolean":
            return [f"{ind}{target} = data[pos] == 1", f"{ind}pos += 1"]
        if kind in ("int", "long"):
            return [f"{ind}{target} = data[pos]",
                    f"{ind}if {target} < 0x80:",
                    f"{ind}    {target} = ({target} >> 1) ^ -({target} & 1)",
                    f"{ind}    pos += 1",
                    f"{ind}else:",
                    f"{ind}    {target}, pos = _read_long(data, pos)"]
        if kind == "double":
            return [f"{ind}{target} = _unpack_d(data, pos)[0]", f"{ind}pos += 8"]
        if kind == "float":
            return [f"{ind}{target} = _unpack_f(data, pos)[0]", f"{ind}pos += 4"]
        if kind in ("string", "bytes"):
            n = self.var("n")
            conv = ".decode()" if kind == "string" else ""
            return [*self.dec("long", n, ind),
                    f"{ind}if {n} < 0: raise CorruptRecord('negative length')",
                    f"{ind}{target} = data[pos:pos + {n}]{conv}",
                    f"{ind}pos += {n}"]
        if kind == "record":
            name = self.record(t)
            return [f"{ind}{target}, pos = dec_{name}(data, pos)"]
        if kind in ("array", "map"):
            count, item, key = self.var("c"), self.var("x"), self.var("k")
            add = f"{target}.append({item})" if kind == "array" else f"{target}[{key}] = {item}"
            inner = ind + "        "
            read_item = self.dec(t["items"] if kind == "array" else t["values"], item, inner)
            read_key = self.dec("string", key, inner) if kind == "map" else []
            return [f"{ind}{target} = {'[]' if kind == 'array' else '{}'}",
                    *self.dec("long", count, ind),
                    f"{ind}while {count}:",
                    f"{ind}    if {count} < 0:",
                    f"{ind}        {count} = -{count}",
                    f"{ind}        _, pos = _read_long(data, pos)",
                    f"{ind}    for _ in range({count}):",
                    *read_key, *read_item,
                    f"{inner}{add}",
                    *self.dec("long", count, ind + "    ")]
        if kind == "union":
            index = self.var("t")
            lines = [f"{ind}{index} = data[pos]", f"{ind}pos += 1"]
            for i, branch in enumerate(t):
                kw = "if" if i == 0 else "elif"
                lines.append(f"{ind}{kw} {index} == {2 * i}:")
                lines += self.dec(branch, target, ind + "    ")
            lines.append(f"{ind}else: raise CorruptRecord('union index out of range')")
            return lines
        raise Unsupported(f"cannot compile Avro type {t!r}")

    # -- records ----------------------------------------------------------------------
    def record(self, t: dict[str, Any]) -> str:
        name = t["name"].replace(".", "_")
        if name in self.functions:
            return name
        self.functions[name] = ""  # reserve: recursive schemas are not supported
        fields = t["fields"]
        values = [self.var("v") for _ in fields]
        getter = f"_get_{name}"
        self.getters[getter] = operator.itemgetter(*[f["name"] for f in fields]) if fields else None
        enc = [f"def enc_{name}(d, out):"]
        if len(fields) > 1:  # one C call fetches every field; datums missing one take defaults
            enc += ["    try:",
                    f"        {', '.join(values)} = {getter}(d)",
                    "    except KeyError:",
                    *[f"        {v} = {_field_expr(f)}" for v, f in zip(values, fields, strict=True)]]
        elif fields:
            enc.append(f"    {values[0]} = {_field_expr(fields[0])}")
        dec = [f"def dec_{name}(data, pos):"]
        locals_: list[tuple[str, str]] = []
        for f, value in zip(fields, values, strict=True):
            enc += self.enc(f["type"], value, "    ")
            local = self.var("f")
            dec += self.dec(f["type"], local, "    ")
            locals_.append((f["name"], local))
        if len(enc) == 1:
            enc.append("    pass")
        fields = ", ".join(f"{k!r}: {v}" for k, v in locals_)
        dec.append(f"    return {{{fields}}}, pos")
        self.functions[name] = "\n".join(enc) + "\n\n" + "\n".join(dec) + "\n"
        return name


_PY_TEST = {
    "null": "{v} is None",
    "boolean": "{v}.__class__ is bool",
    "int": "{v}.__class__ is int",
    "long": "{v}.__class__ is int",
    "double": "{v}.__class__ is float or {v}.__class__ is int",
    "float": "{v}.__class__ is float or {v}.__class__ is int",
    "string": "{v}.__class__ is str",
    "bytes": "isinstance({v}, (bytes, bytearray, memoryview))",
    "record": "isinstance({v}, dict)",
    "map": "isinstance({v}, dict)",
    "array": "isinstance({v}, (list, tuple))",
}


def _field_expr(f: dict[str, Any]) -> str:
    """The field's value in datum ``d``: required fields must be there, others default."""
    return f"d[{f['name']!r}]" if "default" not in f else f"d.get({f['name']!r}, {f['default']!r})"


def _kind(t: Any) -> str:
    if isinstance(t, list):
        return "union"
    if isinstance(t, dict):
        kind = t["type"]
        if kind in ("record", "array", "map"):
            return kind
        if kind in PRIMITIVES:  # {"type": "long", "logicalType": ...}: the wire type
            return kind
        raise Unsupported(f"cannot compile Avro type {kind!r}")
    if t in PRIMITIVES:
        return t
    raise Unsupported(f"named type references ({t!r}) are not supported")


def compile_codec(record_schema: dict[str, Any]) -> Codec:
    """Compile encode/decode functions for a record schema (a plain .avsc dict)."""
    if _kind(record_schema) != "record":
        raise Unsupported("only record schemas are compiled")
    gen = _Gen()
    top = gen.record(record_schema)
    source = "\n".join(gen.functions.values()) + f"""

def encode(d):
    out = bytearray()
    try:
        enc_{top}(d, out)
    except (KeyError, TypeError, AttributeError, OverflowError, struct_error) as exc:
        raise NotEncodable(f"{{type(exc).__name__}}: {{exc}}") from None
    return bytes(out)


def decode(data):
    try:
        d, pos = dec_{top}(data, 0)
    except (IndexError, UnicodeDecodeError, struct_error) as exc:
        raise CorruptRecord(f"truncated or corrupt record: {{exc}}") from None
    if pos != len(data):
        raise CorruptRecord(f"{{len(data) - pos}} bytes left after the record")
    return d
"""
    namespace = dict(HELPERS, struct_error=struct.error, **gen.getters)
    exec(compile(source, f"<avro codec {record_schema['name']}>", "exec"), namespace)  # noqa: S102
    return Codec(namespace["encode"], namespace["decode"], source)
