"""CSV the way spreadsheets and SIEMs read it back: RFC 4180 quoting, CRLF rows, and cells that
a spreadsheet would run as a formula neutralised.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is what Excel,
LibreOffice and Google Sheets evaluate as a formula (CSV injection, OWASP). Such a text cell is
written with a leading apostrophe (``'=1+2``), which every one of them shows as the literal text;
numbers are written as numbers, so a negative number stays a number. Reading the file back with
any CSV parser gives the apostrophe too: the README says so.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str | int | float:
    """One CSV cell: empty for None, ``true``/``false`` for booleans, numbers as they are, text
    neutralised when a spreadsheet would read it as a formula."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_lines(rows: Iterable[Sequence[Any]]) -> bytes:
    """``rows`` as UTF-8 CSV lines (every cell through ``cell``), each ending in CRLF."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([cell(v) for v in row] for row in rows)
    return out.getvalue().encode()
