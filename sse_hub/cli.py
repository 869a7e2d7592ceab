"""``sse-hub``: serve, migrate, grant, publish, tail, probe, token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

import asyncpg

from sse_hub import store
from sse_hub.config import (
    SERVE_OPTIONS,
    TOKEN_ENV,
    Option,
    Settings,
    client_token,
    load_settings,
    parse_duration_s,
)
from sse_hub.database import open_database
from sse_hub.embedded_pg import EmbeddedPostgresError
from sse_hub.errors import ConfigError, HubError
from sse_hub.events import new_event, parse_patterns, validate_topic
from sse_hub.frames import ParsedFrame
from sse_hub.migrate import PRODUCER_ROLE, MigrationError, grant_producer, migrate_dsn
from sse_hub.probe_plan import (
    DEFAULT_CONNECTIONS,
    DEFAULT_DURATION,
    DEFAULT_GRACE,
    DEFAULT_RATE_PER_S,
    MAX_CONNECTIONS,
    TOPIC_PREFIX,
    make_plan,
)
from sse_hub.replay import parse_resume
from sse_hub.terminal import TerminalSink, render_json, render_text

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3  # probe: the hub refused or could not be reached; nothing was measured

log = logging.getLogger("sse_hub")


class _Parser(argparse.ArgumentParser):
    """Bad usage: one line naming the problem, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    help_text = f"{option.help} [env {', '.join(option.env_names)}]"
    if option.switch:
        parser.add_argument(option.flag, dest=option.dest, action="store_true", help=help_text)
    elif option.repeatable:
        parser.add_argument(
            option.flag, dest=option.dest, action="append", metavar=option.metavar, help=help_text
        )
    else:
        parser.add_argument(option.flag, dest=option.dest, metavar=option.metavar, help=help_text)


# What the commands other than serve take on their command line; every other
# setting (--max-data, --max-topics...) they read from its SSE_HUB_* variable.
_DATABASE_FLAGS = ("--dsn", "--data-dir", "--pg-bindir")


def _add_database_options(parser: argparse.ArgumentParser) -> None:
    for option in SERVE_OPTIONS:
        if option.flag in _DATABASE_FLAGS:
            _add_option(parser, option)


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
        _add_option(serve, option)

    migrate = commands.add_parser(
        "migrate",
        help="apply pending database migrations",
        description="Apply the pending files of migrations/ "
        "(safe to run from several hubs at once).",
    )
    _add_database_options(migrate)

    grant = commands.add_parser(
        "grant",
        help="let a database role publish from SQL, and nothing more",
        description=f"Make ROLE (an existing role) a member of {PRODUCER_ROLE}: it may then "
        "call sse_hub.publish() in its own transactions, and cannot read events or touch "
        "the hub's tables. Applies pending migrations first.",
    )
    grant.add_argument("role", metavar="ROLE", help="the database role of a producer")
    _add_database_options(grant)

    publish = commands.add_parser(
        "publish",
        help="publish one event",
        description="Publish one event and print its id as the last line. "
        "Needs a migrated database (sse-hub serve or sse-hub migrate).",
    )
    publish.add_argument("topic", help="the topic, e.g. orders/42")
    publish.add_argument("data", nargs="?", help="the data, or - to read it from stdin")
    publish.add_argument("--event", help="the event type (the SSE 'event:' field)")
    _add_database_options(publish)

    tail = commands.add_parser(
        "tail",
        help="print events as they arrive",
        description="Print events of the given topics (patterns like orders/* and * work) "
        "as they arrive: from a hub over HTTP with --url (reconnecting by itself, resuming "
        "from the last event printed), else straight from the database (which sse-hub serve "
        "or sse-hub migrate has migrated).",
    )
    tail.add_argument("topics", nargs="+", metavar="TOPIC")
    tail.add_argument(
        "--url", help="read from the hub at this address, e.g. http://hub:8080, not the database"
    )
    tail.add_argument("--token", help=f"the bearer token sent with --url [env {TOKEN_ENV}]")
    tail.add_argument("--last-event-id", help="replay what came after this id first (or earliest)")
    tail.add_argument(
        "--json", action="store_true", help="print one JSON object per event, for scripts"
    )
    _add_database_options(tail)

    _add_probe(commands)

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


