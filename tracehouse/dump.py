"""``tracehouse dump --date YYYY-MM-DD [--org ORG] --to URL``: one UTC day of each org's events and
audit log to a directory or object storage (``sinks.day_dump``), progress on a terminal, one summary
line per org otherwise."""

from __future__ import annotations

import datetime as dt
from typing import TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.day_dump import AUDIT_PARQUET, EVENTS_PARQUET
from sinks.clickhouse import ClickHouse
from sinks.day_dump import DayDump, DayDumper


async def dump_day(ch: ClickHouse, key: Ed25519PrivateKey, url: str, day: dt.date, org_id: str | None,
                   out: TextIO, *, chunk_rows: int | None = None) -> list[DayDump]:
    """Dump ``day`` of ``org_id`` (every org with rows that day when None) to ``url``; what was written."""
    dumper = DayDumper(ch, url, key, **({"chunk_rows": chunk_rows} if chunk_rows else {}))
    terminal = out.isatty()
    written = []
    for org in [org_id] if org_id is not None else await dumper.orgs(day):
        def progress(name: str, rows: int, org: str = org) -> None:
            if terminal:
                out.write(f"\r\033[K{org} {day}: {name} {rows:,} rows")
                out.flush()

        done = await dumper.dump(org, day, progress)
        if terminal:
            out.write("\r\033[K")
        out.write(f"{org} {day}: {done.rows(EVENTS_PARQUET)} events, {done.rows(AUDIT_PARQUET)} audit entries "
                  f"-> {done.path}\n")
        out.flush()
        written.append(done)
    return written
