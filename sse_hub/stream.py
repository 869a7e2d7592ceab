"""``GET /events``: one ``text/event-stream`` response per client.

One loop owns each stream: it waits for the next chunk from the client's feed
(replayed history, live frames, or silence long enough for a heartbeat), writes
it, and ends on shutdown, on a failed or stalled write, or when the client
goes away (the handler is then cancelled, and the cancellation propagates).

A stream ended by the hub's shutdown says ``retry:`` once more with a random
delay in ``[--retry-ms, --retry-ms + SHUTDOWN_RETRY_SPREAD_MS]`` before its
clean end, so thousands of clients do not all reconnect in the same second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from aiohttp import web

from sse_hub import frames
from sse_hub.accesslog import access_log, log_stream
from sse_hub.auth import authenticate, authorize_subscribe
from sse_hub.errors import ServiceUnavailable
from sse_hub.events import parse_patterns
from sse_hub.feed import Feed, FeedClosed
from sse_hub.hub import HEARTBEAT_FRAME, Counters, Hub
from sse_hub.keys import HUB
from sse_hub.problems import answers_own_problems, problem_for
from sse_hub.replay import LAST_EVENT_ID_QUERY_KEYS, parse_resume
from sse_hub.throttle import THROTTLE

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
SHUTDOWN_REASON = "shutdown"
SHUTDOWN_RETRY_SPREAD_MS = 5000
STREAMS_FULL_RETRY_AFTER_S = 5


def _resume_values(request: web.Request) -> list[str]:
    return [value for key in LAST_EVENT_ID_QUERY_KEYS for value in request.query.getall(key, [])]


def shutdown_retry_frame(retry_ms: int) -> bytes:
    return frames.retry_frame(retry_ms + random.randint(0, SHUTDOWN_RETRY_SPREAD_MS))


@answers_own_problems
async def stream_events(request: web.Request) -> web.StreamResponse:
    hub: Hub = request.app[HUB]
    settings = hub.settings
    try:
        feed = await _open_feed(request, hub)
    except Exception as exc:
        return problem_for(request, exc)
    hub.counters.streams_open += 1
    hub.counters.streams_total += 1
    # Only an access line needs the stream's duration (aiohttp skips it likewise).
    started = time.monotonic() if access_log.isEnabledFor(logging.INFO) else 0.0
    closed = "client"
    response = web.StreamResponse(status=200, headers=SSE_HEADERS)
    try:
        await response.prepare(request)
        _shed_sent_state(request, response)
        retry = frames.retry_frame(settings.retry_ms)
        await _write(response, retry, settings.write_timeout_s, hub.counters)
        feed.ready()  # live frames now go straight into the transport, chunk-encoded once
        while True:
            idle = feed.idle()
            if idle is not None:
                await idle  # held for hours by idle streams: a future, not a coroutine chain
                continue
            chunk = await feed.next_chunk(settings.heartbeat_s)
            _count_feed(hub.counters, feed)
            data = HEARTBEAT_FRAME if chunk is None else chunk
            await _write(response, data, settings.write_timeout_s, hub.counters)
    except FeedClosed as closed_by:
        closed = closed_by.reason
        if closed_by.reason == SHUTDOWN_REASON:
            await _say_goodbye(response, settings.retry_ms, hub.counters)
    except TimeoutError:
        closed = "slow"
        hub.counters.slow_disconnects += 1
        log.info("disconnected a client that stopped reading (%s)", request.remote)
        if request.transport is not None:
            request.transport.abort()  # its unread bytes would never drain
    except ConnectionError:
        pass  # the client went away mid-write
    finally:
        feed.close()
        _count_feed(hub.counters, feed)
        hub.counters.streams_open -= 1
        live_bytes = feed.subscriber.bytes_written  # written by the broker, not by this loop
        hub.counters.bytes_sent += live_bytes
        log_stream(
            request,
            size=request.writer.output_size + live_bytes,  # headers included, as for others
            duration_s=time.monotonic() - started,
            closed=closed,
        )
    return response


async def _open_feed(request: web.Request, hub: Hub) -> Feed:
    """Check the request and subscribe: everything that can still be answered with a problem."""
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
    transport = request.transport
    if transport is None:  # the client is already gone
        raise ConnectionResetError("client disconnected")
    feed = hub.feed(patterns, resume, transport)
    await feed.open()  # before the first byte: nothing published after it can be missed
    return feed


def _shed_sent_state(request: web.Request, response: web.StreamResponse) -> None:
    """Free what aiohttp keeps per connection but a running stream no longer needs.

    Together about 1.5 KiB of each open stream's memory (docs/benchmarks/run-4ff29f5.md).
    """
    # The headers are serialised and on their way: the dict (and what serialising
    # cached in it) would otherwise live as long as the stream.
    response.headers.clear()
    # The idle-connection timer armed when the connection was made has nothing
    # to time while a stream runs. Whether the connection is kept after the
    # stream is decided by the response, as before.
    request.protocol.keep_alive(False)


def chunked_size(payload_bytes: int) -> int:
    """Bytes on the wire for one HTTP/1.1 chunk: ``<hex size>\r\n<payload>\r\n``."""
    return payload_bytes + len(b"%x" % payload_bytes) + 4


async def _say_goodbye(response: web.StreamResponse, retry_ms: int, counters: Counters) -> None:
    """The last frame before a shutdown: a jittered reconnection delay."""
    # A client that is not reading keeps its own retry delay: nothing to wait for.
    with contextlib.suppress(TimeoutError, ConnectionError):
        await _write(response, shutdown_retry_frame(retry_ms), 1.0, counters)


async def _write(
    response: web.StreamResponse, data: bytes, timeout_s: float, counters: Counters
) -> None:
    """Write one chunk of the stream within ``timeout_s``, and count its bytes."""
    async with asyncio.timeout(timeout_s):
        await response.write(data)
    counters.bytes_sent += chunked_size(len(data))


def _count_feed(counters: Counters, feed: Feed) -> None:
    """Add what the feed replayed, and its catch-ups, to the hub's counters (plain ints)."""
    replayed, catch_ups = feed.take_counts()
    counters.frames_replayed += replayed
    counters.catch_ups += catch_ups