def _add_probe(commands: Any) -> None:
    probe = commands.add_parser(
        "probe",
        help="check a deployment end to end: loss, order, latency, buffering",
        description="Publish a numbered sequence to the hub at URL and read it back on several "
        "connections, through whatever stands in front of the hub, dropping connections on "
        "purpose if asked; report loss, duplicates, misorder, reconnects, publish-to-receive "
        "latency and whether a proxy buffers the stream. Exit status 0 when nothing was lost, "
        "duplicated or misordered, 1 otherwise, 2 for bad usage, 3 when the hub refused or "
        "could not be reached.",
    )
    probe.add_argument("url", metavar="URL", help="the hub as clients reach it, e.g. https://hub")
    probe.add_argument(
        "--token",
        help=f"a bearer token that may publish and subscribe to the topic [env {TOKEN_ENV}]",
    )
    probe.add_argument(
        "--topic", help=f"the topic to use (default: {TOPIC_PREFIX}<random>, new each run)"
    )
    probe.add_argument(
        "--connections",
        default=str(DEFAULT_CONNECTIONS),
        metavar="N",
        help=f"subscriptions reading the sequence, 1 to {MAX_CONNECTIONS} "
        f"(default {DEFAULT_CONNECTIONS})",
    )
    probe.add_argument(
        "--duration",
        default=DEFAULT_DURATION,
        help=f"how long to publish, e.g. 10s, 5m (default {DEFAULT_DURATION})",
    )
    probe.add_argument(
        "--rate",
        default=f"{DEFAULT_RATE_PER_S:g}",
        metavar="PER_S",
        help=f"events published per second (default {DEFAULT_RATE_PER_S:g})",
    )
    probe.add_argument(
        "--drop-every",
        default="0",
        metavar="DURATION",
        help="drop one connection on purpose this often, in turn, e.g. 2s (default 0: never)",
    )
    probe.add_argument(
        "--grace",
        default=DEFAULT_GRACE,
        metavar="DURATION",
        help="how long to wait for the streams to open, and for late events at the end "
        f"(default {DEFAULT_GRACE})",
    )
    probe.add_argument("--json", action="store_true", help="print the report as JSON")


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
        "probe": _probe,
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
    from sse_hub.app import check_startup
    from sse_hub.server import serve

    settings = load_settings(vars(args))
    check_startup(settings)  # before any worker starts
    return serve(settings)


def _with_database(settings: Settings, work: Callable[[str], Coroutine[Any, Any, int]]) -> int:
    """Run ``work(dsn)`` on the configured database, else on the embedded one."""

    async def run() -> int:
        database = await open_database(settings)
        try:
            return await work(database.dsn)
        except (
            asyncpg.InvalidSchemaNameError,
            asyncpg.UndefinedTableError,
            asyncpg.UndefinedFunctionError,
        ) as exc:
            raise MigrationError(
                f"{exc}: the database is missing sse_hub's tables or functions; "
                "run 'sse-hub migrate' (sse-hub serve also applies them)"
            ) from None
        finally:
            await database.close()

    return asyncio.run(run())


def _migrate(args: argparse.Namespace) -> int:
    async def work(dsn: str) -> int:
        applied = await migrate_dsn(dsn)
        print("applied: " + ", ".join(applied) if applied else "nothing to apply")
        return EXIT_OK

    return _with_database(load_settings(vars(args)), work)


