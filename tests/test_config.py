from __future__ import annotations

from pathlib import Path

import pytest

from sse_hub.config import Settings, load_dsn, load_settings, parse_duration_s
from sse_hub.errors import ConfigError


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
    assert load_dsn(None, both) == "postgresql://a"
    assert load_dsn(None, {"DATABASE_URL": "postgresql://b"}) == "postgresql://b"
    assert load_dsn("postgresql://c", both) == "postgresql://c"
    assert load_dsn(None, {}) is None


@pytest.mark.parametrize(
    ("flags", "env", "flag_named"),
    [
        ({"port": "70000"}, {}, "--port"),
        ({"port": "http"}, {}, "--port"),
        ({}, {"SSE_HUB_PORT": "0"}, "--port"),
        ({"retention_s": "10w"}, {}, "--retention"),
        ({"heartbeat_s": "-1"}, {}, "--heartbeat"),
        ({"jwt_public_key": "/nonexistent/key.pem"}, {}, "--jwt-public-key"),
        ({"files_dir": "/nonexistent/dir"}, {}, "--files-dir"),
        ({"workers": "0"}, {}, "--workers"),
        ({"cors_origins": ["not an origin"]}, {}, "--cors-origin"),
        ({"host": "0.0.0.0"}, {}, "--host"),
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
    assert load_settings({"host": "0.0.0.0", "jwt_key": "s3cret"}, {}).auth_enabled
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n")
    settings = load_settings({"host": "0.0.0.0", "jwt_public_key": str(key)}, {})
    assert settings.jwt_public_key is not None
    assert settings.jwt_public_key.startswith("-----BEGIN")


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
