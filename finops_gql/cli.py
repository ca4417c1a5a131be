"""finops-gql serve | worker | sync | migrate | catalog import | export | token | print-schema |
dev opencost"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from finops_gql.config import DEFAULT_SOURCE, ConfigError, Settings, redact_url
from finops_gql.errors import MigrationRefused
from finops_gql.logs import configure_logging

log = logging.getLogger("finops_gql")


def _check_database(settings: Settings) -> None:
    """Fail before the work starts, with one line rather than a traceback from a lifespan, a
    worker's startup or a first query. Migrations are required unless MIGRATE_ON_START applies
    them."""
    from finops_gql.db.setup import check_database

    asyncio.run(
        check_database(
            settings.database_url,
            settings.database_connect_timeout_s,
            migrated=not settings.migrate_on_start,
        )
    )


class StartupError(Exception):
    """A dependency named by a setting cannot be reached at start: exit 2, one line."""


async def _check_redis(settings: Settings) -> None:
    """The worker's queue: arq would retry, then print a traceback; say it in one line instead."""
    from arq import create_pool
    from arq.connections import RedisSettings
    from redis.exceptions import RedisError

    where = f"REDIS_URL={redact_url(settings.redis_url)}"
    try:
        redis_settings = RedisSettings.from_dsn(settings.redis_url)
    except ValueError as exc:
        raise ConfigError(f"{where} is malformed: {exc}") from None
    redis_settings.conn_retries = 0
    redis_settings.conn_timeout = 5
    try:
        pool = await create_pool(redis_settings)
    except (OSError, RedisError) as exc:
        raise StartupError(f"cannot reach Redis at {where}: {type(exc).__name__}") from None
    await pool.aclose()


def default_workers() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a
    container's CPU limit), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores or 1, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores or 1)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from finops_gql.app import create_app
    from finops_gql.httpserver import settle_heap, uvicorn_options

    workers = args.workers
    if workers is None:
        # SQLite has one writer at a time, and writers of other processes wait at most 5 s for
        # it: one process unless asked for more (README, Several replicas).
        workers = 1 if settings.database_url.startswith("sqlite:") else default_workers()
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if args.migrate:
        settings = settings.with_(migrate_on_start=True)
    settings.check_serve_host(args.host)
    options = {
        "host": args.host,
        "port": args.port,
        "log_config": None,
        "access_log": False,
        "proxy_headers": True,
        "forwarded_allow_ips": args.forwarded_allow_ips,
        **uvicorn_options(settings),
    }
    if workers == 1:
        app = create_app(settings)
        _check_database(settings)
        settle_heap()
        uvicorn.run(app, **options)
        return 0
    create_app(settings)  # refuses a bad JWT setup here, once, not in every worker
    if settings.migrate_on_start:
        # Once, before the workers start: concurrent migrations would race each other.
        asyncio.run(_migrate(settings))
        os.environ["MIGRATE_ON_START"] = "0"  # the workers read the environment
    _check_database(settings.with_(migrate_on_start=False))
    log.info("serving with %d worker processes", workers)
    uvicorn.run("finops_gql.asgi:app", factory=True, workers=workers, **options)
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from arq.worker import Worker

    from finops_gql.worker import worker_settings

    options = worker_settings(settings)  # validates COST_SYNC_CRON before connecting
    _check_database(settings)
    asyncio.run(_check_redis(settings))
    log.info("worker starting: COST_SYNC_CRON=%r (UTC)", settings.cost_sync_cron)
    Worker(**options, burst=args.burst).run()
    return 0


async def _migrate(settings: Settings) -> None:
    from finops_gql.db.setup import close_db, migrate

    try:
        applied = await migrate(settings.database_url, settings.database_connect_timeout_s)
    finally:
        await close_db()
    for name in applied:
        print(f"applied {name}")
    if applied:
        print(f"database is up to date ({len(applied)} migrations applied)")
    else:
        print("database was already up to date")


async def _sync(settings: Settings, args: argparse.Namespace) -> int:
    from finops_gql.costs.sync import SyncAlreadyRunning, SyncLeaseLost
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
        except SyncLeaseLost as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    span = f"{run.first_day}..{run.last_day}" if run.first_day else "nothing new"
    print(
        f"sync {run.id} {run.status}: days {span}, {run.records} records for "
        f"{run.components} components, {run.opencost_requests} OpenCost requests"
    )
    if run.status == "partial":
        # Written, but not everything: say which aggregates the next run will fetch again.
        print(f"warning: sync {run.id} was partial: {run.error}", file=sys.stderr)
        for failure in run.failed_aggregates or []:
            # Named by source with OPENCOST_SOURCES (prod-eu/label:app), as in SyncRun.error.
            source = failure.get("source", DEFAULT_SOURCE)
            where = "" if source == DEFAULT_SOURCE else f"{source}/"
            print(f"  {where}{failure['aggregate']}: {failure['error']}", file=sys.stderr)
        return 1
    return 0


def _read_bounded(path: str, max_bytes: int) -> bytes:
    # One byte over the limit is enough to refuse the file: never read a huge one whole.
    with open(path, "rb") as handle:
        return handle.read(max_bytes + 1)


