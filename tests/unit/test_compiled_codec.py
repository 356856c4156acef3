"""The compiled codec writes exactly fastavro's bytes and reads them back, for every schema."""

import io
import random
import string

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.compiled import CorruptRecord, NotEncodable, compile_codec
from schemas.registry import NAMES, schema

EVERY_TYPE = {
    "type": "record", "name": "Every", "fields": [
        {"name": "b", "type": "boolean"}, {"name": "i", "type": "int"}, {"name": "l", "type": "long"},
        {"name": "f", "type": "float"}, {"name": "d", "type": "double"}, {"name": "s", "type": "string"},
        {"name": "raw", "type": "bytes"}, {"name": "n", "type": "null"},
        {"name": "u", "type": ["null", "string", "long", "double", "boolean"]},
        {"name": "tail_null", "type": ["string", "null"]},
        {"name": "nested", "type": {"type": "record", "name": "Inner", "fields": [
            {"name": "xs", "type": {"type": "array", "items": "long"}},
            {"name": "m", "type": {"type": "map", "values": ["null", "double"]}}]}},
        {"name": "with_default", "type": ["null", "string"], "default": None},
    ]}


def random_value(t, rnd: random.Random):
    if isinstance(t, list):
        return random_value(rnd.choice(t), rnd)
    kind = t["type"] if isinstance(t, dict) else t
    if kind == "record":
        return {f["name"]: random_value(f["type"], rnd) for f in t["fields"]}
    if kind == "array":
        return [random_value(t["items"], rnd) for _ in range(rnd.choice([0, 1, 3, 12]))]
    if kind == "map":
        return {random_text(rnd): random_value(t["values"], rnd) for _ in range(rnd.choice([0, 1, 5]))}
    return {
        "null": lambda: None, "boolean": lambda: rnd.random() < 0.5,
        "int": lambda: rnd.randint(-(2**31), 2**31 - 1),
        "long": lambda: rnd.choice([0, -1, 63, 64, -65, 2**63 - 1, -(2**63), rnd.randint(-(10**12), 10**12)]),
        "float": lambda: float(rnd.randint(-1000, 1000)) / 4, "double": lambda: rnd.uniform(-1e9, 1e9),
        "string": lambda: random_text(rnd), "bytes": lambda: rnd.randbytes(rnd.choice([0, 5, 300])),
    }[kind]()


def random_text(rnd: random.Random) -> str:
    alphabet = string.ascii_letters + "äöü✓🙂\u0000\n\"'"
    return "".join(rnd.choices(alphabet, k=rnd.choice([0, 1, 10, 200, 5000])))


SCHEMAS = [schema(n).wire for n in NAMES] + [EVERY_TYPE]


@pytest.mark.parametrize("avsc", SCHEMAS, ids=lambda s: s["name"])
def test_bytes_match_fastavro_and_round_trip(avsc):
    codec = compile_codec(avsc)
    parsed = parse_schema(avsc)
    rnd = random.Random(7)
    for _ in range(60):
        datum = random_value(avsc, rnd)
        buf = io.BytesIO()
        schemaless_writer(buf, parsed, datum)
        reference = buf.getvalue()
        assert codec.encode(datum) == reference
        assert codec.decode(reference) == schemaless_reader(io.BytesIO(reference), parsed, None)


def test_blocked_arrays_with_sizes_are_read():
    """Other writers may emit negative block counts followed by a byte size."""
    codec = compile_codec({"type": "record", "name": "A", "fields": [
        {"name": "xs", "type": {"type": "array", "items": "long"}}]})
    # block of -2 items (zigzag 3), byte size 2 (zigzag 4), items 1 and 2, then end of array
    assert codec.decode(bytes([3, 4, 2, 4, 0])) == {"xs": [1, 2]}


def test_corrupt_input_is_reported():
    codec = compile_codec(EVERY_TYPE)
    good = codec.encode(random_value(EVERY_TYPE, random.Random(1)))
    with pytest.raises(CorruptRecord):
        codec.decode(good[:-3])
    with pytest.raises(CorruptRecord):
        codec.decode(good + b"\x00")


@pytest.mark.parametrize("change", [{"s": 5}, {"l": "1"}, {"u": object()}, {"nested": {"xs": [], "m": None}}])
def test_datums_that_do_not_fit_are_not_encodable(change):
    datum = random_value(EVERY_TYPE, random.Random(2)) | change
    with pytest.raises(NotEncodable):
        compile_codec(EVERY_TYPE).encode(datum)


def test_missing_required_field_is_not_encodable():
    datum = random_value(EVERY_TYPE, random.Random(3))
    del datum["s"]
    with pytest.raises(NotEncodable):
        compile_codec(EVERY_TYPE).encode(datum)


def test_zigzag_matches_fastavro_around_every_length_boundary():
    """The unrolled six-byte case (epoch milliseconds) and the loop agree with fastavro."""
    from schemas.compiled import zigzag

    values = [0, -1, 1, 2**63 - 1, -(2**63)]
    for bits in range(1, 64):
        for edge in (2**bits, -(2**bits)):
            values += [edge - 1, edge, edge + 1]
    values += [1_795_428_000_123, 946_684_800_000, 4_102_444_800_000, -1_795_428_000_123]
    for v in (v for v in values if -(2**63) <= v < 2**63):
        out = io.BytesIO()
        schemaless_writer(out, parse_schema("long"), v)
        assert zigzag(v) == out.getvalue(), v
