"""The JCS text written straight from Avro binary (``schemas.avro_jcs``) is the reference's, byte for
byte: ``link_hash`` of the decoded event for the chain kinds' events, ``canonicalize`` of the decoded
datum for any schema it reads; and what the decoder refuses, it refuses."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.avro_jcs import jcs_reader
from schemas.codec import DecodeError, decode
from schemas.compiled import CorruptRecord, Unsupported, compile_codec
from schemas.integrity import GENESIS, as_link, avro_link, avro_link_reader, link_hash
from schemas.jcs import canonicalize
from schemas.registry import schema
from streams.chaining import TRACE_CHAIN, ChainStore, seal

EXTRA = ("seq", "prev_hash", "hash_version")
# names and text from anywhere in Unicode (non-BMP included; no lone surrogates: UTF-8 cannot hold them)
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | text
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=12)
# a JSON-valued field (input, output, metadata...) holds canonical JSON text
strings = text | json_values.map(canonicalize)


def datum_of(t: Any) -> st.SearchStrategy:
    """Values of Avro type ``t`` (a parsed schema), JSON numbers only (finite doubles, safe integers)."""
    if isinstance(t, list):
        return st.one_of([datum_of(branch) for branch in t])
    kind = t["type"] if isinstance(t, dict) else t
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: datum_of(f["type"]) for f in t["fields"]})
    if kind == "map":
        return st.dictionaries(text, datum_of(t["values"]), max_size=4)
    if kind == "array":
        return st.lists(datum_of(t["items"]), max_size=4)
    return {"null": st.none(), "boolean": st.booleans(), "string": strings,
            "int": st.integers(-(2**31), 2**31 - 1), "long": st.integers(-(2**53) + 1, 2**53 - 1),
            "double": st.floats(allow_nan=False, allow_infinity=False),
            "float": st.floats(width=32, allow_nan=False, allow_infinity=False)}[kind]


def jcs(*values: Any) -> list[str]:
    """The JCS text of each extra member's value (what ``JcsReader.text`` takes)."""
    return [canonicalize(v) for v in values]


hashes = st.text("0123456789abcdef", min_size=64, max_size=64)


@pytest.mark.parametrize("name", ["TraceEvent", "AuditEvent"])
@settings(max_examples=150, deadline=None)
@given(data=st.data(), seq=st.integers(1, 2**53 - 1), prev=hashes)
def test_a_link_read_from_avro_is_link_hash_of_the_decoded_event(name: str, data: st.DataObject, seq: int,
                                                                 prev: str) -> None:
    s = schema(name)
    body = s.codec.encode(data.draw(datum_of(s.wire)))
    event = s.codec.decode(body)  # what the reference hashes: the datum as a reader sees it
    kept = tuple(f["name"] for f in s.wire["fields"] if f["type"] == "string")
    reader = avro_link_reader(name, kept)
    pos, fields, parts = reader.read(body, 0)
    assert pos == len(body)
    assert fields == tuple(event[k] for k in kept)
    assert avro_link(reader, parts, seq, prev) == bytes.fromhex(link_hash(event, seq, prev))


def test_every_event_field_is_in_the_link_document() -> None:
    """Generated from the schema: a field added to TraceEvent is hashed without touching the reader."""
    wire = schema("TraceEvent").wire
    reader = avro_link_reader("TraceEvent", ())
    event = schema("TraceEvent").codec.decode(schema("TraceEvent").codec.encode(
        {f["name"]: "x" if f["type"] == "string" else {"occurred_at": 1}.get(f["name"]) for f in wire["fields"]}
        | {"scores": {}, "tags": [], "metadata": {}, "app_id": "app-1"}))
    document = reader.text(reader.read(schema("TraceEvent").codec.encode(event), 0)[2], *jcs(1, "0" * 64, 2))
    assert document == canonicalize(event | {"seq": 1, "prev_hash": "0" * 64, "hash_version": 2})
    assert all(f'"{f["name"]}":' in document for f in wire["fields"])
    # an omit-null field that is null is no member at all (links sealed before it existed)
    event["app_id"] = None
    document = reader.text(reader.read(schema("TraceEvent").codec.encode(event), 0)[2], *jcs(1, "0" * 64, 2))
    assert document == canonicalize(as_link(event) | {"seq": 1, "prev_hash": "0" * 64, "hash_version": 2})
    assert '"app_id"' not in document


# every type and shape the reader writes: nested records, unions of several types, maps of arrays,
# arrays of maps, floats, booleans
MIXED = {"type": "record", "name": "Mixed", "fields": [
    {"name": "id", "type": "string"},
    {"name": "any", "type": ["null", "long", "string", "double", "boolean"]},
    {"name": "flag", "type": "boolean"},
    {"name": "ratio", "type": "float"},
    {"name": "count", "type": "int"},
    {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [
        {"name": "z", "type": {"type": "map", "values": {"type": "array", "items": ["null", "double"]}}},
        {"name": "a", "type": ["null", "string"]}]}},
    {"name": "rows", "type": {"type": "array", "items": {"type": "map", "values": "string"}}},
    {"name": "late", "type": ["string", "null"]}]}


