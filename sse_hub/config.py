"""Settings: one frozen value built from command-line flags and ``SSE_HUB_*`` variables.

This is the only module that reads the environment, and it reads nothing else:
paths (``--files-dir``, ``--jwt-public-key``) stay paths here, and the code that
uses them checks them at start-up. Every option is declared once in
``SERVE_OPTIONS``; the CLI builds its flags from the same table, and every
command loads its settings through ``load_settings``, so a flag, its environment
variables and its help text cannot drift apart. A flag given on the command line
wins over its environment variables (in the order of ``Option.env_names``),
which win over the default.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sse_hub.errors import ConfigError
from sse_hub.ratelimit import IPNetwork, Rate, is_loopback, parse_rate

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_HEARTBEAT_S = 15.0
DEFAULT_RETRY_MS = 3000
DEFAULT_RETENTION_S = 24 * 3600.0
DEFAULT_WORKERS = 1
DEFAULT_DATA_DIR = Path(".sse-hub")
DEFAULT_SHUTDOWN_TIMEOUT_S = 10.0
DEFAULT_REQUEST_HEAD_TIMEOUT_S = 10.0
DEFAULT_MAX_DATA_BYTES = 256 * 1024
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_BATCH_EVENTS = 1000
DEFAULT_MAX_TOPICS_PER_STREAM = 64
DEFAULT_MAX_STREAMS = 20_000
DEFAULT_DB_POOL_SIZE = 10
DEFAULT_SUBSCRIBER_BUFFER_BYTES = 1024 * 1024
DEFAULT_WRITE_TIMEOUT_S = 30.0
DEFAULT_FILE_CHUNK_BYTES = 1024 * 1024
# Per client (token subject, else address), for clients that are not on loopback.
DEFAULT_RATE_PUBLISH = Rate(per_s=50.0, burst=500)
DEFAULT_RATE_CONNECT = Rate(per_s=20.0, burst=500)
# A proxy on this machine (nginx in front) is believed out of the box.
DEFAULT_TRUSTED_PROXIES: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
# RFC 7518, section 3.2: an HS256 key must be at least as long as the hash (256 bits).
MIN_JWT_KEY_BYTES = 32
# Caches may keep a download but must revalidate it (a cheap 304 by ETag) before
# reuse: the hub cannot know whether a path is ever overwritten ("latest.tar.gz").
# Unlike "public" or "must-revalidate", "no-cache" does not let shared caches
# reuse a response to a request that carried an Authorization header (RFC 9111
# section 3.5). Versioned artefacts can use "public, max-age=31536000, immutable".
DEFAULT_FILES_CACHE_CONTROL = "no-cache"

_DURATION_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([a-zA-Z]*)")


@dataclass(frozen=True, kw_only=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    dsn: str | None = None
    files_dir: Path | None = None  # checked by the hub at start-up (downloads.check_files_dir)
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    retry_ms: int = DEFAULT_RETRY_MS
    retention_s: float = DEFAULT_RETENTION_S
    jwt_key: str | None = None
    jwt_public_key: Path | None = None  # a PEM file, read by auth.Verifier.from_settings
    cors_origins: tuple[str, ...] = ()
    workers: int = DEFAULT_WORKERS
    insecure_no_auth: bool = False
    allow_tokens_without_exp: bool = False
    metrics_token: str | None = None
    no_access_log: bool = False
    data_dir: Path = DEFAULT_DATA_DIR
    pg_bindir: Path | None = None  # None: embedded_pg.find_bindir looks for them
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    request_head_timeout_s: float = DEFAULT_REQUEST_HEAD_TIMEOUT_S
    max_data_bytes: int = DEFAULT_MAX_DATA_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch_events: int = DEFAULT_MAX_BATCH_EVENTS
    max_topics_per_stream: int = DEFAULT_MAX_TOPICS_PER_STREAM
    max_streams: int = DEFAULT_MAX_STREAMS
    db_pool_size: int = DEFAULT_DB_POOL_SIZE
    subscriber_buffer_bytes: int = DEFAULT_SUBSCRIBER_BUFFER_BYTES
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S
    file_chunk_bytes: int = DEFAULT_FILE_CHUNK_BYTES
    rate_publish: Rate | None = DEFAULT_RATE_PUBLISH
    rate_connect: Rate | None = DEFAULT_RATE_CONNECT
    rate_limit_loopback: bool = False
    trusted_proxies: tuple[IPNetwork, ...] = DEFAULT_TRUSTED_PROXIES
    files_cache_control: str = DEFAULT_FILES_CACHE_CONTROL

    @property
    def auth_enabled(self) -> bool:
        return self.jwt_key is not None or self.jwt_public_key is not None


# ---- value parsers: each raises ValueError with a message that names no flag


def parse_duration_s(text: str) -> float:
    """``30s``, ``15m``, ``24h``, ``7d`` -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected a number with unit s, m, h or d (e.g. 24h), got {text!r}")
    number, unit = match.groups()
    if unit not in _DURATION_UNITS_S:
        raise ValueError(f"unknown duration unit {unit!r} in {text!r}; use s, m, h or d")
    seconds = float(number) * _DURATION_UNITS_S[unit]
    if seconds <= 0:
        raise ValueError(f"must be greater than zero, got {text!r}")
    return seconds


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value <= 86400:
        raise ValueError(f"must be between 0 and 86400 seconds, got {text!r}")
    return value


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _path(text: str) -> Path:
    return Path(_nonempty(text)).expanduser()


