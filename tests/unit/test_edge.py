"""The ingest fast path decides exactly as validate-then-encode does, byte for byte."""

import json
import random
import uuid

import pytest

from schemas.edge import Declined, edge_encoder
from schemas.model import ValidationError, spec, validate_audit_event, validate_trace_event
from schemas.registry import record_fields, schema

NOW = 1_795_428_000_000
VALIDATE = {"TraceEvent": validate_trace_event, "AuditEvent": validate_audit_event}

GOOD = {  # check name -> valid JSON values
    "_id": ["e-1", "ü" * 256, "x", "a{b}/c %20?#", "..."],
    "_string": ["", "chat", "ünïcode ✓ 🙂", "a\u0000b"],
    "_timestamp": ["2026-11-23T10:00:00.123Z", "2026-11-23T10:00:00+02:00", "2026-11-23", NOW, 946_684_800_000],
    "_long": [0, -1, 10, 2**63 - 1, -(2**63), 5000],
    "_double": [0.0, 0.0004, -3.5, 7, 10**20, 1e300],
    "_cost": [0.0, 0.0004, -3.5, 7, 1e12, -1e12, 10**12],
    "_tokens": [0, 1, 5000, 10**12],
    "_json_text": ["text", {"b": [1, 2.5, None, True], "a": "ü"}, [], 3, False, None],
    "_string_map": [{}, {"k": "v", "ü": "✓"}],
    "_double_map": [{}, {"accuracy": 0.9, "n": 3}],
    "_string_array": [[], ["prod", "ü"]],
}
BAD = ["", "x" * 257, "\ud800", "not a time", "2026-13-40", True, False, 1.5, 2**63, -(2**63) - 1, 10**400,
       float("nan"), float("inf"), {}, {"k": 1}, {"k": "\udfff"}, {"\ud800": "v"}, [1], ["\ud800"], [[]], "1999-12-31",
       2**70, None, ".", "..", "a\x00b", "tr\n", "x\x85", 1.7e308, -1e13, 10**12 + 1, -1]


def random_object(name: str, rnd: random.Random) -> dict:
    """A JSON object for ``name``: mostly valid, now and then a bad value, a null, an unknown
    or a missing field."""
    rules = spec(name)
    obj = {}
    for f in record_fields(name):
        check = rules.checks.get(f["name"])
        if check is not None and rnd.random() < 0.7:  # org_id is never sent; others now and then
            obj[f["name"]] = rnd.choice(GOOD[check[0].__name__])
    if rnd.random() < 0.5:  # spoil one or two fields (or drop a required one)
        for _ in range(rnd.choice([1, 2])):
            field = rnd.choice(list(rules.checks))
            roll = rnd.random()
            if roll < 0.8:
                obj[field] = rnd.choice(BAD)
            elif roll < 0.9:
                obj[field] = None
            else:
                obj.pop(field, None)
    if rnd.random() < 0.03:
        obj["unknown_field"] = 1
    if rnd.random() < 0.02:
        obj["org_id"] = "someone-else"
    return json.loads(json.dumps(obj)) if rnd.random() < 0.5 else obj  # as the edge sees it, or not


def slow(name: str, obj):
    """What the general path decides: ("error", field, reason) or the bytes and the id."""
    try:
        datum = VALIDATE[name](obj, org_id="org-1", now=NOW)
    except ValidationError as exc:
        return ("error", exc.field, exc.reason)
    return schema(name).codec.encode(datum), datum.get("event_id", datum.get("id"))


@pytest.mark.parametrize("name", ["TraceEvent", "AuditEvent"])
def test_fast_path_matches_the_general_path_on_random_objects(name):
    encode = edge_encoder(name).encode
    rnd = random.Random(11)
    decided = declined = 0
    for _ in range(4000):
        obj = random_object(name, rnd)
        try:
            encoded, event_id, trace_id = encode(obj, "org-1", NOW)
        except Declined:
            declined += 1
            continue
        decided += 1
        id_field = "event_id" if name == "TraceEvent" else "id"
        if id_field not in obj:  # the server assigned a fresh id: the general path with that id
            uuid.UUID(event_id)
            obj = {**obj, id_field: event_id}
        assert slow(name, obj) == (encoded, event_id), obj
        assert trace_id == obj.get("trace_id")
    assert decided > 500 and declined > 500  # both branches were exercised


@pytest.mark.parametrize("name", ["TraceEvent", "AuditEvent"])
def test_everything_the_general_path_refuses_is_declined(name):
    encode = edge_encoder(name).encode
    rnd = random.Random(5)
    refused = 0
    for _ in range(4000):
        obj = random_object(name, rnd)
        if slow(name, obj)[0] == "error":
            refused += 1
            with pytest.raises(Declined):
                encode(obj, "org-1", NOW)
    assert refused > 500


@pytest.mark.parametrize("value", [[], "event", 3, None])
def test_an_event_that_is_not_an_object_is_declined(value):
    with pytest.raises(Declined):
        edge_encoder("TraceEvent").encode(value, "org-1", NOW)


def test_missing_defaults_are_filled_like_the_general_path():
    encoded, event_id, trace_id = edge_encoder("TraceEvent").encode({"trace_id": "t"}, "org-1", NOW)
    datum = validate_trace_event({"trace_id": "t", "event_id": event_id}, org_id="org-1", now=NOW)
    assert encoded == schema("TraceEvent").codec.encode(datum)
    assert datum["occurred_at"] == NOW and datum["type"] == "EVENT" and trace_id == "t"
