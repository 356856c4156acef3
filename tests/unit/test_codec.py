import pytest

from schemas.codec import MAGIC, DecodeError, current_body, decode, encode, sealed_links, sealed_record, trace_summary
from schemas.registry import NAMES, schema


def event(i: int = 1, **kw):
    base = {"event_id": f"e{i}", "org_id": "o", "trace_id": "t", "parent_id": None, "class": None,
            "type": "SPAN", "name": None, "occurred_at": 1_795_428_000_123 + i, "end_time": None,
            "status": None, "model": None, "model_config": None, "user_id": None, "session_id": None,
            "agent_id": None, "agent_name": None, "actor_type": None, "actor_name": None,
            "prompt_name": None, "description": None, "outcome": None, "input": '"hi"', "output": None,
            "messages": None, "tools": None, "tool_choice": None, "input_tokens": 3,
            "output_tokens": None, "total_tokens": None, "cost": 0.5, "cost_currency": None,
            "scores": {"q": 0.9}, "tags": ["a"], "metadata": {"k": "v"}, "policy_version": None,
            "approval_request_id": None, "authority_model": None, "requested_operation": None,
            "target_integration": None, "resource_scope": None, "data_classification": None,
            "policy_rule_id": None, "parent_trace_id": None, "app_id": None}
    base.update(kw)
    return base


def test_batch_round_trip_keeps_every_field():
    batch = {"org_id": "o", "trace_id": "t", "events": [event(1), event(2, metadata={"ü": "✓"})]}
    decoded = decode(encode("TraceEventBatch", batch))
    assert decoded.schema == "TraceEventBatch"
    assert decoded.datum == batch


def test_single_events_are_told_apart_by_fingerprint():
    assert decode(encode("TraceEvent", event())).schema == "TraceEvent"
    assert len({schema(n).fingerprint for n in NAMES}) == len(NAMES)


@pytest.mark.parametrize("value, reason", [
    (b"", "header"), (b"{\"json\": true}", "header"),
    (b"\xc3\x01" + b"\x00" * 8 + b"x", "unknown schema fingerprint"),
])
def test_garbage_is_a_decode_error(value, reason):
    with pytest.raises(DecodeError, match=reason):
        decode(value)


def test_truncated_body_is_a_decode_error():
    raw = encode("TraceEventBatch", {"org_id": "o", "trace_id": "t", "events": [event()]})
    with pytest.raises(DecodeError, match="corrupt TraceEventBatch"):
        decode(raw[:-20])


@pytest.mark.parametrize("hashes", [[], [bytes(32)], [bytes(range(32)), b"\xff" * 32]])
@pytest.mark.parametrize("closed", [(None, None), ("completed_with_approval", 1_795_428_999_000), ("blocked", 0)])
@pytest.mark.parametrize("named", [False, True])
def test_sealed_links_and_summary_are_the_avro_of_the_sealed_fields(hashes, closed, named):
    batch = {"org_id": "o", "trace_id": "t", "events": [event(1)]}
    raw = encode("TraceEventBatch", batch)
    outcome, completed = closed
    sealed = encode("SealedTraceEventBatch", batch | {"first_seq": 7, "prev_hash": b"\x01" * 32, "hashes": hashes,
                                                      "started_at": 1_795_428_000_124, "final_outcome": outcome,
                                                      "completed_at": completed, "hash_version": 2,
                                                      "agent_named": named})
    framed = sealed_record("SealedTraceEventBatch", raw[10:], 7, b"\x01" * 32, hashes,
                           trace_summary(1_795_428_000_124, outcome, completed), hash_version=2, agent_named=named)
    assert framed == sealed
    assert sealed[10:] == (raw[10:] + sealed_links(7, b"\x01" * 32, hashes)
                           + trace_summary(1_795_428_000_124, outcome, completed) + b"\x04" + bytes([named]))
    assert decode(sealed).datum["final_outcome"] == outcome
    assert decode(sealed).datum["agent_named"] is named


#: The header of a SealedTraceEventBatch written before hash_version existed (schemas/previous/v1)
EARLIER_SEALED = MAGIC + bytes.fromhex("92453f66aef57d42")


