"""SQL that makes ClickHouse write export rows itself (CSV, JSON lines), in C++, the way the API's
Python writers would: ISO 8601 UTC times with milliseconds, text cells a spreadsheet would run as a
formula neutralised with a leading apostrophe (``api.exports.csv_text``), nulls as empty CSV cells.
An export then moves ClickHouse's bytes to the client instead of building rows in Python."""

from __future__ import annotations

#: ClickHouse output settings the exports share: CRLF rows and empty cells for nulls in CSV, and JSON
#: as Python's json writes it (numbers unquoted, ``/`` unescaped).
FORMAT_SETTINGS = {"output_format_csv_crlf_end_of_line": 1, "format_csv_null_representation": "",
                   "output_format_json_quote_64bit_integers": 0, "output_format_json_escape_forward_slashes": 0}


def iso_ms(column: str) -> str:
    """A DateTime64(3) as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (``schemas.timefmt.format_ms``); null stays null."""
    return (f"if(isNull({column}), NULL, concat(formatDateTime(assumeNotNull({column}), '%Y-%m-%dT%H:%i:%S', 'UTC'), "
            f"'.', leftPad(toString(toUnixTimestamp64Milli(assumeNotNull({column})) % 1000), 3, '0'), 'Z'))")


def neutral(expression: str) -> str:
    """A text cell as ``api.exports.csv_text.cell`` writes it: a leading apostrophe before ``= + - @``,
    a tab or a carriage return."""
    return f"if(match({expression}, '^[=+\\\\-@\\t\\r]'), concat('''', {expression}), {expression})"
