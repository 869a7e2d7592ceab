"""``GET /events``: one ``text/event-stream`` response per client.

A request is checked (token, rate, topics, resume point, capacity) before any
await, so a problem is answered with a status and a burst can never take more
than ``--max-streams`` slots: the slot is taken in the same step as the check.
``HEAD`` gets what ``GET`` would answer, without a body.

The handler registers the stream with the broker (from then on nothing
published can be missed), sends the head and hands the connection to a
``LiveStream`` (``live.py``), which writes everything after it and gives the
slot back when the stream ends.
"""

from __future__ import annotations

from aiohttp import web

from sse_hub import frames
from sse_hub.auth import authenticate, authorize_subscribe
from sse_hub.errors import ServiceUnavailable
from sse_hub.events import TopicPattern, parse_patterns
from sse_hub.hub import Hub
from sse_hub.keys import HUB, LIVE_STREAMS
from sse_hub.live import LiveStream, access_parts_if_logged
from sse_hub.problems import answers_own_problems, problem_for
from sse_hub.replay import LAST_EVENT_ID_QUERY_KEYS, Resume, parse_resume
from sse_hub.sink import EventStreamResponse, send_head
from sse_hub.throttle import THROTTLE

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
STREAMS_FULL_RETRY_AFTER_S = 5


def _resume_values(request: web.Request) -> list[str]:
    return [value for key in LAST_EVENT_ID_QUERY_KEYS for value in request.query.getall(key, [])]


@answers_own_problems
async def stream_events(request: web.Request) -> web.StreamResponse:
    hub: Hub = request.app[HUB]
    try:
        patterns, resume = _check(request, hub)
    except Exception as exc:
        return problem_for(request, exc)
    if request.method == "HEAD":
        return web.StreamResponse(status=200, headers=SSE_HEADERS)
    counters = hub.counters
    counters.streams_open += 1  # taken with the check above, before any await
    handed_over = False
    try:
        response = await _stream(request, hub, patterns, resume)
        handed_over = response.prepared  # the LiveStream gives the slot back
        return response
    finally:
        if not handed_over:
            counters.streams_open -= 1


def _check(request: web.Request, hub: Hub) -> tuple[tuple[TopicPattern, ...], Resume | None]:
    """Everything that can refuse a stream, without awaiting: its topics and resume point."""
    settings = hub.settings
    grant = authenticate(request)
    request.app[THROTTLE].check_connect(request, grant)
    patterns = parse_patterns(
        request.query.getall("topic", []), max_count=settings.max_topics_per_stream
    )
    authorize_subscribe(grant, patterns)
    resume = parse_resume(request.headers.get("Last-Event-ID"), _resume_values(request))
    if hub.counters.streams_open >= settings.max_streams:
        hub.counters.streams_refused += 1
        raise ServiceUnavailable(
            "this hub has as many streams as it allows", retry_after_s=STREAMS_FULL_RETRY_AFTER_S
        )
    return patterns, resume


async def _stream(
    request: web.Request, hub: Hub, patterns: tuple[TopicPattern, ...], resume: Resume | None
) -> web.StreamResponse:
    """Open the feed, send the head and hand the connection over (or answer a problem)."""
    feed = hub.feed(patterns, resume)
    try:
        if request.transport is None:  # the client is already gone
            raise ConnectionResetError("client disconnected")
        await feed.open()  # before the first byte: nothing published after it can be missed
    except Exception as exc:
        feed.close()
        return problem_for(request, exc)
    hub.counters.streams_total += 1
    settings = hub.settings
    response = EventStreamResponse(status=200, headers=SSE_HEADERS)
    try:
        head = await send_head(request, response, frames.retry_line(settings.retry_ms))
    except ConnectionError:
        feed.close()
        raise
    LiveStream.take_over(
        request,
        feed,
        head=head,
        counters=hub.counters,
        registry=request.app[LIVE_STREAMS],
        retry_ms=settings.retry_ms,
        write_timeout_s=settings.write_timeout_s,
        log_parts=access_parts_if_logged(request),
    )
    return response