async def _catalog_import(settings: Settings, args: argparse.Namespace) -> int:
    from finops_gql.catalog.backstage import CatalogError, import_catalog, parse_catalog
    from finops_gql.db.setup import close_db, init_db

    # Exit 2 for a file that cannot be read or is not a valid catalog: like a bad setting, the
    # input must change. Every file is checked before the database is opened.
    limit = settings.catalog_max_bytes
    texts = []
    for path in args.files:
        try:
            data = await asyncio.to_thread(_read_bounded, path, limit)
        except OSError as exc:
            print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        try:
            parse_catalog(
                data,
                path,
                limit,
                budget_max_usd=settings.budget_max_usd,
                currency=settings.cost_currency,
            )
        except CatalogError as exc:
            print(f"error: {exc} (nothing imported)", file=sys.stderr)
            return 2
        texts.append((path, data))
    await init_db(settings.database_url, settings.database_connect_timeout_s)
    try:
        for path, data in texts:
            try:
                result = await import_catalog(
                    data,
                    path,
                    limit,
                    budget_max_usd=settings.budget_max_usd,
                    currency=settings.cost_currency,
                )
            except CatalogError as exc:
                print(f"error: {exc} (nothing imported from {path})", file=sys.stderr)
                return 2
            extra = (
                f", {result.systems} systems, {result.domains} domains"
                if result.systems or result.domains
                else ""
            )
            print(f"{path}: {result.teams} teams, {result.components} components{extra} imported")
            for skipped in result.skipped:
                print(f"  skipped {skipped}")
    finally:
        await close_db()
    return 0


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    """The showback CSV of a month, written as it is read (costs/export.py): to a file, which is
    opened only once the input is checked, or to stdout. Bad input exits 2, like a bad file."""
    from finops_gql.errors import ServiceError
    from finops_gql.services import open_services

    async with open_services(settings, publish_budgets=False) as services:
        try:
            team_id = None
            if args.team is not None:
                team = await services.catalog.team_by_slug(args.team)
                if team is None:
                    print(f"error: no team with slug {args.team!r}", file=sys.stderr)
                    return 2
                team_id = team.id
            chunks = await services.costs.showback_csv(args.month, team_id)
        except ServiceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.output:
            path = Path(args.output)
            try:
                out = await asyncio.to_thread(path.open, "w", encoding="utf-8", newline="")
            except OSError as exc:
                print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
                return 2
            try:
                async for chunk in chunks:
                    await asyncio.to_thread(out.write, chunk)
            finally:
                await asyncio.to_thread(out.close)
        else:
            async for chunk in chunks:
                sys.stdout.write(chunk)
            sys.stdout.flush()
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from finops_gql.auth import AuthError, mint_token, parse_ttl

    try:
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        token = mint_token(settings, args.sub, args.role or [], ttl, teams=args.team)
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
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="uvicorn worker processes, each with its own database pool and event relay "
        "(default: the cores this process may use on PostgreSQL, 1 on SQLite)",
    )
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

    export = sub.add_parser(
        "export",
        help="write a month's showback CSV (one row per component with cost)",
        description="One RFC 4180 CSV row per component with cost in the month: team, system, "
        "the resource columns and the total, as stored. Same rows as GET "
        "/api/v1/cost/export.csv.",
    )
    export.add_argument("--month", required=True, help="YYYY-MM")
    export.add_argument("--team", metavar="SLUG", help="only this team and its sub-teams")
    export.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")

    token = sub.add_parser("token", help="mint an HS256 token with JWT_SECRET, for local use")
    token.add_argument("--sub", required=True)
    token.add_argument("--role", action="append", help="repeatable, e.g. --role admin")
    token.add_argument(
        "--team", action="append", help="repeatable team slug, written to JWT_TEAMS_CLAIM"
    )
    token.add_argument("--ttl", default="1h", help="30m, 1h, 7d ... (default 1h)")

    schema = sub.add_parser("print-schema", help="print the GraphQL SDL")
    schema.add_argument("--output", "-o")

    dev = sub.add_parser("dev", help="local development helpers")
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    stand_in = dev_sub.add_parser(
        "opencost",
        help="run the local OpenCost stand-in (answers /allocation and /healthz)",
        description="Serve a stand-in for OpenCost's API with generated costs for the given "
        "catalog files' components, in OpenCost's real answer shape. Never for production.",
    )
    stand_in.add_argument("catalog", nargs="*", help="Backstage catalog files to cost")
    stand_in.add_argument("--host", default="127.0.0.1")
    stand_in.add_argument("--port", type=int, default=9003, help="default 9003, the API port")
    stand_in.add_argument(
        "--ui", action="store_true", help="serve under /model/ like OpenCost's UI port 9090"
    )
    stand_in.add_argument("--keys-file", help="also cost these keys (one per line)")
    return parser


def _dev_opencost(args: argparse.Namespace) -> int:
    from finops_gql.dev import opencost_fake

    argv = [*args.catalog, "--host", args.host, "--port", str(args.port)]
    if args.ui:
        argv.append("--ui")
    if args.keys_file:
        argv += ["--keys-file", args.keys_file]
    print(
        f"OpenCost stand-in on http://{args.host}:{args.port}"
        + ("/model" if args.ui else "")
        + " (Ctrl-C stops it)",
        flush=True,
    )
    opencost_fake.main(argv)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Exit codes: 0 done; 1 the work failed (OpenCost down, a refused catalog file, a sync
    already running); 2 the command could not start: a bad setting or a database that
    DATABASE_URL names but that cannot be opened (both named on one line, no traceback)."""
    from finops_gql.db.setup import DatabaseUnavailable

    args = build_parser().parse_args(argv)
    configure_logging()
    if args.command == "print-schema":
        sys.exit(_print_schema(args))
    if args.command == "dev":
        sys.exit(_dev_opencost(args))
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
            _check_database(settings)
            code = asyncio.run(_sync(settings, args))
        elif args.command == "export":
            _check_database(settings.with_(migrate_on_start=False))
            code = asyncio.run(_export(settings, args))
        elif args.command == "catalog":
            _check_database(settings.with_(migrate_on_start=False))  # import never migrates
            code = asyncio.run(_catalog_import(settings, args))
        else:
            code = _token(settings, args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        code = 2
    except MigrationRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except (DatabaseUnavailable, StartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
