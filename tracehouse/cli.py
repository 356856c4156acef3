"""``tracehouse run | worker | api | migrate | dump | verify-export``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from tracehouse.settings import Settings


def _migrate(settings: Settings) -> None:
    from sinks.clickhouse import ClickHouse
    from sinks.migrate import migrate

    async def go() -> None:
        ch = ClickHouse.from_settings(settings)
        try:
            applied = await migrate(ch)
            print("applied: " + (", ".join(applied) or "nothing (up to date)"))
        finally:
            await ch.close()

    asyncio.run(go())


def _dump(settings: Settings, day: str, org: str | None, url: str) -> int:
    from schemas.checkpoints import load_signing_key
    from schemas.day_dump import parse_day
    from sinks.clickhouse import ClickHouse
    from tracehouse.dump import dump_day

    try:
        date = parse_day(day)
    except ValueError as exc:
        print(f"tracehouse: --date: {exc}", file=sys.stderr)
        return 2

    async def go() -> None:
        ch = ClickHouse.from_settings(settings)
        try:
            key = load_signing_key(settings.checkpoint_key_path, settings.checkpoint_key)
            await dump_day(ch, key, url, date, org, sys.stdout)
        finally:
            await ch.close()

    asyncio.run(go())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tracehouse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    every = sub.add_parser("run", help="broker (embedded unless TRACEHOUSE_KAFKA_BOOTSTRAP), worker and API")
    work = sub.add_parser("worker", help="the worker only (all its parts, or those given with --parts)")
    for command in (every, work):
        command.add_argument("--parts", type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
                             help="comma-separated worker parts to run: chain, sink, checkpointer, rollups, "
                                  "webhooks, dispatch, dumps (default: all of them; dumps only with "
                                  "TRACEHOUSE_DUMP_URL)")
    sub.add_parser("api", help="the HTTP API only")
    sub.add_parser("migrate", help="apply ClickHouse migrations and exit")
    dump = sub.add_parser("dump", help="write one UTC day of each org's events and audit log (Parquet, gzipped "
                                       "JSON lines, a signed manifest) to a directory or object storage")
    dump.add_argument("--date", required=True, help="the UTC day, YYYY-MM-DD")
    dump.add_argument("--org", help="only this org (default: every org with events or audit entries that day)")
    dump.add_argument("--to", required=True, dest="url",
                      help="a directory, or an s3://, gs:// or az:// URL (credentials as fsspec's backend reads them)")
    check = sub.add_parser("verify-export", help="verify a single-trace JSON export, or a daily dump's "
                                                 "manifest.json and its files, offline")
    check.add_argument("file", help="the export file, or a dump's manifest.json (a path or an fsspec URL)")
    check.add_argument("--public-key", required=True, help="base64 or PEM public key, or a file holding it")
    args = parser.parse_args(argv)
    if args.command == "verify-export":
        from tracehouse.verify_export import main as verify_export

        return verify_export(args.file, args.public_key)

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"tracehouse: invalid setting: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "migrate":
        _migrate(settings)
        return 0
    if args.command == "dump":
        return _dump(settings, args.date, args.org, args.url)

    from tracehouse.runtime import ensure_admin_key, run

    if args.command in ("run", "api"):
        settings = ensure_admin_key(settings)
    parts = getattr(args, "parts", None)
    if parts is not None:
        from streams.worker import chosen_parts

        try:
            chosen_parts(settings, parts)
        except ValueError as exc:
            print(f"tracehouse: {exc}", file=sys.stderr)
            return 2
    run(settings, worker=args.command in ("run", "worker"), api=args.command in ("run", "api"), parts=parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
