"""Numbered SQL migrations (``sinks/migrations/NNNN_name.sql``), applied once each, in order.

A file may hold several statements: it is split on semicolons, so keep them out of comments.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from sinks.clickhouse import ClickHouse

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
log = logging.getLogger(__name__)


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration, in version order."""
    found = []
    for path in sorted(MIGRATIONS_DIR.iterdir()):
        m = _NAME.match(path.name)
        if m:
            found.append((int(m.group(1)), path.name, path.read_text()))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {MIGRATIONS_DIR}")
    return found


async def migrate(ch: ClickHouse) -> list[str]:
    """Create the database and apply pending migrations; return the names applied."""
    db = ch.database
    await ch.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    await ch.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    applied = {r[0] for r in (await ch.query(f"SELECT version FROM {db}.schema_migrations")).rows}
    done = []
    for version, name, sql in migrations():
        if version in applied:
            continue
        for statement in filter(str.strip, sql.replace("{db}", db).split(";")):
            await ch.command(statement)
        await ch.command(
            f"INSERT INTO {db}.schema_migrations (version, name) VALUES ({{v:UInt32}}, {{n:String}})",
            parameters={"v": version, "n": name},
        )
        log.info("applied migration %s", name)
        done.append(name)
    return done
