"""The front door: plain stream requests opened without aiohttp, everything else left to it.

The suite's hubs (``conftest.FrontDoorTestServer``) all run behind the front
door, as ``sse-hub serve`` does; these tests pin which requests it serves, that
it answers them exactly as aiohttp would, and that what it leaves to aiohttp is
checked and counted once.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11
from aiohttp.test_utils import TestServer

from sse_hub.auth import mint_token
from sse_hub.front_door import parse_plain_request
from sse_hub.keys import HUB
from sse_hub.ratelimit import Rate
from tests.conftest import HubFactory, app_of
from tests.raw_http import close
from tests.sse_client import open_stream
from tests.test_stream import publish

PLAIN = b"GET /events?topic=a%2Fb&topic=c+d&lastEventID=7 HTTP/1.1\r\nHost: hub\r\n\r\n"
HEAD_LINES_THAT_VARY = (b"Date:",)


def _app() -> web.Application:
    return web.Application()


def test_a_plain_request_is_read_as_aiohttp_reads_it() -> None:
    request = parse_plain_request(PLAIN, _app(), "192.0.2.1")
    assert request is not None
    assert request.raw_path == "/events?topic=a%2Fb&topic=c+d&lastEventID=7"
    assert request.query.getall("topic") == ["a/b", "c d"]
    assert request.query["lastEventID"] == "7"
    assert request.version == HttpVersion11
    assert request.headers["host"] == "hub"
    assert request.remote == "192.0.2.1"
    http10 = parse_plain_request(b"GET /events?topic=a HTTP/1.0\r\n\r\n", _app(), None)
    assert http10 is not None
    assert http10.version == HttpVersion10


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"POST /events HTTP/1.1\r\nHost: hub\r\n\r\n", id="another method"),
        pytest.param(b"HEAD /events?topic=a HTTP/1.1\r\nHost: hub\r\n\r\n", id="HEAD"),
        pytest.param(b"GET /eventsX?topic=a HTTP/1.1\r\nHost: hub\r\n\r\n", id="another path"),
        pytest.param(b"GET /events/?topic=a HTTP/1.1\r\nHost: hub\r\n\r\n", id="a longer path"),
        pytest.param(b"GET /events?topic=a#x HTTP/1.1\r\nHost: hub\r\n\r\n", id="a fragment"),
        pytest.param(b"GET /events?topic=a HTTP/2.0\r\n\r\n", id="another version"),
        pytest.param(b"GET /events?topic=a HTTP/1.1\r\n\r\n", id="HTTP/1.1 without Host"),
        pytest.param(b"GET  /events?topic=a HTTP/1.1\r\nHost: hub\r\n\r\n", id="two spaces"),
        pytest.param(b"GET /events?topic=a HTTP/1.1\r\nHost: hub\r\n", id="an unfinished head"),
        pytest.param(
            PLAIN + b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n", id="a pipelined request"
        ),
        pytest.param(
            b"GET /events?topic=a HTTP/1.1\r\nHost: hub\r\nX: 1\r\nx: 2\r\n\r\n", id="a repeat"
        ),
        pytest.param(
            b"GET /events?topic=a HTTP/1.1\r\nHost: hub\r\nX: \xc3\xa9\r\n\r\n", id="not ASCII"
        ),
        pytest.param(
            b"GET /events?topic=a HTTP/1.1\r\nHost: hub\r\nX: 1\r\n 2\r\n\r\n", id="folded"
        ),
        pytest.param(
            b"GET /events?topic=a HTTP/1.1\r\nHost: hub\r\nX : 1\r\n\r\n", id="space before colon"
        ),
        pytest.param(
            b"GET /events?topic=a HTTP/1.1\r\nHost: hub\r\nContent-Length: 0\r\n\r\n", id="a body"
        ),
        pytest.param(
            b"GET /events?topic=a HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\n\r\n",
            id="chunked",
        ),
        pytest.param(
            b"GET /events?topic=a HTTP/1.1\r\nHost: hub\r\nUpgrade: h2c\r\n\r\n", id="an upgrade"
        ),
        pytest.param(
            b"GET /events?topic=a HTTP/1.1\r\nHost: hub\r\nConnection: keep-alive, TE\r\n\r\n",
            id="other connection options",
        ),
        pytest.param(
            b"GET /events?topic=a HTTP/1.1\r\nHost: hub\r\n" + b"X: " + b"a" * 8200 + b"\r\n\r\n",
            id="too long",
        ),
    ],
)
def test_anything_else_is_left_to_aiohttp(data: bytes) -> None:
    assert parse_plain_request(data, _app(), None) is None


async def _raw_head(port: int | None, request: bytes) -> bytes:
    """The head the hub answers ``request`` with, its ``Date`` line left out."""
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(20):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        await close(writer)
    return b"\r\n".join(
        line for line in head.split(b"\r\n") if not line.startswith(HEAD_LINES_THAT_VARY)
    )


def _front_door_streams(server: TestServer) -> int:
    return app_of(server)[HUB].counters.streams_front_door


@pytest.mark.parametrize(
    ("version", "extra"),
    [
        ("1.1", ""),
        ("1.0", ""),
        ("1.1", "Connection: close\r\n"),
        ("1.0", "Connection: keep-alive\r\n"),
        ("1.0", "Connection: close\r\n"),
    ],
)
async def test_its_head_is_aiohttps_byte_for_byte(
    hub: TestServer, version: str, extra: str
) -> None:
    plain = f"GET /events?topic=a HTTP/{version}\r\nHost: hub\r\n{extra}\r\n".encode()
    # A repeated header is not plain: the same stream request, answered by aiohttp.
    repeated = f"GET /events?topic=a HTTP/{version}\r\nHost: hub\r\n{extra}X: 1\r\nX: 2\r\n\r\n"
    from_door = await _raw_head(hub.port, plain)
    assert _front_door_streams(hub) == 1
    from_aiohttp = await _raw_head(hub.port, repeated.encode())
    assert _front_door_streams(hub) == 1
    assert app_of(hub)[HUB].counters.streams_total == 2
    assert from_door == from_aiohttp
    assert from_door.startswith(f"HTTP/{version} 200 OK\r\n".encode())


@pytest.mark.parametrize(
    ("origins", "origin"),
    [(("https://app.example",), "https://app.example"), (("*",), "https://else.example")],
)
async def test_its_cors_headers_are_aiohttps(
    start_hub: HubFactory, origins: tuple[str, ...], origin: str
) -> None:
    hub = await start_hub(cors_origins=origins)
    plain = (
        f"GET /events?topic=a HTTP/1.1\r\nHost: hub\r\nOrigin: {origin}\r\n"
        "Connection: close\r\n\r\n"
    )
    repeated = plain.replace("\r\n\r\n", "\r\nX: 1\r\nX: 2\r\n\r\n")
    from_door = await _raw_head(hub.port, plain.encode())
    from_aiohttp = await _raw_head(hub.port, repeated.encode())
    assert _front_door_streams(hub) == 1
    assert from_door == from_aiohttp
    assert b"\r\nAccess-Control-Allow-Origin: " in from_door


async def test_a_stream_it_opens_delivers_and_resumes(hub: TestServer) -> None:
    stream = await open_stream(hub.port, "/events?topic=news")
    try:
        await stream.started()
        first_id = await publish(hub, "news", "one")
        assert (await stream.next_event()).data == "one"
    finally:
        stream.close()
    resumed = await open_stream(hub.port, "/events?topic=news&lastEventID=0")
    try:
        assert (await resumed.next_event()).id == str(first_id)
    finally:
        resumed.close()
    assert _front_door_streams(hub) == 2


async def test_a_refused_request_is_answered_by_aiohttp_and_counted_once(
    start_hub: HubFactory,
) -> None:
    hub = await start_hub(max_streams=1)
    stream = await open_stream(hub.port, "/events?topic=a")
    try:
        refused = await open_stream(hub.port, "/events?topic=a")
        assert refused.status == 503
        assert refused.headers["content-type"].startswith("application/problem+json")
        refused.close()
        counters = app_of(hub)[HUB].counters
        assert (counters.streams_refused, counters.streams_open) == (1, 1)
        assert counters.problems == {503: 1}
    finally:
        stream.close()


async def test_only_streams_let_through_use_up_the_connect_rate(start_hub: HubFactory) -> None:
    hub = await start_hub(rate_connect=Rate(0.001, 2), rate_limit_loopback=True)
    bad = await open_stream(hub.port, "/events")  # no topic: 400, before the rate limit
    assert bad.status == 400
    bad.close()
    streams = [await open_stream(hub.port, "/events?topic=a") for _ in range(2)]
    try:
        assert [stream.status for stream in streams] == [200, 200]
        limited = await open_stream(hub.port, "/events?topic=a")
        assert limited.status == 429
        limited.close()
    finally:
        for stream in streams:
            stream.close()


async def test_with_tokens_the_header_is_read_and_cookies_go_to_aiohttp(
    start_hub: HubFactory,
) -> None:
    hub = await start_hub(jwt_key="k" * 32)
    token = mint_token(key="k" * 32, subscribe=["a"], ttl_s=600)
    by_header = await open_stream(
        hub.port, "/events?topic=a", headers={"Authorization": f"Bearer {token}"}
    )
    by_cookie = await open_stream(
        hub.port, "/events?topic=a", headers={"Cookie": f"sse_hub_token={token}"}
    )
    forbidden = await open_stream(
        hub.port, "/events?topic=b", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        assert (by_header.status, by_cookie.status, forbidden.status) == (200, 200, 403)
        assert _front_door_streams(hub) == 1  # the cookie's stream went through aiohttp
    finally:
        for stream in (by_header, by_cookie, forbidden):
            stream.close()
