"""``sse-hub``: serve, migrate, grant, publish, tail, token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

from sse_hub import store
from sse_hub.auth import Verifier
from sse_hub.config import (
    SERVE_OPTIONS,
    Settings,
    data_dir_from_env,
    env_flag,
    load_dsn,
    load_settings,
    parse_duration_s,
    parse_jwt_key,
)
from sse_hub.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError
from sse_hub.errors import ConfigError, HubError
from sse_hub.events import new_event, parse_patterns, validate_topic
from sse_hub.migrate import PRODUCER_ROLE, MigrationError, grant_producer, migrate_dsn
from sse_hub.replay import parse_resume
from sse_hub.terminal import TerminalSink

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

log = logging.getLogger("sse_hub")


class _Parser(argparse.ArgumentParser):
    """Bad usage: one line naming the problem, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _add_dsn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        help="PostgreSQL DSN (else SSE_HUB_DSN, else DATABASE_URL; "
        "without any, the embedded PostgreSQL in --data-dir)",
    )
    parser.add_argument(
        "--data-dir", help="the embedded PostgreSQL's data directory (default .sse-hub/)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sse-hub",
        description="A Server-Sent Events hub on PostgreSQL. "
        "Every flag of 'serve' also reads an SSE_HUB_* environment variable.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser(
        "serve",
        help="run the hub",
        description="Run the hub: GET /events streams, POST /events publishes, "
        "/files serves downloads, /healthz and /metrics for operators. Each flag has an "
        "environment twin, e.g. --port and SSE_HUB_PORT; a flag wins over its variable.",
    )
    for option in SERVE_OPTIONS:
        help_text = f"{option.help} [env {option.env}]"
        if option.switch:
            serve.add_argument(option.flag, dest=option.dest, action="store_true", help=help_text)
        elif option.repeatable:
            serve.add_argument(
                option.flag,
                dest=option.dest,
                action="append",
                metavar=option.metavar,
                help=help_text,
            )
        else:
            serve.add_argument(
                option.flag, dest=option.dest, metavar=option.metavar, help=help_text
            )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)

    migrate = commands.add_parser(
        "migrate",
        help="apply pending database migrations",
        description="Apply the pending files of migrations/ "
        "(safe to run from several hubs at once).",
    )
    _add_dsn(migrate)

    grant = commands.add_parser(
        "grant",
        help="let a database role publish from SQL, and nothing more",
        description=f"Make ROLE (an existing role) a member of {PRODUCER_ROLE}: it may then "
        "call sse_hub.publish() in its own transactions, and cannot read events or touch "
        "the hub's tables. Applies pending migrations first.",
    )
    grant.add_argument("role", metavar="ROLE", help="the database role of a producer")
    _add_dsn(grant)

    publish = commands.add_parser(
        "publish",
        help="publish one event",
        description="Publish one event and print its id as the last line.",
    )
    publish.add_argument("topic", help="the topic, e.g. orders/42")
    publish.add_argument("data", nargs="?", help="the data, or - to read it from stdin")
    publish.add_argument("--event", help="the event type (the SSE 'event:' field)")
    _add_dsn(publish)

    tail = commands.add_parser(
        "tail",
        help="print events as they arrive",
        description="Print events of the given topics (patterns like orders/* and * work) "
        "as they arrive, straight from the database.",
    )
    tail.add_argument("topics", nargs="+", metavar="TOPIC")
    tail.add_argument("--last-event-id", help="replay what came after this id first (or earliest)")
    tail.add_argument(
        "--json", action="store_true", help="print one JSON object per event, for scripts"
    )
    _add_dsn(tail)

    token = commands.add_parser(
        "token",
        help="mint a token for development",
        description="Print a signed token allowing the given topic patterns: HS256 with "
        "--jwt-key (else SSE_HUB_JWT_KEY), or RS256/ES256 with --private-key.",
    )
    for claim, what in (("publish", "publish to"), ("subscribe", "subscribe to")):
        token.add_argument(
            f"--{claim}",
            action="append",
            default=[],
            metavar="PATTERN",
            help=f"may {what} topics matching PATTERN (repeatable; x/* and * work)",
        )
    token.add_argument(
        "--files",
        action="append",
        default=[],
        metavar="PATTERN",
        help="may download paths matching PATTERN (repeatable)",
    )
    token.add_argument(
        "--sub", help="the subject (who this token is for; rate limits count per subject)"
    )
    token.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 7d (default 1h)")
    token.add_argument("--jwt-key", help="the hub's HS256 secret [env SSE_HUB_JWT_KEY]")
    token.add_argument(
        "--private-key", metavar="PEM_FILE", help="sign with this RSA or P-256 private key instead"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "serve": _serve,
        "migrate": _migrate,
        "grant": _grant,
        "publish": _publish,
        "tail": _tail,
        "token": _token,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as exc:
        print(f"sse-hub: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HubError as exc:
        print(f"sse-hub: error: {exc.detail}", file=sys.stderr)
        return EXIT_USAGE
    except (EmbeddedPostgresError, MigrationError, OSError) as exc:
        print(f"sse-hub: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from sse_hub.server import serve

    settings = load_settings(vars(args))
    Verifier.from_settings(settings)  # an unusable public key stops here, before any worker
    return serve(settings, reuse_port=args.reuse_port, pg_bindir=env_flag("PG_BINDIR"))


def _with_database(
    args: argparse.Namespace, work: Callable[[str], Coroutine[Any, Any, int]]
) -> int:
    """Run ``work(dsn)`` on the configured database, else on the embedded one."""
    dsn = load_dsn(args.dsn)
    embedded: EmbeddedPostgres | None = None
    if dsn is None:
        bindir = env_flag("PG_BINDIR")
        embedded = EmbeddedPostgres(
            data_dir_from_env(args.data_dir), bindir=Path(bindir) if bindir else None
        )
        dsn = embedded.start()
    try:
        return asyncio.run(work(dsn))
    finally:
        if embedded is not None and embedded.owned:
            embedded.stop()


def _migrate(args: argparse.Namespace) -> int:
    async def work(dsn: str) -> int:
        applied = await migrate_dsn(dsn)
        print("applied: " + ", ".join(applied) if applied else "nothing to apply")
        return EXIT_OK

    return _with_database(args, work)


def _grant(args: argparse.Namespace) -> int:
    async def work(dsn: str) -> int:
        import asyncpg

        await migrate_dsn(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await grant_producer(conn, args.role)
        finally:
            await conn.close()
        print(f"{args.role} is a member of {PRODUCER_ROLE}: it may call sse_hub.publish()")
        return EXIT_OK

    return _with_database(args, work)


def _publish(args: argparse.Namespace) -> int:
    if args.data is None or args.data == "-":
        if args.data is None and sys.stdin.isatty():
            raise ConfigError("DATA", "give the data, or - to read it from stdin")
        data = sys.stdin.read()
    else:
        data = args.data
    event = new_event(args.topic, data, args.event, max_data_bytes=Settings().max_data_bytes)

    async def work(dsn: str) -> int:
        import asyncpg

        await migrate_dsn(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            (event_id,) = await store.append(conn, [event])
        finally:
            await conn.close()
        print(event_id)
        return EXIT_OK

    return _with_database(args, work)


def _print_line(line: str) -> None:
    print(line, flush=True)


def _tail(args: argparse.Namespace) -> int:
    settings = Settings()
    patterns = parse_patterns(args.topics, max_count=settings.max_topics_per_stream)
    resume = parse_resume(args.last_event_id, [])

    async def work(dsn: str) -> int:
        from sse_hub.feed import FeedClosed
        from sse_hub.hub import Hub

        await migrate_dsn(dsn)
        hub = await Hub.start(Settings(dsn=dsn), dsn, retention=False)
        feed = hub.feed(patterns, resume)
        await feed.open()
        colour = sys.stdout.isatty() and not args.json
        sink = TerminalSink(json_lines=args.json, colour=colour, out=_print_line)
        feed.ready(sink)
        try:
            while True:
                idle = feed.idle()
                if idle is not None:
                    await idle
                    continue
                sink.write(await feed.next_page())
        except FeedClosed:
            return EXIT_OK
        finally:
            feed.close()
            await hub.close()

    return _with_database(args, work)


def _token(args: argparse.Namespace) -> int:
    from sse_hub.auth import mint_token

    for pattern in (*args.publish, *args.subscribe, *args.files):
        validate_topic(pattern, what="pattern")
    try:
        ttl_s = parse_duration_s(args.ttl)
    except ValueError as exc:
        raise ConfigError("--ttl", str(exc)) from None
    private_pem: str | None = None
    key = ""
    if args.private_key:
        private_pem = Path(args.private_key).expanduser().read_text(encoding="ascii")
    else:
        key = args.jwt_key or env_flag("SSE_HUB_JWT_KEY") or ""
        if not key:
            raise ConfigError(
                "--jwt-key", "give the hub's key (or SSE_HUB_JWT_KEY), or --private-key"
            )
        try:
            parse_jwt_key(key)
        except ValueError as exc:
            raise ConfigError("--jwt-key", str(exc)) from None
    try:
        token = mint_token(
            key=key,
            private_key_pem=private_pem,
            publish=args.publish,
            subscribe=args.subscribe,
            files=args.files,
            subject=args.sub,
            ttl_s=ttl_s,
        )
    except ValueError as exc:
        raise ConfigError("--private-key", str(exc)) from None
    print(token)
    return EXIT_OK
