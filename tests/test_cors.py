"""CORS: exact origins with credentials, ``*`` without, preflights, and readable errors."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer

from tests.conftest import HubFactory
from tests.sse_client import open_stream

APP = "https://app.example"
EVIL = "https://evil.example"


async def request(
    server: TestServer, method: str, path: str, headers: dict[str, str], **kwargs: object
) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.make_url(path), headers=headers, **kwargs) as response,  # type: ignore[arg-type]
    ):
        await response.read()
        return response.status, {k.lower(): v for k, v in response.headers.items()}


async def test_exact_origins_are_echoed_with_credentials(start_hub: HubFactory) -> None:
    hub = await start_hub(cors_origins=(APP, "http://localhost:3000"))
    status, headers = await request(hub, "GET", "/healthz", {"Origin": APP})
    assert status == 200
    assert headers["access-control-allow-origin"] == APP
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["vary"] == "Origin"
    assert "Retry-After" in headers["access-control-expose-headers"]

    status, headers = await request(hub, "GET", "/healthz", {"Origin": EVIL})
    assert status == 200
    assert "access-control-allow-origin" not in headers
    assert "access-control-allow-credentials" not in headers
    assert headers["vary"] == "Origin"  # caches must not serve one origin's answer to another


async def test_preflight_for_publishing(start_hub: HubFactory) -> None:
    hub = await start_hub(cors_origins=(APP,))
    preflight = {
        "Origin": APP,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    status, headers = await request(hub, "OPTIONS", "/events", preflight)
    assert status == 204
    assert headers["access-control-allow-origin"] == APP
    assert headers["access-control-allow-methods"] == "GET, POST"
    assert headers["access-control-allow-headers"] == "Authorization, Content-Type, Last-Event-ID"
    assert int(headers["access-control-max-age"]) > 0

    status, headers = await request(hub, "OPTIONS", "/events", {**preflight, "Origin": EVIL})
    assert status == 403
    assert headers["content-type"].startswith("application/problem+json")
    assert "access-control-allow-origin" not in headers

    # the request itself, after the preflight
    status, headers = await request(
        hub, "POST", "/events", {"Origin": APP}, json={"topic": "t", "data": "x"}
    )
    assert status == 201
    assert headers["access-control-allow-origin"] == APP


async def test_errors_are_readable_cross_origin(start_hub: HubFactory) -> None:
    hub = await start_hub(cors_origins=(APP,))
    status, headers = await request(
        hub, "POST", "/events", {"Origin": APP, "Content-Type": "text/plain"}, data=b"x"
    )
    assert status == 415
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["access-control-allow-origin"] == APP
    status, headers = await request(hub, "GET", "/nowhere", {"Origin": APP})
    assert status == 404
    assert headers["access-control-allow-origin"] == APP


async def test_streams_carry_the_headers(start_hub: HubFactory) -> None:
    hub = await start_hub(cors_origins=(APP,))
    stream = await open_stream(hub.port, "/events?topic=t", headers={"Origin": APP})
    try:
        assert stream.status == 200
        assert stream.headers["access-control-allow-origin"] == APP
        assert stream.headers["access-control-allow-credentials"] == "true"
        assert await stream.started() == 3000
    finally:
        stream.close()


async def test_any_origin_never_allows_credentials(start_hub: HubFactory) -> None:
    hub = await start_hub(cors_origins=("*",))
    for origin in (APP, EVIL):
        status, headers = await request(hub, "GET", "/healthz", {"Origin": origin})
        assert status == 200
        assert headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in headers
        assert "vary" not in headers
    preflight = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    status, headers = await request(hub, "OPTIONS", "/events", preflight)
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"


async def test_no_cors_without_configuration(hub: TestServer) -> None:
    status, headers = await request(hub, "GET", "/healthz", {"Origin": APP})
    assert status == 200
    assert not any(name.startswith("access-control-") for name in headers)
    preflight = {"Origin": APP, "Access-Control-Request-Method": "POST"}
    status, headers = await request(hub, "OPTIONS", "/events", preflight)
    assert status == 405
    assert "access-control-allow-origin" not in headers
