import pytest

from api.body import MAX_DEPTH, check_json, json_body
from api.errors import ApiError
from api.params import decode_cursor, encode_cursor, int_param, key_cursor, reject_unknown, time_param


def test_cursor_round_trip_is_opaque():
    c = encode_cursor([1795428000123, "evt-1"])
    assert "evt-1" not in c
    assert decode_cursor(c) == [1795428000123, "evt-1"]


@pytest.mark.parametrize("raw", ["", "!!!", "bm90IGpzb24", encode_cursor.__name__])
def test_bad_cursor_is_400_naming_cursor(raw):
    with pytest.raises(ApiError) as e:
        decode_cursor(raw)
    assert e.value.status == 400 and e.value.details["field"] == "cursor"


@pytest.mark.parametrize("raw", ["0", "201", "abc", "-1", "1.5"])
def test_limit_out_of_range(raw):
    with pytest.raises(ApiError) as e:
        int_param({"limit": raw}, "limit", 50, 1, 200)
    assert e.value.details["field"] == "limit"


def test_limit_default_and_bounds():
    assert int_param({}, "limit", 50, 1, 200) == 50
    assert int_param({"limit": "200"}, "limit", 50, 1, 200) == 200


def test_unknown_and_time_params():
    with pytest.raises(ApiError, match="colour"):
        reject_unknown({"colour": "red"}, ["limit"])
    assert time_param({"since": "2026-05-01T00:00:00Z"}, "since") == 1777593600000
    with pytest.raises(ApiError, match="since"):
        time_param({"since": "May"}, "since")


@pytest.mark.parametrize("raw", ["1969-12-31T23:59:59.999Z", "2300-01-01", "0001-01-01", "9999-12-31T23:59:59-01:00"])
def test_times_outside_the_supported_range_name_the_parameter(raw):
    with pytest.raises(ApiError) as e:
        time_param({"from": raw}, "from")
    assert e.value.details["field"] == "from" and "1970-01-01" in e.value.message


def test_times_at_the_range_ends_are_accepted():
    assert time_param({"to": "1970-01-01T00:00:00Z"}, "to") == 0
    assert time_param({"to": "2299-12-31T23:59:59.999Z"}, "to") == 10_413_791_999_999


@pytest.mark.parametrize("key", [[10**20, "x"], [-1, "x"], [10_413_792_000_000, "x"], [True, "x"], [1.0, "x"],
                                 [1, "\ud800"], [1, ""], [1, "x" * 257], [1, 2], [1], "x"])
def test_cursor_keys_outside_what_the_api_hands_out_are_400(key):
    with pytest.raises(ApiError) as e:
        key_cursor(encode_cursor(key))
    assert e.value.details["field"] == "cursor"


def test_cursor_key_round_trip():
    assert key_cursor(encode_cursor([1_795_428_000_123, "tr-{1}/é"])) == (1_795_428_000_123, "tr-{1}/é")


@pytest.mark.parametrize("value, field", [
    ({"a": float("nan")}, "a"), ({"a": [1, float("inf")]}, "a[1]"), ({"a": {"b": "\udfff"}}, "a.b"),
    ({"\ud800": 1}, "\\ud800"),
])
def test_check_json_names_the_path(value, field):
    with pytest.raises(ApiError) as e:
        check_json(value)
    assert e.value.details["field"] == field


def test_json_body_depth_limit_counts_the_body():
    ok = b'{"a":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert json_body(ok, "")["a"] is not None
    with pytest.raises(ApiError) as e:
        json_body(b'{"a":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}", "")
    assert e.value.status == 400 and e.value.details["field"] == "a" + "[0]" * (MAX_DEPTH - 1)


@pytest.mark.parametrize("raw", [b"[" * 100_000, b"{", b"\xff", b"", b"[1]"])
def test_json_body_that_is_not_an_object_is_400_naming_the_body(raw):
    with pytest.raises(ApiError) as e:
        json_body(raw, "{x}")
    assert e.value.status == 400 and e.value.details["field"] == "(body)"
