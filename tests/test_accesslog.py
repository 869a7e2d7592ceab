"""Access logs: one line per request, streams on close, and never a token."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from sse_hub.accesslog import ACCESS_LOGGER_NAME, AccessLogger, MalformedRequestFilter, redact
from sse_hub.app import create_app
from sse_hub.config import Settings
from sse_hub.keys import HUB
from sse_hub.sink import as_chunk
from tests.conftest import app_of
from tests.processes import HubProcess
from tests.sse_client import open_stream
from tests.test_stream import publish
from tests.waiting import wait_until

SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/events?topic=a", "/events?topic=a"),
        ("/events?access_token=abc", "/events?access_token=REDACTED"),
        ("/events?topic=a&access_token=abc&x=1", "/events?topic=a&access_token=REDACTED&x=1"),
        (
            "/e?access%5Ftoken=abc&access_token=def",
            "/e?access%5Ftoken=REDACTED&access_token=REDACTED",
        ),
        ("/e?access_token", "/e?access_token=REDACTED"),
        ("/e?access_tokens=kept", "/e?access_tokens=kept"),
        ("/healthz", "/healthz"),
    ],
)
def test_redact(path: str, logged: str) -> None:
    assert redact(path) == logged


@pytest.fixture
async def logged_hub(dsn: str) -> AsyncIterator[TestServer]:
    """A hub whose runner has the access logger ``sse-hub serve`` installs."""
    server = TestServer(create_app(Settings(dsn=dsn, jwt_key="k" * 32)), host="127.0.0.1")
    await server.start_server(
        access_log_class=AccessLogger, access_log=logging.getLogger(ACCESS_LOGGER_NAME)
    )
    yield server
    await server.close()


async def test_requests_and_streams_are_logged_without_tokens(
    logged_hub: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER_NAME)
    async with aiohttp.ClientSession() as session:
        async with session.get(logged_hub.make_url(f"/nowhere?access_token={SECRET}")) as response:
            assert response.status == 404
        headers = {"Authorization": f"Bearer {SECRET}", "Cookie": f"sse_hub_token={SECRET}"}
        async with session.get(logged_hub.make_url("/events?topic=a"), headers=headers) as response:
            assert response.status == 401
    stream = await open_stream(logged_hub.port, f"/events?topic=a&access_token={SECRET}")
    assert stream.status == 401
    stream.close()

    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER_NAME]
    assert len(lines) == 3, lines
    assert lines[0].startswith('method=GET path="/nowhere?access_token=REDACTED" status=404 bytes=')
    assert "duration_ms=" in lines[0]
    assert "remote=127.0.0.1" in lines[0]
    assert 'path="/events?topic=a" status=401' in lines[1]
    assert SECRET not in caplog.text
    assert "c2VjcmV0LXRva2Vu" not in caplog.text


async def test_a_stream_logs_when_it_closes(dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER_NAME)
    server = TestServer(create_app(Settings(dsn=dsn)), host="127.0.0.1")
    await server.start_server(
        access_log_class=AccessLogger, access_log=logging.getLogger(ACCESS_LOGGER_NAME)
    )
    try:
        stream = await open_stream(server.port, f"/events?topic=a&access_token={SECRET}")
        await stream.started()
        await publish(server, "a", "hello")
        await stream.next_event()
        assert not [r for r in caplog.records if "/events?topic=a&" in r.getMessage()]
        stream.close()  # the client goes away: the handler is cancelled
        counters = app_of(server)[HUB].counters
        await wait_until(lambda: counters.streams_open == 0)
        (line,) = [r.getMessage() for r in caplog.records if "/events?topic=a&" in r.getMessage()]
        # the response head, then each frame as one HTTP chunk
        chunks = len(b"c\r\nretry: 3000\n\r\n") + len(b"13\r\nid: 1\ndata: hello\n\n\r\n")
        assert line.startswith(
            'method=GET path="/events?topic=a&access_token=REDACTED" status=200 bytes='
        )
        logged_bytes = int(line.split(" bytes=")[1].split(" ")[0])
        head = (
            len("HTTP/1.1 200 OK\r\n")
            + sum(len(f"{name}: {value}\r\n") for name, value in stream.headers.items())
            + 2
        )
        assert logged_bytes == head + chunks
        assert line.endswith("closed=client")
        assert SECRET not in caplog.text
    finally:
        await server.close()


async def test_malformed_requests_are_one_line_without_a_traceback(
    hub: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    server_log = logging.getLogger("aiohttp.server")
    quiet = MalformedRequestFilter()
    server_log.addFilter(quiet)
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    try:
        assert hub.port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n")
        async with asyncio.timeout(20):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.0 400")
        writer.close()
        await wait_until(lambda: any(r.name == "aiohttp.server" for r in caplog.records))
    finally:
        server_log.removeFilter(quiet)
    (record,) = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    message = record.getMessage()
    assert message.startswith("Error handling request from 127.0.0.1 (refused as malformed: ")
    assert "\n" not in message


@pytest.mark.parametrize(("flags", "logged"), [([], True), (["--no-access-log"], False)])
async def test_no_access_log_silences_requests_and_streams(
    dsn: str, flags: list[str], logged: bool
) -> None:
    hub = HubProcess(["--dsn", dsn, *flags])
    try:
        await hub.wait_healthy()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{hub.url}/nowhere") as response,
        ):
            assert response.status == 404
        stream = await open_stream(hub.port, "/events?topic=quiet")
        await stream.started()
        stream.close()
        hub.signal(signal.SIGTERM)  # every line is written by the time it exits
        assert await hub.wait_exit() == 0
        output = hub.output()
        assert ('method=GET path="/nowhere"' in output) is logged
        assert ('path="/events?topic=quiet"' in output) is logged
        assert "sse-hub serving on" in output  # the hub's own lines stay
    finally:
        hub.stop()


async def test_a_stream_ended_by_sigterm_is_logged_once(dsn: str) -> None:
    hub = HubProcess(["--dsn", dsn])
    try:
        await hub.wait_healthy()
        stream = await open_stream(hub.port, "/events?topic=bye")
        await stream.started()
        hub.signal(signal.SIGTERM)
        try:
            await stream.read_until_end(timeout_s=30)
        finally:
            stream.close()
        assert stream.ended_cleanly
        assert await hub.wait_exit() == 0
        lines = [line for line in hub.output().splitlines() if 'path="/events?topic=bye"' in line]
        assert len(lines) == 1, lines
        assert "closed=shutdown" in lines[0]
        logged_bytes = int(lines[0].split(" bytes=")[1].split(" ")[0])
        head = (
            len("HTTP/1.1 200 OK\r\n")
            + sum(len(f"{name}: {value}\r\n") for name, value in stream.headers.items())
            + len("\r\n")
        )
        # the opening and the goodbye retry lines, one chunk each
        chunks = sum(len(as_chunk(line)) for line in bytes(stream.body).splitlines(keepends=True))
        assert logged_bytes == head + chunks
    finally:
        hub.stop()
