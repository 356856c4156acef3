"""``tracehouse run | worker | api | migrate | verify-export``."""

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tracehouse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    every = sub.add_parser("run", help="broker (embedded unless TRACEHOUSE_KAFKA_BOOTSTRAP), worker and API")
    work = sub.add_parser("worker", help="the worker only (all its parts, or those given with --parts)")
    for command in (every, work):
        command.add_argument("--parts", type=lambda text: [p.strip() for p in text.split(",") if p.strip()],
                             help="comma-separated worker parts to run: chain, sink, checkpointer, rollups, "
                                  "webhooks, dispatch (default: all of them)")
    sub.add_parser("api", help="the HTTP API only")
    sub.add_parser("migrate", help="apply ClickHouse migrations and exit")
    check = sub.add_parser("verify-export", help="verify a single-trace JSON export offline")
    check.add_argument("file")
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
