"""The app a Python user writes instead of a hub: sse-starlette on uvicorn, in-memory broadcast.

Each subscriber gets its own ``asyncio.Queue`` and its own generator; a publish
puts the message into every queue of its topic, and each subscriber's task
encodes and writes it. This is the per-subscriber shape of the sse-starlette
and aiohttp-sse examples. It has no history, so it takes no part in replay.

Run: ``uvicorn bench.peers.starlette_app:app --loop uvloop --http httptools``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

topics: dict[str, set[asyncio.Queue[ServerSentEvent]]] = {}
ids = itertools.count(1)


async def events(request: Request) -> Response:
    topic = request.query_params["topic"]
    queue: asyncio.Queue[ServerSentEvent] = asyncio.Queue()
    topics.setdefault(topic, set()).add(queue)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            while True:
                yield await queue.get()
        finally:
            subscribers = topics.get(topic)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del topics[topic]

    return EventSourceResponse(stream())


async def publish(request: Request) -> Response:
    topic = request.query_params["topic"]
    data = (await request.body()).decode()
    event_id = next(ids)
    message = ServerSentEvent(data=data, id=str(event_id))
    for queue in topics.get(topic, ()):
        queue.put_nowait(message)
    return JSONResponse({"id": event_id}, status_code=201)


app = Starlette(routes=[Route("/events", events), Route("/publish", publish, methods=["POST"])])
