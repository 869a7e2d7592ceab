from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from sse_hub.config import (
    DEFAULT_RATE_CONNECT,
    DEFAULT_RATE_PUBLISH,
    SERVE_OPTIONS,
    Settings,
    load_settings,
    parse_duration_s,
)
from sse_hub.errors import ConfigError
from sse_hub.ratelimit import Rate


def test_defaults() -> None:
    settings = load_settings({}, {})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.heartbeat_s, settings.retry_ms) == (
        "127.0.0.1",
        8080,
        15.0,
        3000,
    )
    assert settings.retention_s == 24 * 3600
    assert settings.workers == 1
    assert settings.dsn is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("24h", 86400), ("7d", 604800), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["10", "10w", "h", "-1h", "0s", "", "1 h x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration unit|number with unit|greater than zero"):
        parse_duration_s(text)


def test_flag_wins_over_environment() -> None:
    settings = load_settings({"port": "9000"}, {"SSE_HUB_PORT": "9001", "SSE_HUB_RETRY_MS": "500"})
    assert settings.port == 9000
    assert settings.retry_ms == 500


def test_environment_twins() -> None:
    env = {
        "SSE_HUB_HOST": "::1",
        "SSE_HUB_HEARTBEAT": "2.5",
        "SSE_HUB_RETENTION": "30s",
        "SSE_HUB_CORS_ORIGIN": "https://a.example, https://b.example",
        "SSE_HUB_WORKERS": "2",
    }
    settings = load_settings({}, env)
    assert settings.host == "::1"
    assert settings.heartbeat_s == 2.5
    assert settings.retention_s == 30
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.workers == 2


def test_dsn_chain() -> None:
    assert load_settings({}, {"DATABASE_URL": "postgresql://b"}).dsn == "postgresql://b"
    both = {"SSE_HUB_DSN": "postgresql://a", "DATABASE_URL": "postgresql://b"}
    assert load_settings({}, both).dsn == "postgresql://a"
    assert load_settings({"dsn": "postgresql://c"}, both).dsn == "postgresql://c"
    assert load_settings({}, {}).dsn is None


def test_pg_bindir_also_reads_pg_bindir() -> None:
    assert load_settings({}, {"PG_BINDIR": "/opt/pg/bin"}).pg_bindir == Path("/opt/pg/bin")
    both = {"SSE_HUB_PG_BINDIR": "/a", "PG_BINDIR": "/b"}
    assert load_settings({}, both).pg_bindir == Path("/a")
    assert load_settings({}, {}).pg_bindir is None


def test_paths_are_not_read_while_loading(tmp_path: Path) -> None:
    """Settings are pure: files named by flags are checked by the hub at start-up."""
    missing = tmp_path / "missing"
    settings = load_settings(
        {"files_dir": str(missing), "jwt_public_key": str(missing / "key.pem")}, {}
    )
    assert settings.files_dir == missing
    assert settings.jwt_public_key == missing / "key.pem"


@pytest.mark.parametrize(
    ("flags", "env", "flag_named"),
    [
        ({"port": "70000"}, {}, "--port"),
        ({"port": "http"}, {}, "--port"),
        ({}, {"SSE_HUB_PORT": "0"}, "--port"),
        ({"retention_s": "10w"}, {}, "--retention"),
        ({"heartbeat_s": "-1"}, {}, "--heartbeat"),
        ({"workers": "0"}, {}, "--workers"),
        ({"cors_origins": ["not an origin"]}, {}, "--cors-origin"),
        ({"host": "0.0.0.0"}, {}, "--host"),
        ({"jwt_key": "short"}, {}, "--jwt-key"),
        ({"rate_publish": "fast"}, {}, "--rate-publish"),
        ({}, {"SSE_HUB_RATE_CONNECT": "5:0"}, "--rate-connect"),
        ({"trusted_proxies": ["10.0.0.0/99"]}, {}, "--trusted-proxy"),
        ({"max_data_bytes": "0"}, {}, "--max-data"),
        ({"max_batch_events": "many"}, {}, "--max-batch"),
        ({}, {"SSE_HUB_DB_POOL_SIZE": "1"}, "--db-pool-size"),
    ],
)
def test_bad_values_name_the_flag(
    flags: dict[str, object], env: dict[str, str], flag_named: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(flags, env)
    assert str(info.value).startswith(flag_named + ": ")


def test_public_host_needs_auth_or_explicit_insecure(tmp_path: Path) -> None:
    assert load_settings({"host": "0.0.0.0", "insecure_no_auth": True}, {}).host == "0.0.0.0"
    assert load_settings({"host": "0.0.0.0", "jwt_key": "k" * 32}, {}).auth_enabled
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n")
    settings = load_settings({"host": "0.0.0.0", "jwt_public_key": str(key)}, {})
    assert settings.auth_enabled


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_limits_and_rates_are_settings() -> None:
    defaults = load_settings({}, {})
    assert (defaults.max_data_bytes, defaults.max_body_bytes) == (256 * 1024, 1024 * 1024)
    assert (defaults.max_batch_events, defaults.max_topics_per_stream) == (1000, 64)
    assert (defaults.rate_publish, defaults.rate_connect) == (
        DEFAULT_RATE_PUBLISH,
        DEFAULT_RATE_CONNECT,
    )
    assert not defaults.rate_limit_loopback
    assert all(network.is_loopback for network in defaults.trusted_proxies)
    env = {
        "SSE_HUB_MAX_DATA": "1000",
        "SSE_HUB_MAX_BODY": "4096",
        "SSE_HUB_MAX_BATCH": "10",
        "SSE_HUB_MAX_TOPICS": "3",
        "SSE_HUB_RATE_PUBLISH": "off",
        "SSE_HUB_RATE_CONNECT": "2.5",
        "SSE_HUB_RATE_LIMIT_LOOPBACK": "yes",
        "SSE_HUB_TRUSTED_PROXY": "10.0.0.0/8, 2001:db8::1",
    }
    settings = load_settings({"rate_publish": "5:50"}, env)
    assert (settings.max_data_bytes, settings.max_body_bytes) == (1000, 4096)
    assert (settings.max_batch_events, settings.max_topics_per_stream) == (10, 3)
    assert settings.rate_publish == Rate(5.0, 50)  # the flag wins over "off"
    assert settings.rate_connect == Rate(2.5, 5)  # burst defaults to twice the rate
    assert settings.rate_limit_loopback
    assert settings.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::1/128"),
    )
    assert load_settings({}, {"SSE_HUB_RATE_PUBLISH": "off"}).rate_publish is None


def test_every_flag_has_its_derived_environment_twin() -> None:
    for option in SERVE_OPTIONS:
        assert option.env == "SSE_HUB_" + option.flag[2:].replace("-", "_").upper()