@settings(max_examples=200, deadline=None)
@given(datum=datum_of(MIXED), seq=st.integers(-(2**53) + 1, 2**53 - 1), prev=text)
def test_any_record_reads_as_canonicalize_of_its_decoded_datum(datum: dict, seq: int, prev: str) -> None:
    codec = compile_codec(MIXED)
    body = codec.encode(datum)
    reader = jcs_reader(MIXED, ("seq", "prev"), ("id", "any", "late"))
    pos, fields, parts = reader.read(body, 0)
    decoded = codec.decode(body)
    assert pos == len(body) and fields == (decoded["id"], decoded["any"], decoded["late"])
    assert reader.text(parts, *jcs(seq, prev)) == canonicalize(decoded | {"seq": seq, "prev": prev})


def test_members_and_map_keys_are_ordered_by_utf16_code_units() -> None:
    codec, reader = compile_codec(MIXED), jcs_reader(MIXED, ("seq", "prev"))
    keys = {"\U0001f600": [1.0], "\ufb33": [None], "a": [], "\u00f6": [1e-7]}
    datum = {"id": "i", "any": None, "flag": True, "ratio": 0.5, "count": 3, "inner": {"z": keys, "a": None},
             "rows": [], "late": None}
    document = reader.text(reader.read(codec.encode(datum), 0)[2], *jcs(1, "p"))
    assert '"z":{"a":[],"\u00f6":[1e-7],"\U0001f600":[1],"\ufb33":[null]}' in document
    assert document == canonicalize(codec.decode(codec.encode(datum)) | {"seq": 1, "prev": "p"})


def test_what_json_cannot_hold_is_refused_as_the_reference_refuses_it() -> None:
    trace = schema("TraceEvent")
    base = trace.codec.decode(trace.codec.encode({"event_id": "e", "org_id": "o", "trace_id": "t", "type": "SPAN",
                                                  "occurred_at": 1, "scores": {}, "tags": [], "metadata": {}}))
    reader = avro_link_reader("TraceEvent", ())
    for event in (base | {"input_tokens": 2**53}, base | {"cost": math.nan}, base | {"scores": {"s": math.inf}}):
        with pytest.raises(ValueError):
            link_hash(event, 1, "0" * 64)
        with pytest.raises(ValueError):
            reader.text(reader.read(trace.codec.encode(event), 0)[2], *jcs(1, "0" * 64, 2))
    with pytest.raises(Unsupported):
        jcs_reader({"type": "record", "name": "B", "fields": [{"name": "b", "type": "bytes"}]}, ())


def test_corrupt_bytes_are_refused() -> None:
    trace = schema("TraceEvent")
    body = trace.codec.encode({"event_id": "é", "org_id": "o", "trace_id": "t", "type": "SPAN", "occurred_at": 1,
                               "scores": {}, "tags": [], "metadata": {}})
    reader = avro_link_reader("TraceEvent", ())
    with pytest.raises(IndexError):
        reader.read(body[:-1], 0)
    with pytest.raises(UnicodeDecodeError):
        reader.read(body[:2] + b"\xff" + body[3:], 0)  # the first byte of "é" is no longer UTF-8
    with pytest.raises(CorruptRecord):
        reader.read(b"\x01" + body[1:], 0)  # a negative length


def test_a_corrupt_batch_is_refused_by_seal() -> None:
    batch = schema("TraceEventBatch")
    event = {"event_id": "é", "org_id": "o", "trace_id": "t", "type": "SPAN", "occurred_at": 1, "scores": {},
             "tags": [], "metadata": {}}
    value = b"\xc3\x01" + batch.fingerprint + batch.codec.encode({"org_id": "o", "trace_id": "t", "events": [event]})
    store = ChainStore({}, {})
    for broken in (value[:-1], value + b"\x00", value.replace("é".encode(), b"\xff\xfe")):
        with pytest.raises(DecodeError, match="corrupt TraceEventBatch"):
            seal(TRACE_CHAIN, broken, store)
    assert store.heads == {}
    sealed = decode(seal(TRACE_CHAIN, value, store).value).datum
    assert sealed["hashes"] == [bytes.fromhex(link_hash(sealed["events"][0], 1, GENESIS))]


@pytest.mark.parametrize("unlinkable", [{"input_tokens": 2**53}, {"cost": math.nan}, {"scores": {"s": -math.inf}}])
def test_an_event_json_cannot_hold_is_refused_by_seal_not_raised(unlinkable: dict) -> None:
    """A direct producer may write any Avro long or double: the record is unchainable (the agent
    reports it on invalid-events) rather than an error that would stop the agent on every restart."""
    batch = schema("TraceEventBatch")
    event = {"event_id": "e", "org_id": "o", "trace_id": "t", "type": "SPAN", "occurred_at": 1, "scores": {},
             "tags": [], "metadata": {}} | unlinkable
    value = b"\xc3\x01" + batch.fingerprint + batch.codec.encode({"org_id": "o", "trace_id": "t", "events": [event]})
    store = ChainStore({}, {})
    with pytest.raises(DecodeError, match="cannot be linked"):
        seal(TRACE_CHAIN, value, store)
    assert store.heads == {}