def _grant(args: argparse.Namespace) -> int:
    async def work(dsn: str) -> int:
        await migrate_dsn(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await grant_producer(conn, args.role)
        finally:
            await conn.close()
        print(f"{args.role} is a member of {PRODUCER_ROLE}: it may call sse_hub.publish()")
        return EXIT_OK

    return _with_database(load_settings(vars(args)), work)


def _publish(args: argparse.Namespace) -> int:
    settings = load_settings(vars(args))
    if args.data is None or args.data == "-":
        if args.data is None and sys.stdin.isatty():
            raise ConfigError("DATA", "give the data, or - to read it from stdin")
        data = sys.stdin.read()
    else:
        data = args.data
    event = new_event(args.topic, data, args.event, max_data_bytes=settings.max_data_bytes)

    async def work(dsn: str) -> int:
        conn = await asyncpg.connect(dsn)
        try:
            (event_id,) = await store.append(conn, [event])
        finally:
            await conn.close()
        print(event_id)
        return EXIT_OK

    return _with_database(settings, work)


def _print_line(line: str) -> None:
    print(line, flush=True)


def _tail(args: argparse.Namespace) -> int:
    if args.url:
        return _tail_hub(args)
    if args.token:
        raise ConfigError("--token", "goes with --url; the database takes no token")
    settings = load_settings(vars(args))
    patterns = parse_patterns(args.topics, max_count=settings.max_topics_per_stream)
    resume = parse_resume(args.last_event_id, [])

    async def work(dsn: str) -> int:
        from sse_hub.feed import FeedClosed
        from sse_hub.hub import Hub

        hub = await Hub.start(settings, dsn, retention=False)
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

    return _with_database(settings, work)


def _tail_hub(args: argparse.Namespace) -> int:
    """``tail --url``: the hub's stream through the Python client, printed as ``tail`` prints."""
    from sse_hub.client import Client, ProblemError, Reset, StreamError

    for flag in _DATABASE_FLAGS:
        if getattr(args, flag.removeprefix("--").replace("-", "_")):
            raise ConfigError(flag, "is for the database; --url reads from a hub: give one of them")
    parse_resume(args.last_event_id, [])  # a bad id is a usage error, as without --url
    colour = sys.stdout.isatty() and not args.json

    async def work() -> int:
        async with Client(args.url, token=client_token(args.token)) as hub:
            async for event in hub.subscribe(*args.topics, last_event_id=args.last_event_id):
                event_id = None if isinstance(event, Reset) else str(event.id)
                frame = ParsedFrame(id=event_id, event=event.event, data=event.data)
                _print_line(render_json(frame) if args.json else render_text(frame, colour=colour))
        return EXIT_OK

    try:
        return asyncio.run(work())
    except (ProblemError, StreamError) as exc:
        print(f"sse-hub: error: {args.url}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _probe(args: argparse.Namespace) -> int:
    from sse_hub.probe import ProbeRefused, run_probe
    from sse_hub.probe_report import render_json, render_text

    if not args.url.startswith(("http://", "https://")):
        raise ConfigError("URL", f"must start with http:// or https://, got {args.url!r}")
    plan = make_plan(
        topic=args.topic,
        connections=args.connections,
        duration=args.duration,
        rate=args.rate,
        drop_every=args.drop_every,
        grace=args.grace,
    )
    # Planned drops are the point of the run, and the report counts every reconnect.
    logging.getLogger("sse_hub.client").setLevel(logging.WARNING)
    print(
        f"sse-hub probe: {plan.events} events to {plan.topic} in {plan.duration_s:g} s, "
        f"read on {plan.connections} connection(s) of {args.url}",
        file=sys.stderr,
        flush=True,
    )
    try:
        report = asyncio.run(run_probe(args.url, plan, token=client_token(args.token)))
    except ProbeRefused as exc:
        print(f"sse-hub: error: {args.url}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("sse-hub: probe interrupted: no report", file=sys.stderr)
        return EXIT_FAILURE
    print(render_json(report) if args.json else render_text(report))
    return EXIT_OK if report.ok else EXIT_FAILURE


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
        key = load_settings(vars(args)).jwt_key or ""
        if not key:
            raise ConfigError(
                "--jwt-key", "give the hub's key (or SSE_HUB_JWT_KEY), or --private-key"
            )
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
