"""``GET /events``: one ``text/event-stream`` response per client.

A request is checked (token, rate, topics, resume point, capacity) before any
await, so a problem is answered with a status and a burst can never take more
than ``--max-streams`` slots: the slot is taken in the same step as the check.
``HEAD`` gets what ``GET`` would answer, without a body.

One loop owns each stream. Live frames and heartbeats are written by the
broker straight into the stream's sink; the loop writes what only it can
(``retry:``, replayed history, catch-up pages) and otherwise waits for the
subscriber's state to change. It ends on shutdown, on a failed or stalled
write, when history cannot be read, or when the client goes away (the handler
is then cancelled, and the cancellation propagates).

A stream ended by the hub's shutdown says ``retry:`` once more with a random
delay in ``[--retry-ms, --retry-ms + SHUTDOWN_RETRY_SPREAD_MS]`` before its
clean end, so thousands of clients do not all reconnect in the same second.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time

from aiohttp import web

from sse_hub import frames
from sse_hub.accesslog import access_log, log_stream
from sse_hub.auth import authenticate, authorize_subscribe
from sse_hub.errors import ServiceUnavailable
from sse_hub.events import TopicPattern, parse_patterns
from sse_hub.feed import DATABASE_GONE, Feed, FeedClosed
from sse_hub.hub import Counters, Hub
from sse_hub.keys import HUB
from sse_hub.problems import answers_own_problems, problem_for
from sse_hub.replay import LAST_EVENT_ID_QUERY_KEYS, Resume, parse_resume
from sse_hub.sink import EventStreamResponse, ResponseSink
from sse_hub.throttle import THROTTLE

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
SHUTDOWN_REASON = "shutdown"
SHUTDOWN_RETRY_SPREAD_MS = 5000
GOODBYE_TIMEOUT_S = 1.0
STREAMS_FULL_RETRY_AFTER_S = 5


def _resume_values(request: web.Request) -> list[str]:
    return [value for key in LAST_EVENT_ID_QUERY_KEYS for value in request.query.getall(key, [])]


def shutdown_retry_line(retry_ms: int) -> bytes:
    return frames.retry_line(retry_ms + random.randint(0, SHUTDOWN_RETRY_SPREAD_MS))


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
    try:
        return await _stream(request, hub, patterns, resume)
    finally:
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
    settings = hub.settings
    counters = hub.counters
    feed = hub.feed(patterns, resume)
    try:
        if request.transport is None:  # the client is already gone
            raise ConnectionResetError("client disconnected")
        await feed.open()  # before the first byte: nothing published after it can be missed
    except Exception as exc:
        feed.close()
        return problem_for(request, exc)
    counters.streams_total += 1
    # Only an access line needs the stream's duration (aiohttp skips it likewise).
    started = time.monotonic() if access_log.isEnabledFor(logging.INFO) else 0.0
    closed = "client"
    response = EventStreamResponse(status=200, headers=SSE_HEADERS)
    sink: ResponseSink | None = None
    try:
        sink = await ResponseSink.start(request, response)
        await sink.send(frames.retry_line(settings.retry_ms), settings.write_timeout_s)
        feed.ready(sink)  # live frames and heartbeats now go straight into the sink
        while True:
            idle = feed.idle()
            if idle is not None:
                await idle  # held for hours by idle streams: a future, not a coroutine chain
                continue
            page = await feed.next_page()
            _count_feed(counters, feed)
            if page:
                await sink.send(page, settings.write_timeout_s)
    except FeedClosed as closed_by:
        closed = closed_by.reason
        if closed == SHUTDOWN_REASON and sink is not None:
            await _say_goodbye(sink, settings.retry_ms)
        elif closed == DATABASE_GONE:
            log.warning(
                "ended a stream whose history could not be read, the database is unreachable"
                " (%s); the client resumes from its last id",
                request.remote,
            )
    except TimeoutError:
        closed = "slow"
        counters.slow_disconnects += 1
        log.info("disconnected a client that stopped reading (%s)", request.remote)
        if sink is not None:
            sink.abort()
    except ConnectionError:
        pass  # the client went away mid-write
    finally:
        feed.close()
        _count_feed(counters, feed)
        if sink is not None:
            counters.bytes_sent += sink.bytes_sent
        log_stream(
            request,
            size=0 if sink is None else sink.head_bytes + sink.bytes_sent,  # head included
            duration_s=time.monotonic() - started,
            closed=closed,
        )
    return response


async def _say_goodbye(sink: ResponseSink, retry_ms: int) -> None:
    """The last line before a shutdown: a jittered reconnection delay."""
    # A client that is not reading keeps its own retry delay: nothing to wait for.
    with contextlib.suppress(TimeoutError, ConnectionError):
        await sink.send(shutdown_retry_line(retry_ms), GOODBYE_TIMEOUT_S)


def _count_feed(counters: Counters, feed: Feed) -> None:
    """Add what the feed replayed, and its catch-ups, to the hub's counters (plain ints)."""
    counts = feed.take_counts()
    counters.frames_replayed += counts.replayed
    counters.catch_ups += counts.catch_ups
    counters.replayed_from_memory += counts.replayed_from_memory
    counters.replay_pages_from_memory += counts.pages_from_memory
    counters.replay_page_queries += counts.page_queries
