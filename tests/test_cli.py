"""``sse-hub`` commands as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sse_hub.embedded_pg import free_port
from tests.processes import HubProcess

COMMAND = [sys.executable, "-m", "sse_hub"]


def run(
    *args: str,
    stdin: str | None = None,
    dsn: str | None = None,
    env_extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SSE_HUB_DSN", "DATABASE_URL"}}
    env.update(env_extra or {})
    if dsn is not None:
        env["SSE_HUB_DSN"] = dsn
    return subprocess.run(
        [*COMMAND, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def arun(
    *args: str,
    stdin: str | None = None,
    dsn: str | None = None,
    env_extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, *args, stdin=stdin, dsn=dsn, env_extra=env_extra)


async def test_publish_prints_the_id_last(dsn: str, db: asyncpg.Connection) -> None:
    first = await arun("publish", "demo", "hi", dsn=dsn)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1] == "1"
    second = await arun("publish", "demo", "-", "--event", "note", stdin="from\nstdin", dsn=dsn)
    assert second.stdout.strip().splitlines()[-1] == "2"
    third = await arun("publish", "--dsn", dsn, "demo", "flag")
    assert third.stdout.strip().splitlines()[-1] == "3"
    rows = await db.fetch("SELECT id, topic, event, data FROM sse_hub.events ORDER BY id")
    assert [tuple(r) for r in rows] == [
        (1, "demo", None, "hi"),
        (2, "demo", "note", "from\nstdin"),
        (3, "demo", None, "flag"),
    ]


async def test_publish_rejects_bad_topic(dsn: str, db: asyncpg.Connection) -> None:
    result = await arun("publish", "bad\ntopic", "x", dsn=dsn)
    assert result.returncode == 2
    assert "control characters" in result.stderr
    assert await db.fetchval("SELECT count(*) FROM sse_hub.events") == 0


async def test_tail_replays_and_follows(dsn: str) -> None:
    for data in ["one", "two"]:
        assert (await arun("publish", "t/a", data, dsn=dsn)).returncode == 0
    env = {**os.environ, "SSE_HUB_DSN": dsn, "PYTHONUNBUFFERED": "1"}
    tail = await asyncio.create_subprocess_exec(
        *COMMAND,
        "tail",
        "t/*",
        "--last-event-id",
        "1",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert tail.stdout is not None
        async with asyncio.timeout(60):
            assert (await tail.stdout.readline()).decode().strip() == "2 two"
            assert (
                await arun("publish", "t/b", "three", "--event", "kind", dsn=dsn)
            ).returncode == 0
            assert (await tail.stdout.readline()).decode().strip() == "3 (kind) three"
    finally:
        tail.terminate()
        await tail.wait()


async def test_tail_json_for_scripts(dsn: str) -> None:
    assert (await arun("publish", "j", '{"k": 1}', "--event", "e", dsn=dsn)).returncode == 0
    env = {**os.environ, "SSE_HUB_DSN": dsn}
    tail = await asyncio.create_subprocess_exec(
        *COMMAND,
        "tail",
        "j",
        "--json",
        "--last-event-id",
        "earliest",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert tail.stdout is not None
        async with asyncio.timeout(60):
            line = (await tail.stdout.readline()).decode()
        assert json.loads(line) == {"id": 1, "event": "e", "data": '{"k": 1}'}
    finally:
        tail.terminate()
        await tail.wait()


def _without_database(env_extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SSE_HUB_DSN", "DATABASE_URL"}}
    return {**env, **env_extra}


async def _tail_over_http(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *COMMAND, "tail", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=subprocess.PIPE
    )


async def test_tail_over_http_prints_like_the_database_mode_and_outlives_a_restart(
    dsn: str,
) -> None:
    args = ["--dsn", dsn, "--jwt-key", TOKEN_KEY, "--retry-ms", "200"]
    hub = HubProcess(args)
    restarted: HubProcess | None = None
    await hub.wait_healthy()
    token = run("token", "--subscribe", "t/*", "--jwt-key", TOKEN_KEY).stdout.strip()
    for data in ["one", "two"]:
        assert (await arun("publish", "t/a", data, dsn=dsn)).returncode == 0
    # No database for the tail: only the hub's address and a token (from the environment).
    env = _without_database({"SSE_HUB_TOKEN": token})
    tail = await _tail_over_http("--url", hub.url, "t/*", "--last-event-id", "1", env=env)
    assert tail.stdout is not None
    try:
        async with asyncio.timeout(120):
            assert (await tail.stdout.readline()).decode().strip() == "2 two"
            assert (
                await arun("publish", "t/b", "three", "--event", "kind", dsn=dsn)
            ).returncode == 0
            assert (await tail.stdout.readline()).decode().strip() == "3 (kind) three"
            hub.signal(signal.SIGTERM)
            assert await hub.wait_exit() == 0
            assert (await arun("publish", "t/a", "while down", dsn=dsn)).returncode == 0
            restarted = HubProcess(args, port=hub.port)
            await restarted.wait_healthy()
            assert (await tail.stdout.readline()).decode().strip() == "4 while down"
    finally:
        tail.terminate()
        await tail.wait()
        hub.stop()
        if restarted is not None:
            restarted.stop()


async def test_tail_over_http_json_with_a_token_flag(dsn: str) -> None:
    hub = HubProcess(["--dsn", dsn, "--jwt-key", TOKEN_KEY])
    await hub.wait_healthy()
    token = run("token", "--subscribe", "j", "--jwt-key", TOKEN_KEY).stdout.strip()
    assert (await arun("publish", "j", '{"k": 1}', "--event", "e", dsn=dsn)).returncode == 0
    tail = await _tail_over_http(
        "--url",
        hub.url,
        "--token",
        token,
        "j",
        "--json",
        "--last-event-id",
        "earliest",
        env=_without_database({}),
    )
    assert tail.stdout is not None
    try:
        async with asyncio.timeout(60):
            line = (await tail.stdout.readline()).decode()
        assert json.loads(line) == {"id": 1, "event": "e", "data": '{"k": 1}'}
    finally:
        tail.terminate()
        await tail.wait()
        hub.stop()


async def test_tail_over_http_stops_on_a_refusal(dsn: str) -> None:
    hub = HubProcess(["--dsn", dsn, "--jwt-key", TOKEN_KEY])
    await hub.wait_healthy()
    try:
        result = await asyncio.wait_for(
            asyncio.to_thread(
                subprocess.run,
                [*COMMAND, "tail", "--url", hub.url, "t"],
                capture_output=True,
                text=True,
                env=_without_database({}),
                check=False,
            ),
            timeout=60,
        )
    finally:
        hub.stop()
    assert result.returncode == 1
    assert f"sse-hub: error: {hub.url}: 401 Unauthorized: " in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "http://127.0.0.1:1", "--dsn", "postgresql:///x", "t"], "--dsn"),
        (["--token", "abc", "t"], "--token"),
        (["--url", "http://127.0.0.1:1", "t", "--last-event-id", "x"], "Last-Event-ID"),
    ],
)
def test_tail_over_http_usage_errors(args: list[str], message: str) -> None:
    result = run("tail", *args)
    assert result.returncode == 2
    assert message in result.stderr


async def test_publish_applies_the_hubs_settings(dsn: str, db: asyncpg.Connection) -> None:
    limited = {"SSE_HUB_MAX_DATA": "10"}
    refused = await arun("publish", "t", "x" * 11, dsn=dsn, env_extra=limited)
    assert refused.returncode == 2
    assert "10" in refused.stderr
    assert await db.fetchval("SELECT count(*) FROM sse_hub.events") == 0
    taken = await arun("publish", "t", "x" * 10, dsn=dsn, env_extra=limited)
    assert taken.returncode == 0, taken.stderr
    assert await db.fetchval("SELECT data FROM sse_hub.events") == "x" * 10


async def test_tail_applies_the_hubs_settings(dsn: str) -> None:
    result = await arun("tail", "a", "b", dsn=dsn, env_extra={"SSE_HUB_MAX_TOPICS": "1"})
    assert result.returncode == 2
    assert "1" in result.stderr


@pytest.mark.parametrize("command", [["publish", "t", "x"], ["tail", "t"]])
async def test_publish_and_tail_leave_migrating_to_migrate(
    fresh_db: str, command: list[str]
) -> None:
    result = await arun(*command, dsn=fresh_db)
    assert result.returncode == 1
    assert "run 'sse-hub migrate'" in result.stderr
    conn = await asyncpg.connect(fresh_db)
    try:
        assert await conn.fetchval("SELECT to_regnamespace('sse_hub')") is None
    finally:
        await conn.close()


async def test_migrate_is_idempotent(fresh_db: str) -> None:
    first = await arun("migrate", dsn=fresh_db)
    assert first.returncode == 0, first.stderr
    assert "0001_events.sql" in first.stdout
    second = await arun("migrate", "--dsn", fresh_db)
    assert second.stdout.strip() == "nothing to apply"


async def test_grant_makes_an_existing_role_a_producer(dsn: str, db: asyncpg.Connection) -> None:
    role = f"sse_hub_t_cli_{os.getpid()}"
    await db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        result = await arun("grant", role, dsn=dsn)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == (
            f"{role} is a member of sse_hub_producer: it may call sse_hub.publish()"
        )
        assert (await arun("grant", role, dsn=dsn)).returncode == 0  # again: nothing changes
        await db.execute(f"SET ROLE {role}")
        await db.execute("SELECT sse_hub.publish('granted', 'x')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.fetch("SELECT * FROM sse_hub.events")
    finally:
        await db.execute("RESET ROLE")
        await db.execute(f"DROP ROLE {role}")
    missing = await arun("grant", "no_such_role_anywhere", dsn=dsn)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "sse-hub: error: role 'no_such_role_anywhere' does not exist;"
        " create it first (CREATE ROLE ... LOGIN)"
    )


@pytest.mark.parametrize("command", ["serve", "migrate", "grant", "publish", "tail"])
def test_help_for_each_command(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    assert "usage: sse-hub " + command in result.stdout


def test_top_level_help_lists_commands() -> None:
    result = run("--help")
    for command in ("serve", "migrate", "grant", "publish", "tail"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--port", "70000"], "--port"),
        (["--retention", "3w"], "--retention"),
        (["--jwt-public-key", "/nonexistent.pem"], "--jwt-public-key"),
        (["--files-dir", "/nonexistent/dir"], "--files-dir"),
        (["--host", "0.0.0.0"], "--host"),
        (["--heartbeat", "soon"], "--heartbeat"),
    ],
)
def test_bad_serve_values_stop_with_one_line(args: list[str], flag: str) -> None:
    result = run("serve", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert flag in lines[0]


def test_bad_environment_value_names_the_flag() -> None:
    env = {**os.environ, "SSE_HUB_PORT": "nope"}
    result = subprocess.run(
        [*COMMAND, "serve"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("sse-hub: error: --port:")


TOKEN_KEY = "cli-test-key-" + "k" * 32


def test_token_mints_what_the_hub_accepts(tmp_path: Path) -> None:
    result = run(
        "token", "--publish", "a", "--publish", "b/*", "--subscribe", "*", "--sub", "me",
        "--ttl", "30m", "--jwt-key", TOKEN_KEY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    claims = jwt.decode(result.stdout.strip(), TOKEN_KEY, algorithms=["HS256"])
    assert claims["sub"] == "me"
    assert claims["exp"] - claims["iat"] == 1800
    assert claims["sse_hub"] == {"publish": ["a", "b/*"], "subscribe": ["*"], "files": []}
    env_key = subprocess.run(
        [*COMMAND, "token", "--files", "r/*"],
        capture_output=True,
        text=True,
        env={**os.environ, "SSE_HUB_JWT_KEY": TOKEN_KEY},
        timeout=60,
        check=False,
    )
    assert jwt.decode(env_key.stdout.strip(), TOKEN_KEY, algorithms=["HS256"])["exp"]
    private = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "signing.pem"
    pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    signed = run("token", "--subscribe", "x", "--private-key", str(pem))
    assert signed.returncode == 0, signed.stderr
    claims = jwt.decode(signed.stdout.strip(), private.public_key(), algorithms=["ES256"])
    assert claims["sse_hub"]["subscribe"] == ["x"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--publish", "a"], "--jwt-key"),
        (["--publish", "a", "--jwt-key", "short"], "--jwt-key"),
        (["--publish", "a\nb", "--jwt-key", TOKEN_KEY], "control characters"),
        (["--publish", "a", "--ttl", "1w", "--jwt-key", TOKEN_KEY], "--ttl"),
    ],
)
def test_token_refuses_bad_input_in_one_line(args: list[str], named: str) -> None:
    result = run("token", *args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert named in result.stderr
    assert result.stdout == ""


def test_public_address_without_a_key_is_refused_with_the_way_out() -> None:
    result = run("serve", "--host", "0.0.0.0", "--port", "1")
    assert result.returncode == 2
    assert "--insecure-no-auth" in result.stderr
    assert "--jwt-key" in result.stderr


async def test_public_address_with_insecure_no_auth_serves(dsn: str) -> None:
    # A port free on every address: one free on 127.0.0.1 may be taken on another.
    port = free_port("0.0.0.0")
    hub = HubProcess(["--dsn", dsn, "--host", "0.0.0.0", "--insecure-no-auth"], port=port)
    try:
        await hub.wait_healthy()
    finally:
        hub.stop()


def test_unknown_flag_is_one_line() -> None:
    result = run("serve", "--no-such-flag")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