def test_a_sealed_record_of_the_earlier_schema_reads_as_hash_version_1():
    from schemas.registry import previous_schemas

    earlier = previous_schemas("SealedTraceEventBatch")[0]
    assert earlier.fingerprint.hex() == "92453f66aef57d42"  # what records written before the change carry
    batch = {"org_id": "o", "trace_id": "t", "events": [event(1)], "first_seq": 7, "prev_hash": b"\x01" * 32,
             "hashes": [b"\x02" * 32], "started_at": 1, "final_outcome": None, "completed_at": None}
    value = EARLIER_SEALED + earlier.codec.encode(batch)
    decoded = decode(value)
    later = {"hash_version": 1, "agent_named": False}
    assert decoded.schema == "SealedTraceEventBatch" and decoded.datum == batch | later
    assert MAGIC + schema("SealedTraceEventBatch").fingerprint + current_body(value) == \
        encode("SealedTraceEventBatch", batch | later)


#: The fingerprints records carried before TraceEvent had app_id (schemas/previous/v2)
BEFORE_APP_ID = {"TraceEvent": "7e6d5a166c1255ab", "TraceEventBatch": "3010d174f811cb8e",
                 "SealedTraceEventBatch": "3680adfe3407d0c8"}


def _before_app_id(name: str, datum: dict) -> bytes:
    """``datum`` as a record written before TraceEvent had app_id."""
    from schemas.registry import previous_schemas

    earlier = next(s for s in previous_schemas(name) if s.fingerprint.hex() == BEFORE_APP_ID[name])
    without = {k: v for k, v in datum.items() if k not in ("app_id", "agent_named")}
    if "events" in without:
        without["events"] = [{k: v for k, v in e.items() if k != "app_id"} for e in without["events"]]
    return MAGIC + earlier.fingerprint + earlier.codec.encode(without)


def test_records_written_before_app_id_read_with_app_id_null():
    batch = {"org_id": "o", "trace_id": "t", "events": [event(1), event(2, metadata={"ü": "✓"})]}
    sealed = batch | {"first_seq": 3, "prev_hash": b"\x01" * 32, "hashes": [b"\x02" * 32, b"\x03" * 32],
                      "started_at": 1, "final_outcome": "completed", "completed_at": 9, "hash_version": 2,
                      "agent_named": False}
    for name, datum in (("TraceEvent", event(1)), ("TraceEventBatch", batch), ("SealedTraceEventBatch", sealed)):
        assert schema(name).fingerprint.hex() != BEFORE_APP_ID[name]
        value = _before_app_id(name, datum)
        decoded = decode(value)
        assert decoded.schema == name and decoded.datum == datum  # app_id: None, the default
        assert MAGIC + schema(name).fingerprint + current_body(value) == encode(name, datum)
        with pytest.raises(DecodeError):
            decode(value[:-3])


def test_an_app_id_round_trips():
    batch = {"org_id": "o", "trace_id": "t", "events": [event(1, app_id="app_abc123"), event(2)]}
    assert decode(encode("TraceEventBatch", batch)).datum == batch


def test_a_later_version_may_only_append_fields_with_defaults_also_in_nested_records():
    from schemas.registry import _appended_with_defaults

    old = schema("TraceEventBatch").wire
    _appended_with_defaults(old, old, "same")
    items = old["fields"][2]["type"]["items"]
    inserted = items | {"fields": [{"name": "x", "type": "string", "default": ""}, *items["fields"]]}
    no_default = items | {"fields": [*items["fields"], {"name": "x", "type": "string"}]}
    retyped = items | {"fields": [*items["fields"][:-1], items["fields"][-1] | {"type": ["null", "long"]}]}
    for bad in (inserted, no_default, retyped):
        newer = old | {"fields": [*old["fields"][:2], old["fields"][2] | {"type": {"type": "array", "items": bad}}]}
        with pytest.raises(ValueError, match="events"):
            _appended_with_defaults(old, newer, "TraceEventBatch")


def test_a_sealed_record_written_before_agent_named_reads_as_not_naming_one():
    from schemas.registry import previous_schemas

    earlier = previous_schemas("SealedTraceEventBatch")[-1]
    assert earlier.fingerprint != schema("SealedTraceEventBatch").fingerprint
    sealed = {"org_id": "o", "trace_id": "t", "events": [event(1)], "first_seq": 1, "prev_hash": b"\x01" * 32,
              "hashes": [b"\x02" * 32], "started_at": 1, "final_outcome": None, "completed_at": None,
              "hash_version": 2}
    decoded = decode(MAGIC + earlier.fingerprint + earlier.codec.encode(sealed))
    assert decoded.schema == "SealedTraceEventBatch" and decoded.datum == sealed | {"agent_named": False}
