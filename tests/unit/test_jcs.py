"""RFC 8785 canonical JSON: the RFC's own test vectors, and byte-for-byte agreement with the
``rfc8785`` package on generated values."""

from __future__ import annotations

import json
import struct

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.jcs import canonicalize

# RFC 8785 appendix B: IEEE 754 bits -> the JSON number text
NUMBERS = [
    ("0000000000000000", "0"), ("8000000000000000", "0"), ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"), ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"), ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"), ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"), ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"), ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), NUMBERS)
def test_numbers_are_written_as_the_rfc_says(bits: str, text: str) -> None:
    assert canonicalize(struct.unpack(">d", bytes.fromhex(bits))[0]) == text


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinities_are_refused(bits: str) -> None:
    with pytest.raises(ValueError):
        canonicalize(struct.unpack(">d", bytes.fromhex(bits))[0])


def test_integers_beyond_a_double_are_refused() -> None:
    assert canonicalize(2**53 - 1) == "9007199254740991"
    with pytest.raises(ValueError):
        canonicalize(2**53)


def test_the_rfcs_example_object() -> None:  # section 3.2.2
    text = ('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], '
            r'"string": "\u20ac$\u000F\u000aA\u0027\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}')
    assert canonicalize(json.loads(text)) == (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')


def test_members_are_sorted_by_utf16_code_units() -> None:  # section 3.2.3, a name outside the BMP
    value = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
             "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
             "\u00f6": "Latin Small Letter O With Diaeresis"}
    names = list(json.loads(canonicalize(value)))
    assert names == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    # Python's own order puts U+FB33 before the emoji: the case plain sort_keys gets wrong
    assert sorted(value)[-1] == "\U0001f600"


def test_strings_escape_only_quotes_backslashes_and_control_characters() -> None:
    assert canonicalize("\x00\x08\t\n\x0c\r\x1f \x7f\u2028é😀\"\\") == \
        '"\\u0000\\b\\t\\n\\f\\r\\u001f \x7f\u2028é😀\\"\\\\"'


def test_what_json_cannot_hold_is_refused() -> None:
    with pytest.raises(TypeError):
        canonicalize({"a": {1, 2}})
    with pytest.raises(TypeError):
        canonicalize({1: "x", "\U0001f600": "y"})


text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
scalars = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | text)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=6),
                      max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(values)
def test_agrees_with_the_rfc8785_package_byte_for_byte(value: object) -> None:
    assert canonicalize(value).encode() == rfc8785.dumps(value)
