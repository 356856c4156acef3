"""The daily dump schedule's pure logic (``streams.dumps``): which days are due from the clock and which
(org, day) pairs still need a dump from the manifests listed at the URL; the part, its settings, and
the day and org naming the dumps share (``schemas.day_dump``)."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.day_dump import day_bounds, org_dir, org_of_dir, parse_day
from schemas.timefmt import parse_ms
from streams.dumps import due_days, pending
from streams.parts import declared_parts, groups_of, trimmable
from tracehouse.settings import Settings

D = dt.date


def days(first: str, last: str) -> list[dt.date]:
    start, end = D.fromisoformat(first), D.fromisoformat(last)
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def test_yesterday_is_due_once_the_dump_hour_has_begun_and_the_week_before_it_always():
    assert due_days(parse_ms("2026-12-05T00:59:59.999Z"), 1) == days("2026-11-28", "2026-12-03")
    assert due_days(parse_ms("2026-12-05T01:00:00.000Z"), 1) == days("2026-11-28", "2026-12-04")
    assert due_days(parse_ms("2026-12-05T23:00:00.000Z"), 23) == days("2026-11-28", "2026-12-04")
    assert due_days(parse_ms("2026-12-05T00:00:00.000Z"), 0) == days("2026-11-28", "2026-12-04")
    assert due_days(parse_ms("2027-01-01T05:00:00.000Z"), 1, lookback=2) == [D(2026, 12, 30), D(2026, 12, 31)]


def test_only_orgs_with_rows_and_no_manifest_are_dumped_oldest_day_first():
    due = due_days(parse_ms("2026-12-05T02:00:00.000Z"), 1)
    orgs = {D(2026, 12, 4): ["b", "a"], D(2026, 12, 3): ["a"], D(2026, 11, 20): ["old"]}
    assert pending(due, orgs, set()) == [("a", D(2026, 12, 3)), ("a", D(2026, 12, 4)), ("b", D(2026, 12, 4))]
    # a restart after the 3rd and a's 4th were written: only b's 4th is left (an interrupted day goes on)
    listed = {("a", D(2026, 12, 3)), ("a", D(2026, 12, 4))}
    assert pending(due, orgs, listed) == [("b", D(2026, 12, 4))]
    assert pending(due, orgs, listed | {("b", D(2026, 12, 4))}) == []
    # a day more than a week back is never due, dumped or not
    assert pending(due_days(parse_ms("2026-12-05T02:00:00.000Z"), 1), {D(2026, 11, 27): ["a"]}, set()) == []


def test_the_dumps_part_exists_only_with_a_dump_url_and_reads_nothing():
    assert "dumps" not in [p.name for p in declared_parts(Settings())]
    parts = declared_parts(Settings(dump_url="/var/dumps"))
    (dumps,) = [p for p in parts if p.name == "dumps"]
    assert (dumps.group, dumps.reads, dumps.writes, dumps.needs_clickhouse) == ("tracehouse-dumps", (), (), True)
    assert "tracehouse-dumps" in groups_of(parts)  # its dead members are evicted like every group's
    assert trimmable(parts) == trimmable(declared_parts(Settings()))


def test_dump_settings():
    s = Settings.from_env({"TRACEHOUSE_DUMP_URL": "s3://bucket/dumps", "TRACEHOUSE_DUMP_HOUR_UTC": "23"})
    assert (s.dump_url, s.dump_hour_utc) == ("s3://bucket/dumps", 23)
    assert (Settings().dump_url, Settings().dump_hour_utc) == (None, 1)
    for bad in ("24", "-1", "one"):
        with pytest.raises(ValueError, match="TRACEHOUSE_DUMP_HOUR_UTC"):
            Settings.from_env({"TRACEHOUSE_DUMP_HOUR_UTC": bad})


def test_days_and_org_directories():
    assert day_bounds(D(2026, 12, 4)) == (parse_ms("2026-12-04T00:00:00Z"), parse_ms("2026-12-04T23:59:59.999Z"))
    assert parse_day("2026-02-28") == D(2026, 2, 28)
    for bad in ("2026-02-30", "20261204", "2026-1-4", "1969-12-31", "2300-01-01", ""):
        with pytest.raises(ValueError):
            parse_day(bad)
    for org in ("acme", "org-1_a.b", "a:b", "../x", ".hidden", "a/b", "ünï"):
        name = org_dir(org)
        assert "/" not in name and not name.startswith(".") and org_of_dir(name) == org
    assert org_dir("org-1_a.b") == "org-1_a.b"
