"""RFC 8785 (JCS) text of a record read straight from its Avro binary: decode and canonicalize in one pass.

A chain agent hashes every event it reads (``schemas.integrity``), and forwards the Avro bytes
untouched. Decoding an event into a dict and then writing that dict's JCS text walks it twice
and builds a dict it never needs. ``jcs_reader`` generates, from a record schema, one function
that reads the record's Avro binary and writes each field's JCS text as it goes, with the member
order (field names plus a few extra members, sorted) fixed when it is generated.

The text is exactly ``schemas.jcs.canonicalize`` of the decoded datum plus the extra members
(``tests/unit/test_avro_jcs.py`` checks that on generated records). Bytes the decoder refuses
raise here too: ``IndexError`` (truncated), ``UnicodeDecodeError``, ``CorruptRecord`` (a bad union
index, a negative length); a number JSON cannot hold raises ``canonicalize``'s ValueError.

Supported: null, boolean, int, long, float, double, string, maps, arrays, records and unions of
these; ``bytes`` has no JSON text (``Unsupported``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

from schemas.compiled import HELPERS, CorruptRecord, Unsupported, _kind, read_long
from schemas.jcs import MAX_SAFE_INTEGER, _utf16, canonicalize, number


def _int(value: int) -> str:
    """An integer's JCS text; beyond what a double holds exactly, ``canonicalize``'s ValueError."""
    return str(value) if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else canonicalize(value)


def _object(items: dict[str, str]) -> str:
    """The JCS text of an object whose member values are already JCS text (a map read from Avro)."""
    if len(items) < 2:
        return "{" + "".join(encode_basestring(name) + ":" + text for name, text in items.items()) + "}"
    if "".join(items).isascii():
        names = sorted(items)
    else:
        names = sorted(items, key=_utf16)
    return "{" + ",".join(encode_basestring(name) + ":" + items[name] for name in names) + "}"


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    """A string's or a map key's length at ``pos``, and the position after it."""
    n, pos = read_long(data, pos)
    if n < 0:
        raise CorruptRecord("negative length")
    return n, pos


_HELPERS = dict(HELPERS, _read_length=_read_length, _esc=encode_basestring, _num=number, _int=_int, _object=_object)


@dataclass(frozen=True)
class JcsReader:
    """``read(data, pos) -> (pos, kept, parts)``: reads one record at ``pos``; ``kept`` holds the
    decoded values of the fields asked for, ``parts`` the record's JCS text in pieces, with gaps
    for the extra members' values; ``text(parts, *extra_texts)`` fills the gaps with those values'
    JCS text (``schemas.jcs.canonicalize``) and joins the pieces (once: it fills ``parts`` in)."""

    read: Callable[[bytes, int], tuple[int, tuple[Any, ...], list[str | None]]]
    text: Callable[..., str]
    source: str  # the generated module, kept for reading and debugging


class _Gen:
    """Emits the lines of the generated functions (nested records first)."""

    def __init__(self) -> None:
        self.functions: dict[str, str] = {}
        self.counter = 0

    def var(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def long(self, target: str, ind: str) -> list[str]:
        return [f"{ind}{target} = data[pos]",
                f"{ind}if {target} < 0x80:",
                f"{ind}    {target} = ({target} >> 1) ^ -({target} & 1)",
                f"{ind}    pos += 1",
                f"{ind}else:",
                f"{ind}    {target}, pos = _read_long(data, pos)"]

    def length(self, target: str, ind: str) -> list[str]:
        """A string's length: one byte for the lengths below 64 that most are."""
        return [f"{ind}{target} = data[pos]",
                f"{ind}if {target} < 0x80 and not {target} & 1:",
                f"{ind}    {target} >>= 1",
                f"{ind}    pos += 1",
                f"{ind}else:",
                f"{ind}    {target}, pos = _read_length(data, pos)"]

    def string(self, target: str, ind: str, value: str | None) -> list[str]:
        """Lines reading a string into ``value`` (if given) and its JCS text into ``target``."""
        n = self.var("n")
        read = f"data[pos:pos + {n}].decode()"
        text = [f"{ind}{value} = {read}", f"{ind}{target} = _esc({value})"] if value else [
            f"{ind}{target} = _esc({read})"]
        return [*self.length(n, ind), *text, f"{ind}pos += {n}"]

    def text(self, t: Any, target: str, ind: str, value: str | None = None) -> list[str]:
        """Lines reading a value of Avro type ``t`` at ``pos`` and putting its JCS text in ``target``
        (and, if ``value`` names a local, the decoded value in it)."""
        kind = _kind(t)
        v = value or self.var("x")
        if kind == "null":
            return [f"{ind}{target} = 'null'", *([f"{ind}{value} = None"] if value else [])]
        if kind == "boolean":
            return [f"{ind}{v} = data[pos] == 1", f"{ind}pos += 1", f"{ind}{target} = 'true' if {v} else 'false'"]
        if kind in ("int", "long"):
            return [*self.long(v, ind),
                    f"{ind}{target} = str({v}) if {-MAX_SAFE_INTEGER} <= {v} <= {MAX_SAFE_INTEGER} else _int({v})"]
        if kind in ("float", "double"):
            size, unpack = (4, "_unpack_f") if kind == "float" else (8, "_unpack_d")
            return [f"{ind}{v} = {unpack}(data, pos)[0]", f"{ind}pos += {size}", f"{ind}{target} = _num({v})"]
        if kind == "string":
            return self.string(target, ind, value)
        if kind == "record":
            if value is not None:
                raise Unsupported("a record field's decoded value cannot be kept")
            name = self.record(t)
            return [f"{ind}{target}, pos = jcs_{name}(data, pos)"]
        if kind in ("array", "map"):
            if value is not None:
                raise Unsupported(f"a {kind} field's decoded value cannot be kept")
            return self.collection(t, kind, target, ind)
        if kind == "union":
            if len(t) == 2 and _kind(t[0]) == "null":  # an optional field: its null costs one test
                lines = [f"{ind}if data[pos]:",
                         f"{ind}    if data[pos] != 2: raise CorruptRecord('union index out of range')",
                         f"{ind}    pos += 1",
                         *self.text(t[1], target, ind + "    ", value),
                         f"{ind}else:",
                         f"{ind}    pos += 1",
                         f"{ind}    {target} = 'null'"]
                return lines + ([f"{ind}    {value} = None"] if value else [])
            index = self.var("t")
            lines = [f"{ind}{index} = data[pos]", f"{ind}pos += 1"]
            for i, branch in enumerate(t):
                lines.append(f"{ind}{'if' if i == 0 else 'elif'} {index} == {2 * i}:")
                lines += self.text(branch, target, ind + "    ", value)
            lines.append(f"{ind}else: raise CorruptRecord('union index out of range')")
            return lines
        raise Unsupported(f"{kind} has no JSON text")

    def collection(self, t: dict[str, Any], kind: str, target: str, ind: str) -> list[str]:
        count, item, key, items = self.var("c"), self.var("j"), self.var("k"), self.var("a")
        inner = ind + "            "
        size = self.var("n")
        read_key = [*self.length(size, inner), f"{inner}{key} = data[pos:pos + {size}].decode()",
                    f"{inner}pos += {size}"] if kind == "map" else []
        add = f"{items}.append({item})" if kind == "array" else f"{items}[{key}] = {item}"
        join = f"'[' + ','.join({items}) + ']'" if kind == "array" else f"_object({items})"
        return [*self.long(count, ind),
                f"{ind}if {count}:",
                f"{ind}    {items} = {'[]' if kind == 'array' else '{}'}",
                f"{ind}    while {count}:",
                f"{ind}        if {count} < 0:",
                f"{ind}            {count} = -{count}",
                f"{ind}            _, pos = _read_long(data, pos)",
                f"{ind}        for _ in range({count}):",
                *read_key,
                *self.text(t["items"] if kind == "array" else t["values"], item, inner),
                f"{inner}{add}",
                *self.long(count, ind + "        "),
                f"{ind}    {target} = {join}",
                f"{ind}else:",
                f"{ind}    {target} = {'[]' if kind == 'array' else '{}'!r}"]

    def record(self, t: dict[str, Any]) -> str:
        """A nested record: ``jcs_<name>(data, pos) -> (text, pos)``."""
        name = t["name"].replace(".", "_")
        if name not in self.functions:
            self.functions[name] = ""  # reserve: recursive schemas are not supported
            texts = {f["name"]: self.var("m") for f in t["fields"]}
            lines = [f"def jcs_{name}(data, pos):"]
            for f in t["fields"]:
                lines += self.text(f["type"], texts[f["name"]], "    ")
            members = [f"{encode_basestring(n)!r} + ':' + {texts[n]}" for n in sorted(texts)]
            body = "'{' + ','.join((" + ", ".join(members) + ",)) + '}'" if members else "'{}'"
            lines.append(f"    return {body}, pos")
            self.functions[name] = "\n".join(lines) + "\n"
        return name


