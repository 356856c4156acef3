import pytest

from api.errors import ApiError
from api.params import decode_cursor, encode_cursor, int_param, reject_unknown, time_param


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