def parse_jwt_key(text: str) -> str:
    if len(text.encode("utf-8")) < MIN_JWT_KEY_BYTES:
        raise ValueError(
            f"an HS256 key needs at least {MIN_JWT_KEY_BYTES} bytes; "
            "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return text


MIN_METRICS_TOKEN_BYTES = 16


def parse_metrics_token(text: str) -> str:
    if len(text.encode("utf-8")) < MIN_METRICS_TOKEN_BYTES:
        raise ValueError(f"a metrics token needs at least {MIN_METRICS_TOKEN_BYTES} bytes")
    return text


def _cidr(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"expected an address or CIDR like 10.0.0.0/8, got {text!r}") from None


def _header_value(text: str) -> str:
    text = text.strip()
    if not text or any(not " " <= char <= "~" for char in text):
        raise ValueError(f"expected printable ASCII header text, got {text!r}")
    return text


def _origin(text: str) -> str:
    text = text.strip().rstrip("/")
    if text != "*" and not re.fullmatch(r"https?://[^/\s]+", text):
        raise ValueError(f"expected an origin like https://app.example.com or *, got {text!r}")
    return text


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


@dataclass(frozen=True)
class Option:
    """One ``serve`` setting: its flag, environment twin, parser and help."""

    flag: str
    field: str
    parse: Callable[[str], Any]
    help: str
    repeatable: bool = False
    switch: bool = False
    metavar: str | None = None
    # Read after the SSE_HUB_* twin, for names other tools already use (DATABASE_URL).
    env_fallbacks: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return "SSE_HUB_" + self.flag.removeprefix("--").replace("-", "_").upper()

    @property
    def env_names(self) -> tuple[str, ...]:
        """The environment variables read for this option, first one set wins."""
        return (self.env, *self.env_fallbacks)

    @property
    def dest(self) -> str:
        return self.field


SERVE_OPTIONS: tuple[Option, ...] = (
    Option("--host", "host", _nonempty, f"address to bind (default {DEFAULT_HOST})"),
    Option("--port", "port", _int_between(1, 65535), f"port to bind (default {DEFAULT_PORT})"),
    Option(
        "--dsn",
        "dsn",
        _nonempty,
        "PostgreSQL DSN; without one an embedded PostgreSQL is started",
        env_fallbacks=("DATABASE_URL",),
    ),
    Option("--files-dir", "files_dir", _path, "directory served under /files/", metavar="DIR"),
    Option(
        "--heartbeat",
        "heartbeat_s",
        _positive_seconds,
        f"seconds of silence before a comment frame (default {DEFAULT_HEARTBEAT_S:g})",
        metavar="SECONDS",
    ),
    Option(
        "--retry-ms",
        "retry_ms",
        _int_between(0, 86_400_000),
        f"reconnection delay sent to clients (default {DEFAULT_RETRY_MS})",
        metavar="MS",
    ),
    Option(
        "--retention",
        "retention_s",
        parse_duration_s,
        "how long events are kept for replay, e.g. 30s, 24h, 7d (default 24h)",
        metavar="DURATION",
    ),
    Option(
        "--jwt-key",
        "jwt_key",
        parse_jwt_key,
        f"HS256 secret of at least {MIN_JWT_KEY_BYTES} bytes; enables authorisation",
        metavar="SECRET",
    ),
    Option(
        "--jwt-public-key",
        "jwt_public_key",
        _path,
        "PEM public key file (RS256/ES256); enables authorisation",
        metavar="PEM_FILE",
    ),
    Option(
        "--cors-origin",
        "cors_origins",
        _origin,
        "allowed browser origin, or * (repeatable; env: comma-separated)",
        repeatable=True,
        metavar="ORIGIN",
    ),
    Option(
        "--workers",
        "workers",
        _int_between(1, 256),
        f"processes sharing the port (default {DEFAULT_WORKERS})",
    ),
    Option(
        "--insecure-no-auth",
        "insecure_no_auth",
        _bool,
        "allow binding a non-loopback address without a JWT key",
        switch=True,
    ),
    Option(
        "--allow-tokens-without-exp",
        "allow_tokens_without_exp",
        _bool,
        "accept tokens that carry no exp claim (they never expire); by default they get 401",
        switch=True,
    ),
    Option(
        "--metrics-token",
        "metrics_token",
        parse_metrics_token,
        "GET /metrics then needs 'Authorization: Bearer <this token>' (default: open)",
        metavar="SECRET",
    ),
    Option(
        "--no-access-log",
        "no_access_log",
        _bool,
        "write no line per request or stream (errors and warnings are still logged)",
        switch=True,
    ),
    Option(
        "--data-dir",
        "data_dir",
        _path,
        f"where the embedded PostgreSQL keeps its data (default {DEFAULT_DATA_DIR}/)",
        metavar="DIR",
    ),
    Option(
        "--pg-bindir",
        "pg_bindir",
        _path,
        "PostgreSQL's binaries for the embedded server (default: the newest of"
        " /usr/lib/postgresql/*/bin, else the 'embedded' extra's)",
        metavar="DIR",
        env_fallbacks=("PG_BINDIR",),
    ),
    Option(
        "--shutdown-timeout",
        "shutdown_timeout_s",
        _positive_seconds,
        f"seconds allowed for a graceful stop (default {DEFAULT_SHUTDOWN_TIMEOUT_S:g})",
        metavar="SECONDS",
    ),
    Option(
        "--request-head-timeout",
        "request_head_timeout_s",
        _positive_seconds,
        "seconds a connection may stay silent once connected, may then take to complete"
        " its request head, and may stay idle between requests"
        f" (default {DEFAULT_REQUEST_HEAD_TIMEOUT_S:g})",
        metavar="SECONDS",
    ),
    Option(
        "--max-streams",
        "max_streams",
        _int_between(1, 10_000_000),
        f"concurrent streams per process before 503 (default {DEFAULT_MAX_STREAMS}; lowered at"
        " start to what the open files limit holds)",
    ),
    Option(
        "--db-pool-size",
        "db_pool_size",
        _int_between(2, 1000),
        "PostgreSQL connections per process for publishing, replay and health checks, on top"
        f" of the relay's one (default {DEFAULT_DB_POOL_SIZE})",
        metavar="N",
    ),
    Option(
        "--subscriber-buffer",
        "subscriber_buffer_bytes",
        _int_between(4096, 1 << 30),
        "bytes queued for one slow subscriber before it catches up from the database "
        f"(default {DEFAULT_SUBSCRIBER_BUFFER_BYTES})",
        metavar="BYTES",
    ),
    Option(
        "--write-timeout",
        "write_timeout_s",
        _positive_seconds,
        "seconds a client may leave a write unread before it is disconnected "
        f"(default {DEFAULT_WRITE_TIMEOUT_S:g})",
        metavar="SECONDS",
    ),
    Option(
        "--file-chunk",
        "file_chunk_bytes",
        _int_between(4096, 16 << 20),
        "largest read for downloads; reads grow to it while the client keeps up "
        f"(default {DEFAULT_FILE_CHUNK_BYTES})",
        metavar="BYTES",
    ),
    Option(
        "--max-data",
        "max_data_bytes",
        _int_between(1, 64 << 20),
        f"bytes of data per event before 413 (default {DEFAULT_MAX_DATA_BYTES})",
        metavar="BYTES",
    ),
    Option(
        "--max-body",
        "max_body_bytes",
        _int_between(1024, 256 << 20),
        f"bytes per request body before 413 (default {DEFAULT_MAX_BODY_BYTES})",
        metavar="BYTES",
    ),
    Option(
        "--max-batch",
        "max_batch_events",
        _int_between(1, 100_000),
        f"events per published batch before 413 (default {DEFAULT_MAX_BATCH_EVENTS})",
        metavar="EVENTS",
    ),
    Option(
        "--max-topics",
        "max_topics_per_stream",
        _int_between(1, 10_000),
        f"topics per subscription before 422 (default {DEFAULT_MAX_TOPICS_PER_STREAM})",
        metavar="COUNT",
    ),
    Option(
        "--rate-publish",
        "rate_publish",
        parse_rate,
        "publish requests per second and burst per client, RATE[:BURST] or off "
        f"(default {DEFAULT_RATE_PUBLISH})",
        metavar="RATE",
    ),
    Option(
        "--rate-connect",
        "rate_connect",
        parse_rate,
        "new streams per second and burst per client, RATE[:BURST] or off "
        f"(default {DEFAULT_RATE_CONNECT})",
        metavar="RATE",
    ),
    Option(
        "--rate-limit-loopback",
        "rate_limit_loopback",
        _bool,
        "apply the rate limits to clients on loopback too (off: they are unlimited)",
        switch=True,
    ),
    Option(
        "--trusted-proxy",
        "trusted_proxies",
        _cidr,
        "address or CIDR of a proxy whose X-Forwarded-For is believed "
        "(repeatable; env: comma-separated; default loopback)",
        repeatable=True,
        metavar="CIDR",
    ),
    Option(
        "--files-cache-control",
        "files_cache_control",
        _header_value,
        "Cache-Control sent with downloads, e.g. 'public, max-age=31536000, immutable' "
        f"for versioned artefacts (default {DEFAULT_FILES_CACHE_CONTROL!r})",
        metavar="VALUE",
    ),
)


TOKEN_ENV = "SSE_HUB_TOKEN"


def client_token(flag: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The token a command sends to a hub over HTTP: ``--token``, else ``SSE_HUB_TOKEN``."""
    if flag:
        return flag
    env = os.environ if environ is None else environ
    return env.get(TOKEN_ENV) or None


def _raw_value(option: Option, flags: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
    """The flag value if given, else the environment twin(s), else ``None``."""
    given = flags.get(option.dest)
    if given not in (None, [], False):
        return given
    for name in option.env_names:
        value = environ.get(name)
        if value:
            if option.repeatable:
                return [part for part in value.split(",") if part.strip()]
            return value
    return None


def _parse_one(option: Option, raw: Any) -> Any:
    try:
        if option.switch and isinstance(raw, bool):
            return raw
        if option.repeatable:
            return tuple(option.parse(item) for item in raw)
        return option.parse(raw)
    except ValueError as exc:
        raise ConfigError(option.flag, str(exc)) from None


def load_settings(
    flags: Mapping[str, Any], environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build ``Settings`` from parsed flags (``dest -> value``) and the environment."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for option in SERVE_OPTIONS:
        raw = _raw_value(option, flags, env)
        if raw is not None:
            values[option.field] = _parse_one(option, raw)
    values.update(overrides)
    settings = Settings(**values)
    _check_exposure(settings)
    return settings


def _check_exposure(settings: Settings) -> None:
    if settings.jwt_key and settings.jwt_public_key:
        raise ConfigError("--jwt-key", "give either --jwt-key or --jwt-public-key, not both")
    exposed = not settings.auth_enabled and not settings.insecure_no_auth
    if exposed and not is_loopback(settings.host):
        raise ConfigError(
            "--host",
            f"refusing to serve {settings.host} without authorisation; "
            "set --jwt-key/--jwt-public-key, or pass --insecure-no-auth",
        )
