"""``answering_problems``: errors become problem+json; self-answering handlers run bare."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from sse_hub.errors import InvalidInput
from sse_hub.problems import answering_problems, answers_own, answers_own_problems, problem_for


async def failing(request: web.Request) -> web.StreamResponse:
    raise InvalidInput("no good")


async def crashing(request: web.Request) -> web.StreamResponse:
    raise RuntimeError("a bug")


@answers_own_problems
async def self_answering(request: web.Request) -> web.StreamResponse:
    try:
        raise InvalidInput("said by the handler")
    except Exception as exc:
        return problem_for(request, exc)


async def test_errors_become_problems_and_marked_handlers_answer_their_own() -> None:
    app = web.Application()
    app.router.add_get("/failing", answering_problems(failing))
    app.router.add_get("/crashing", answering_problems(crashing))
    app.router.add_get("/self", answering_problems(self_answering))
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        for path, status, detail in (
            ("/failing", 422, "no good"),
            ("/self", 422, "said by the handler"),
            ("/crashing", 500, "the hub failed to handle this request; see its log"),
        ):
            async with session.get(server.make_url(path)) as response:
                assert response.status == status
                assert response.content_type == "application/problem+json"
                assert (await response.json())["detail"] == detail


def test_a_marked_handler_is_registered_as_it_is() -> None:
    assert answering_problems(self_answering) is self_answering
    wrapped = answering_problems(failing)
    assert wrapped is not failing
    assert answers_own(wrapped)
    assert answering_problems(wrapped) is wrapped
    assert not answers_own(failing)
