"""finops-gql serve | worker | sync | migrate | catalog import | token | print-schema"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from finops_gql.config import ConfigError, Settings
from finops_gql.logs import configure_logging

log = logging.getLogger("finops_gql")


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from finops_gql.app import create_app

    if args.migrate:
        settings = settings.with_(migrate_on_start=True)
    settings.check_serve_host(args.host)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
    )
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from arq.worker import Worker

    from finops_gql.worker import worker_settings

    options = worker_settings(settings)  # validates COST_SYNC_CRON before connecting
    log.info("worker starting: COST_SYNC_CRON=%r (UTC)", settings.cost_sync_cron)
    Worker(**options, burst=args.burst).run()
    return 0


async def _migrate(settings: Settings) -> None:
    from finops_gql.db.setup import close_db, migrate

    try:
        await migrate(settings.database_url)
    finally:
        await close_db()
    print("database is up to date")


async def _sync(settings: Settings, args: argparse.Namespace) -> int:
    from finops_gql.costs.sync import SyncAlreadyRunning
    from finops_gql.opencost.errors import OpenCostUnavailable
    from finops_gql.services import open_services

    # No Redis needed: budget events are logged, and only published when the worker runs the sync.
    async with open_services(settings, publish_budgets=False) as services:
        try:
            run = await services.sync.run("cli", backfill_days=args.backfill)
        except SyncAlreadyRunning as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except OpenCostUnavailable as exc:
            print(f"error: sync failed, nothing was written: {exc}", file=sys.stderr)
            return 1
    span = f"{run.first_day}..{run.last_day}" if run.first_day else "nothing new"
    print(
        f"sync {run.id} {run.status}: days {span}, {run.records} records for "
        f"{run.components} components, {run.opencost_requests} OpenCost requests"
    )
    return 0


async def _catalog_import(settings: Settings, args: argparse.Namespace) -> int:
    from finops_gql.catalog.backstage import CatalogError, import_catalog
    from finops_gql.db.setup import close_db, init_db

    texts = []
    for path in args.files:
        try:
            texts.append((path, await asyncio.to_thread(Path(path).read_text, encoding="utf-8")))
        except OSError as exc:
            print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 1
    await init_db(settings.database_url)
    try:
        for path, text in texts:
            try:
                result = await import_catalog(text, path)
            except CatalogError as exc:
                print(f"error: {exc} (nothing imported from {path})", file=sys.stderr)
                return 1
            print(f"{path}: {result.teams} teams, {result.components} components imported")
            for skipped in result.skipped:
                print(f"  skipped {skipped}")
    finally:
        await close_db()
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from finops_gql.auth import AuthError, mint_token, parse_ttl

    try:
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        token = mint_token(settings, args.sub, args.role or [], ttl)
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0


def _print_schema(args: argparse.Namespace) -> int:
    from finops_gql.graphql.schema import schema

    text = schema.as_str() + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finops-gql", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve GraphQL and the REST routes")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--migrate", action="store_true", help="apply migrations at start")
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1")

    worker = sub.add_parser("worker", help="run the arq worker (cost sync on COST_SYNC_CRON)")
    worker.add_argument("--burst", action="store_true", help="run queued jobs, then exit")

    sync = sub.add_parser("sync", help="run one cost sync now, in the foreground (no Redis)")
    sync.add_argument(
        "--backfill", type=int, metavar="DAYS", help="re-fetch the last DAYS complete days"
    )

    sub.add_parser("migrate", help="apply database migrations")

    catalog = sub.add_parser("catalog", help="catalog commands")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    imp = catalog_sub.add_parser("import", help="import Backstage catalog-info.yaml files")
    imp.add_argument("files", nargs="+")

    token = sub.add_parser("token", help="mint an HS256 token with JWT_SECRET, for local use")
    token.add_argument("--sub", required=True)
    token.add_argument("--role", action="append", help="repeatable, e.g. --role admin")
    token.add_argument("--ttl", default="1h", help="30m, 1h, 7d ... (default 1h)")

    schema = sub.add_parser("print-schema", help="print the GraphQL SDL")
    schema.add_argument("--output", "-o")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging()
    if args.command == "print-schema":
        sys.exit(_print_schema(args))
    try:
        settings = Settings.from_env()
        if args.command == "serve":
            code = _serve(settings, args)
        elif args.command == "worker":
            code = _worker(settings, args)
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
            code = 0
        elif args.command == "sync":
            if args.backfill is not None and not 1 <= args.backfill <= 400:
                raise ConfigError("--backfill must be between 1 and 400 days")
            code = asyncio.run(_sync(settings, args))
        elif args.command == "catalog":
            code = asyncio.run(_catalog_import(settings, args))
        else:
            code = _token(settings, args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
