import pytest

from schemas.model import ValidationError, validate_audit_event, validate_trace_event

NOW = 1_795_428_000_000
EXAMPLE = {"event_id": "evt-1", "trace_id": "tr-1", "parent_id": None, "class": "llm", "type": "GENERATION",
           "name": "chat", "occurred_at": "2026-11-23T10:00:00.123Z", "end_time": "2026-11-23T10:00:01.500Z",
           "status": "STATUS_CODE_OK", "model": "gpt-4o", "user_id": "u-1", "agent_id": "ag-1",
           "input_tokens": 10, "output_tokens": 20, "cost": 0.0004, "tags": ["prod"],
           "metadata": {"k": "v"}, "input": "...", "output": {"answer": [1, 2]}}


def test_issue_example_is_valid():
    d = validate_trace_event(EXAMPLE, org_id="acme", now=NOW)
    assert d["org_id"] == "acme" and d["occurred_at"] == 1_795_428_000_123
    assert d["end_time"] == 1_795_428_001_500
    assert d["input"] == '"..."' and d["output"] == '{"answer":[1,2]}'
    assert d["scores"] == {} and d["messages"] is None


def test_server_defaults_fill_event_id_and_time():
    d = validate_trace_event({"trace_id": "t"}, org_id="o", now=NOW)
    assert d["occurred_at"] == NOW and len(d["event_id"]) == 36 and d["type"] == "EVENT"


def test_org_id_in_the_body_is_rejected():
    with pytest.raises(ValidationError) as e:
        validate_trace_event({"trace_id": "t", "org_id": "other"}, org_id="o", now=NOW)
    assert e.value.field == "org_id"


@pytest.mark.parametrize("patch, field", [
    ({"trace_id": 5}, "trace_id"),
    ({"trace_id": ""}, "trace_id"),
    ({"trace_id": "x" * 257}, "trace_id"),
    ({"bogus": 1}, "bogus"),
    ({"metadata": {"k": 1}}, "metadata.k"),
    ({"metadata": []}, "metadata"),
    ({"tags": ["a", 2]}, "tags[1]"),
    ({"input_tokens": "10"}, "input_tokens"),
    ({"input_tokens": True}, "input_tokens"),
    ({"cost": "cheap"}, "cost"),
    ({"scores": {"q": "high"}}, "scores.q"),
    ({"occurred_at": "yesterday"}, "occurred_at"),
    ({"occurred_at": "1900-01-01T00:00:00Z"}, "occurred_at"),
    ({"type": None}, "type"),
])
def test_each_error_names_its_field(patch, field):
    with pytest.raises(ValidationError) as e:
        validate_trace_event({**EXAMPLE, **patch}, org_id="o", now=NOW)
    assert e.value.field == field


def test_missing_trace_id_is_required():
    with pytest.raises(ValidationError, match="trace_id: is required"):
        validate_trace_event({"type": "SPAN"}, org_id="o", now=NOW)


def test_not_an_object():
    with pytest.raises(ValidationError, match="expected an object"):
        validate_trace_event(["x"], org_id="o", now=NOW)


def test_naive_and_offset_timestamps_are_utc():
    a = validate_trace_event({"trace_id": "t", "occurred_at": "2026-11-23T10:00:00.123"}, org_id="o", now=NOW)
    b = validate_trace_event({"trace_id": "t", "occurred_at": "2026-11-23T12:00:00.123+02:00"},
                             org_id="o", now=NOW)
    assert a["occurred_at"] == b["occurred_at"] == 1_795_428_000_123


def test_audit_event_requires_actor_and_action():
    with pytest.raises(ValidationError) as e:
        validate_audit_event({"action": "key.created"}, org_id="o", now=NOW)
    assert e.value.field == "actor"
    d = validate_audit_event({"actor": "bob", "action": "key.created", "metadata": {"a": "b"}},
                             org_id="o", now=NOW)
    assert d["target"] == "" and d["occurred_at"] == NOW and d["id"]


@pytest.mark.parametrize("patch,field,reason", [
    ({"name": "ok\ud800"}, "name", "not valid Unicode: lone surrogate at position 2"),
    ({"input": "\udfff"}, "input", "not valid Unicode: lone surrogate at position 1"),
    ({"output": {"k": ["\ud800"]}}, "output", "not valid Unicode: lone surrogate at position 7"),
    ({"metadata": {"\ud800": "v"}}, "metadata.\ud800", "not valid Unicode: lone surrogate at position 0"),
    ({"tags": ["a", "\ud800"]}, "tags[1]", "not valid Unicode: lone surrogate at position 0"),
    ({"cost": 10**400}, "cost", "number out of range"),
    ({"scores": {"s": 10**400}}, "scores.s", "number out of range"),
])
def test_values_without_an_encoding_are_refused_by_field(patch, field, reason):
    """JSON can carry lone surrogates (\\ud800) and integers no double holds: 400s, not crashes."""
    with pytest.raises(ValidationError) as e:
        validate_trace_event({"trace_id": "t", **patch}, org_id="o", now=NOW)
    assert (e.value.field, e.value.reason) == (field, reason)


def test_json_nested_too_deeply_is_refused():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValidationError, match="model_config: nested too deeply"):
        validate_trace_event({"trace_id": "t", "model_config": deep}, org_id="o", now=NOW)


@pytest.mark.parametrize("field", ["trace_id", "event_id", "parent_id"])
@pytest.mark.parametrize("value", [".", "..", "a\x00b", "tr-1\n", "\x7f", "x\x9f"])
def test_ids_a_url_path_cannot_name_are_refused(field, value):
    with pytest.raises(ValidationError) as e:
        validate_trace_event({"trace_id": "t", field: value}, org_id="o", now=NOW)
    assert e.value.field == field and "control characters" in e.value.reason


@pytest.mark.parametrize("value", ["a{b}c", "a/b", "100%", "a b", "\u00e9\u4e2d\U0001f600", "...", ".a"])
def test_ids_with_url_special_characters_are_accepted(value):
    assert validate_trace_event({"trace_id": value}, org_id="o", now=NOW)["trace_id"] == value


@pytest.mark.parametrize(("field", "value"), [("cost", 1.7e308), ("cost", -1e13), ("input_tokens", -1),
                                              ("total_tokens", 10**12 + 1)])
def test_summed_numbers_are_bounded_so_no_total_overflows(field, value):
    with pytest.raises(ValidationError) as err:
        validate_trace_event({"trace_id": "t", field: value}, org_id="o", now=0)
    assert err.value.field == field and "between" in err.value.reason
