"""JSON request bodies of the API's own routes (keys, outcomes): parsed and checked in one
place, so that nothing JSON can carry but nothing downstream can hold (a NaN, a number beyond
a double, a lone surrogate, nesting deeper than a recursive encoder goes) reaches a route.

The ingest routes parse their batches in ``api.preparation`` and validate each event by field.
"""

from __future__ import annotations

import json
import math
from typing import Any

from api.errors import ApiError, bad_param

#: The deepest nesting accepted in a body, the body itself being level 1.
MAX_DEPTH = 32


def json_body(raw: bytes, expected: str) -> dict[str, Any]:
    """The JSON object in ``raw``; 400 naming ``(body)`` when it is not JSON or not an object
    (``expected`` describes the object), or naming the path of a value no route can use."""
    try:
        body = json.loads(raw or b"null")
    except RecursionError:
        raise _invalid(f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(str(exc)) from None
    if not isinstance(body, dict):
        raise bad_param("(body)", f"expected a JSON object {expected}")
    check_json(body)
    return body


def _invalid(reason: str) -> ApiError:
    return ApiError(400, "invalid_json", f"request body is not valid JSON: {reason}",
                    {"field": "(body)", "reason": reason})


def check_json(value: Any, path: str = "") -> None:
    """400 naming the dotted path (``metadata.k[2]``) of a string that is not valid Unicode,
    a number that is not finite, or a value nested deeper than ``MAX_DEPTH``."""
    stack: list[tuple[Any, str, int]] = [(value, path, 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            _unicode(item, where)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise bad_param(where or "(body)", "numbers must be finite (no NaN, Infinity or overflow)")
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise bad_param(where or "(body)", f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    inner = f"{where}.{key}" if where else key
                    _unicode(key, inner)
                    stack.append((child, inner, depth + 1))
            else:
                stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))


def _unicode(text: str, where: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            # the path may hold the surrogate itself: name it in a form JSON encoders can write
            raise bad_param(where.encode(errors="backslashreplace").decode() or "(body)",
                            f"not valid Unicode: lone surrogate at position {exc.start}") from None
