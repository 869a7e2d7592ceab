"""Fallback routes: 405 with ``Allow`` and 404, as problems, CORS preflights, and no middleware."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from sse_hub.app import create_app
from sse_hub.config import Settings
from sse_hub.cors import add_cors
from sse_hub.fallbacks import add_fallbacks
from sse_hub.problems import answering_problems, answers_own


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def small_app(cors_origins: tuple[str, ...] = ()) -> web.Application:
    app = web.Application()
    add_cors(app, cors_origins)
    app.router.add_get("/things", answering_problems(ok))
    app.router.add_post("/things", answering_problems(ok))
    app.router.add_get("/things/{name}", answering_problems(ok))
    add_fallbacks(app)
    return app


async def test_wrong_method_is_405_with_allow_and_unknown_path_is_404() -> None:
    async with TestServer(small_app()) as server, aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/things")) as response:
            assert (response.status, await response.text()) == (200, "ok")
        for method, path, allow in (
            ("DELETE", "/things", "GET, HEAD, POST"),
            ("PUT", "/things/x", "GET, HEAD"),
            ("OPTIONS", "/things", "GET, HEAD, POST"),  # no CORS: not a preflight
        ):
            async with session.request(method, server.make_url(path)) as response:
                assert response.status == 405
                assert response.content_type == "application/problem+json"
                assert response.headers["Allow"] == allow
                body = await response.json()
                assert body["status"] == 405
                assert body["detail"] == f"{method} is not allowed here; this path takes {allow}"
        for method in ("GET", "POST", "HEAD"):
            async with session.request(method, server.make_url("/nothing/here")) as response:
                assert response.status == 404
                assert response.content_type == "application/problem+json"


async def test_a_preflight_is_answered_on_any_path_when_cors_is_on() -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    app = small_app(("https://app.example",))
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        for path in ("/things", "/things/x", "/nothing"):
            async with session.options(server.make_url(path), headers=preflight) as response:
                assert response.status == 204
                assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        evil = {**preflight, "Origin": "https://evil.example"}
        async with session.options(server.make_url("/things"), headers=evil) as response:
            assert response.status == 403
            assert response.content_type == "application/problem+json"


def test_the_hub_has_no_middleware_and_every_route_answers_its_problems() -> None:
    app = create_app(Settings(cors_origins=("https://app.example",)))
    assert list(app.middlewares) == []
    routes = list(app.router.routes())
    assert len(routes) >= 10
    unanswered = [route for route in routes if not answers_own(route.handler)]
    assert unanswered == []
