"""``GET /events``: one ``text/event-stream`` response per client.

One loop owns each stream: it waits for the next chunk from the client's feed
(replayed history, live frames, or silence long enough for a heartbeat), writes
it, and ends on shutdown, on a failed or stalled write, or when the client
goes away (the handler is then cancelled, and the cancellation propagates).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from sse_hub import frames
from sse_hub.errors import ServiceUnavailable
from sse_hub.events import parse_patterns
from sse_hub.feed import FeedClosed
from sse_hub.hub import HEARTBEAT_FRAME, Hub
from sse_hub.keys import HUB
from sse_hub.replay import LAST_EVENT_ID_QUERY_KEYS, parse_resume

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _resume_values(request: web.Request) -> list[str]:
    return [value for key in LAST_EVENT_ID_QUERY_KEYS for value in request.query.getall(key, [])]


async def stream_events(request: web.Request) -> web.StreamResponse:
    hub: Hub = request.app[HUB]
    settings = hub.settings
    patterns = parse_patterns(
        request.query.getall("topic", []), max_count=settings.max_topics_per_stream
    )
    resume = parse_resume(request.headers.get("Last-Event-ID"), _resume_values(request))
    if hub.counters.streams_open >= settings.max_streams:
        raise ServiceUnavailable("this hub has as many streams as it allows", retry_after_s=5)

    transport = request.transport
    if transport is None:  # the client is already gone
        raise ConnectionResetError("client disconnected")
    feed = hub.feed(patterns, resume, transport)
    await feed.open()  # before the first byte: nothing published after it can be missed
    hub.counters.streams_open += 1
    hub.counters.streams_total += 1
    response = web.StreamResponse(status=200, headers=SSE_HEADERS)
    try:
        await response.prepare(request)
        await _write(response, frames.retry_frame(settings.retry_ms), settings.write_timeout_s)
        feed.ready()  # live frames now go straight into the transport, chunk-encoded once
        while True:
            chunk = await feed.next_chunk(settings.heartbeat_s)
            data = HEARTBEAT_FRAME if chunk is None else chunk
            await _write(response, data, settings.write_timeout_s)
            hub.counters.bytes_sent += len(data)
    except FeedClosed:
        pass
    except TimeoutError:
        hub.counters.slow_disconnects += 1
        log.info("disconnected a client that stopped reading (%s)", request.remote)
        if request.transport is not None:
            request.transport.abort()  # its unread bytes would never drain
    except ConnectionError:
        pass  # the client went away mid-write
    finally:
        feed.close()
        hub.counters.streams_open -= 1
        hub.counters.frames_replayed += feed.replayed
        hub.counters.catch_ups += feed.subscriber.overflows
    return response


async def _write(response: web.StreamResponse, data: bytes, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        await response.write(data)
