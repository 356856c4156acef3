"""RFC 8785 JSON Canonicalization Scheme (JCS): the text a link hash covers.

JCS is JSON with no whitespace, object members sorted by the UTF-16 code units of their names,
strings escaped as ECMAScript's ``JSON.stringify`` does (only ``"``, ``\\`` and control
characters; lowercase ``\\u00xx``), and numbers written as ECMAScript's ``Number.prototype.toString``
writes an IEEE 754 double (``1e-7``, ``1e+21``, ``100``, never ``1.0``). Any JCS library in any
language (JavaScript ``canonicalize``, Go ``gowebpki/jcs``, Java ``erdtman/java-json-canonicalization``)
produces the same bytes, which is what lets a third party recompute a chain.

Python's ``json`` agrees on strings (``encode_basestring``, C-accelerated) and on integers, but
not on floats (``1e-07``, ``1.0``) nor on member order when names hold characters outside the
Basic Multilingual Plane; this module fixes those two and otherwise leans on it.
``tests/unit/test_jcs.py`` holds it to the RFC's test vectors and, on generated values, byte for
byte to the ``rfc8785`` package.
"""

from __future__ import annotations

import math
from json.encoder import encode_basestring
from typing import Any

#: ECMAScript numbers are doubles: integers beyond this lose precision, so JCS refuses them.
MAX_SAFE_INTEGER = 2**53 - 1


def canonicalize(value: Any) -> str:
    """The JCS text of ``value`` (dicts with str keys, lists, tuples, str, int, float, bool, None).

    Raises ValueError for NaN, infinities and integers beyond +/-(2**53 - 1), TypeError for
    anything else."""
    parts: list[str] = []
    _write(value, parts.append)
    return "".join(parts)


def _write(value: Any, out: Any) -> None:
    kind = value.__class__
    if kind is str:
        out(encode_basestring(value))
    elif kind is dict:
        if not value:
            out("{}")
            return
        names = list(value)
        if all(name.__class__ is str and name.isascii() for name in names):
            names.sort()
        else:
            names.sort(key=_utf16)
        first = True
        for name in names:
            out("{" if first else ",")
            first = False
            out(encode_basestring(name))
            out(":")
            _write(value[name], out)
        out("}")
    elif kind is list or kind is tuple:
        if not value:
            out("[]")
            return
        first = True
        for item in value:
            out("[" if first else ",")
            first = False
            _write(item, out)
        out("]")
    elif value is None:
        out("null")
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    elif kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            out(str(value))
        else:
            raise ValueError(f"integer {value} is beyond what a JSON number (an IEEE 754 double) holds exactly")
    elif kind is float:
        out(number(value))
    else:
        raise TypeError(f"{kind.__name__} is not JSON")


def _utf16(name: str) -> bytes:
    if name.__class__ is not str:
        raise TypeError(f"object member names must be strings, not {name.__class__.__name__}")
    return name.encode("utf-16-be", "surrogatepass")


def number(value: float) -> str:
    """``value`` as ECMAScript's ``Number.prototype.toString`` writes it (RFC 8785 section 3.2.2.3)."""
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a JSON number")
    if value == 0:
        return "0"  # -0 too
    # repr gives the shortest digits that round-trip, as ECMAScript requires; only the layout differs
    text = repr(value)
    if "e" not in text:  # 1e-4 <= |value| < 1e16: ECMAScript writes the same, minus a trailing ".0"
        return text[:-2] if text.endswith(".0") else text
    sign = "-" if text[0] == "-" else ""
    text = text.lstrip("-")
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # value = 0.<digits> x 10**n
    n = len(whole) + int(exponent or 0) - (len(whole + fraction) - len((whole + fraction).lstrip("0")))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    exp = f"e{'+' if e > 0 else '-'}{abs(e)}"
    return sign + (digits if k == 1 else digits[0] + "." + digits[1:]) + exp


def value_text(value: Any) -> str:
    """The JCS text of one value, the common kinds first."""
    kind = value.__class__
    if kind is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if kind is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return str(value)
    if kind is float:
        return number(value)
    return canonicalize(value)
