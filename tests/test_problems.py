"""``problem_middleware``: errors become problem+json; self-answering handlers run bare."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from sse_hub.errors import InvalidInput
from sse_hub.problems import answers_own_problems, problem_for, problem_middleware


async def failing(request: web.Request) -> web.StreamResponse:
    raise InvalidInput("no good")


@answers_own_problems
async def self_answering(request: web.Request) -> web.StreamResponse:
    try:
        raise InvalidInput("said by the handler")
    except Exception as exc:
        return problem_for(request, exc)


async def test_errors_become_problems_and_marked_handlers_answer_their_own() -> None:
    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get("/failing", failing)
    app.router.add_get("/self", self_answering)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        for path, detail in (("/failing", "no good"), ("/self", "said by the handler")):
            async with session.get(server.make_url(path)) as response:
                assert response.status == 422
                assert response.content_type == "application/problem+json"
                assert (await response.json())["detail"] == detail
        async with session.get(server.make_url("/nowhere")) as response:
            assert response.status == 404
            assert response.content_type == "application/problem+json"


async def test_marked_handler_is_called_without_a_coroutine_around_it() -> None:
    request = object()
    coroutine = object()

    def handler(request: object) -> object:
        return coroutine

    assert problem_middleware(request, answers_own_problems(handler)) is coroutine  # type: ignore[arg-type]
    unmarked = problem_middleware(request, lambda r: coroutine)  # type: ignore[arg-type]
    assert unmarked is not coroutine
    unmarked.close()  # type: ignore[attr-defined]