def jcs_reader(record_schema: dict[str, Any], extra: tuple[str, ...], kept: tuple[str, ...] = (),
               omitted: tuple[str, ...] = ()) -> JcsReader:
    """Generate the ``JcsReader`` of a record schema (a parsed .avsc dict, logical types stripped):
    its JCS text has the record's fields plus the members ``extra`` (their values given to
    ``text``, in that order); ``kept`` names the fields whose decoded values ``read`` also returns;
    the fields ``omitted`` are left out of the text when null (not the first member)."""
    if _kind(record_schema) != "record":
        raise Unsupported("only record schemas are read")
    fields = record_schema["fields"]
    names = [f["name"] for f in fields]
    if set(extra) & set(names) or not all(n.isascii() for n in [*names, *extra]):
        raise ValueError("extra members must be new ASCII names")
    gen = _Gen()
    texts = {n: gen.var("m") for n in names}
    values = {n: gen.var("v") for n in kept}
    members = sorted([*names, *extra])
    if not set(omitted) <= set(names) or members[0] in omitted:
        raise ValueError("omitted members must be fields, and not the first member")
    lines = ["def read(data, pos):"]
    for f in fields:
        name = f["name"]
        lines += gen.text(f["type"], texts[name], "    ", values.get(name))
        if name in omitted:  # its member whole (",name:value"), or nothing when null
            member = repr("," + encode_basestring(name) + ":")
            lines.append(f"    {texts[name]} = '' if {texts[name]} == 'null' else {member} + {texts[name]}")
    # the members in JCS order (ASCII names: code-point order is UTF-16 order), as one list of
    # pieces to join; the extra members' values are left None, for ``text`` to fill in
    pieces: list[str] = []
    slots: dict[str, int] = {}
    for i, name in enumerate(members):
        if name not in omitted:
            pieces.append(repr(("{" if i == 0 else ",") + encode_basestring(name) + ":"))
        if name in extra:
            slots[name] = len(pieces)
        pieces.append("None" if name in extra else texts[name])
    pieces.append("'}'")
    lines.append(f"    return pos, ({''.join(v + ', ' for v in values.values())}), [{', '.join(pieces)}]")
    args = [f"e{i}" for i in range(len(extra))]
    fill = "".join(f"    parts[{slots[name]}] = {arg}\n" for name, arg in zip(extra, args, strict=True))
    source = "\n".join(gen.functions.values()) + "\n" + "\n".join(lines) + f"""


def text(parts, {", ".join(args)}):
{fill}    return ''.join(parts)
"""
    namespace = dict(_HELPERS)
    exec(compile(source, f"<jcs reader {record_schema['name']}>", "exec"), namespace)  # noqa: S102 - from a schema
    return JcsReader(namespace["read"], namespace["text"], source)
