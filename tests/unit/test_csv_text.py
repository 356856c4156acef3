"""CSV cells for spreadsheets and SIEMs: quoting that round-trips, formulas neutralised."""

from __future__ import annotations

import csv
import io

import pytest

from api.exports.csv_text import cell, csv_lines


def read_back(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def test_quoting_survives_commas_quotes_newlines_and_unicode():
    row = ['a,b', 'say "hi"', "two\nlines", "crlf\r\nend", "ünïcode 😀", ""]
    assert read_back(csv_lines([row])) == [row]


@pytest.mark.parametrize("text", ["=1+2", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"http://x\")"])
def test_a_text_cell_a_spreadsheet_would_evaluate_is_written_as_literal_text(text):
    assert read_back(csv_lines([[text]])) == [["'" + text]]


def test_numbers_booleans_and_nulls():
    assert [cell(v) for v in (-5, 2.5, True, False, None, "plain")] == [-5, 2.5, "true", "false", "", "plain"]
    assert read_back(csv_lines([[-5, 2.5, None]])) == [["-5", "2.5", ""]]  # a negative number stays a number


def test_rows_end_in_crlf():
    assert csv_lines([["a", 1], ["b", 2]]) == b"a,1\r\nb,2\r\n"
