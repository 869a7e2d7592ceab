"""``GET /events``: one ``text/event-stream`` response per client.

A request is checked (token, rate, topics, resume point, capacity) before any
await, so a problem is answered with a status and a burst can never take more
than ``--max-streams`` slots: the slot is taken in the same step as the check.
``HEAD`` gets what ``GET`` would answer, without a body.

The handler registers the stream with the broker (from then on nothing
published can be missed), sends the head and hands the connection to a
``LiveStream`` (``live.py``), which writes everything after it and gives the
slot back when the stream ends.

Most stream requests never reach aiohttp: the front door (``front_door.py``)
parses plain ones itself and opens them with ``OpeningStream``, the same checks
and the same head, without aiohttp's request, response and tasks.
"""

from __future__ import annotations

import asyncio
import email.utils
import time

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE, HttpVersion, HttpVersion11

from sse_hub import frames
from sse_hub.auth import authenticate, authorize_subscribe
from sse_hub.cors import CORS_POLICY, cors_headers
from sse_hub.errors import ServiceUnavailable
from sse_hub.events import TopicPattern, parse_patterns
from sse_hub.feed import Feed
from sse_hub.hub import Hub
from sse_hub.keys import HUB, LIVE_STREAMS
from sse_hub.live import LiveStream, access_parts_if_logged, detach_from_aiohttp
from sse_hub.problems import answers_own_problems, problem_for
from sse_hub.replay import LAST_EVENT_ID_QUERY_KEYS, Resume, parse_resume
from sse_hub.request_view import RequestView
from sse_hub.sink import EventStreamResponse, SentHead, as_chunk, send_head
from sse_hub.throttle import THROTTLE

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
STREAMS_FULL_RETRY_AFTER_S = 5


def _resume_values(request: RequestView) -> list[str]:
    return [value for key in LAST_EVENT_ID_QUERY_KEYS for value in request.query.getall(key, [])]


@answers_own_problems
async def stream_events(request: web.Request) -> web.StreamResponse:
    hub: Hub = request.app[HUB]
    try:
        patterns, resume = _check(request, hub)
    except Exception as exc:
        if isinstance(exc, ServiceUnavailable):
            hub.counters.streams_refused += 1
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


def _check(request: RequestView, hub: Hub) -> tuple[tuple[TopicPattern, ...], Resume | None]:
    """Everything that can refuse a stream, without awaiting: its topics and resume point.

    It changes nothing until it passes, except the connect rate limit, checked last,
    which counts a stream only when it lets it through.
    """
    settings = hub.settings
    grant = authenticate(request)
    patterns = parse_patterns(
        request.query.getall("topic", []), max_count=settings.max_topics_per_stream
    )
    authorize_subscribe(grant, patterns)
    resume = parse_resume(request.headers.get("Last-Event-ID"), _resume_values(request))
    if hub.counters.streams_open >= settings.max_streams:
        raise ServiceUnavailable(
            "this hub has as many streams as it allows", retry_after_s=STREAMS_FULL_RETRY_AFTER_S
        )
    request.app[THROTTLE].check_connect(request, grant)
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
    response = EventStreamResponse(status=200, headers=SSE_HEADERS)
    try:
        head = await send_head(request, response, frames.retry_line(hub.settings.retry_ms))
    except ConnectionError:
        feed.close()
        raise
    transport, paused = detach_from_aiohttp(request)
    _run(request, hub, feed, transport, head=head, paused=paused)
    return response


def _run(
    request: RequestView,
    hub: Hub,
    feed: Feed,
    transport: asyncio.Transport,
    *,
    head: SentHead,
    paused: bool,
) -> None:
    """The stream runs on ``transport`` from here on, its head sent (``live.py``)."""
    settings = hub.settings
    LiveStream(
        transport,
        feed,
        head=head,
        paused=paused,
        counters=hub.counters,
        registry=request.app[LIVE_STREAMS],
        retry_ms=settings.retry_ms,
        write_timeout_s=settings.write_timeout_s,
        log_parts=access_parts_if_logged(request),
    ).start()


class OpeningStream:
    """A stream request the front door parsed, checked, on its way to a ``LiveStream``.

    ``check`` takes its slot in ``--max-streams``; then exactly one of ``go_live``
    (which hands the slot to the stream) and ``abandon`` gives it back.
    """

    __slots__ = ("_feed", "_hub", "_request")

    def __init__(self, request: RequestView, hub: Hub, feed: Feed) -> None:
        self._request = request
        self._hub = hub
        self._feed = feed

    @classmethod
    def check(cls, request: RequestView) -> OpeningStream | None:
        """The stream, if ``request`` passes every check; ``None`` to leave it to aiohttp.

        aiohttp then checks it again and answers the problem, as for any request.
        """
        hub = request.app.get(HUB)
        if hub is None:
            return None
        try:
            patterns, resume = _check(request, hub)
        except Exception:
            return None
        hub.counters.streams_open += 1  # taken with the check above, before any await
        return cls(request, hub, hub.feed(patterns, resume))

    def open_now(self) -> bool:
        """Register with the broker at once if that needs no await (``Feed.open_now``)."""
        try:
            return self._feed.open_now()
        except BaseException:
            self.abandon()
            raise

    async def open(self) -> None:
        """Register with the broker (see ``stream_events``); raises if it cannot."""
        try:
            await self._feed.open()
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        self._feed.close()
        self._hub.counters.streams_open -= 1

    def go_live(self, transport: asyncio.Transport, *, paused: bool) -> None:
        """Send the head and the first ``retry:`` in one write; the stream runs from there."""
        request, hub = self._request, self._hub
        settings = hub.settings
        hub.counters.streams_total += 1
        hub.counters.streams_front_door += 1
        chunked = request.version >= HttpVersion11
        first = frames.retry_line(settings.retry_ms)
        body = as_chunk(first) if chunked else first
        close = chunked and request.headers.get("Connection", "").lower() == "close"
        policy = request.app.get(CORS_POLICY)
        cors = cors_headers(policy, request.headers.get("Origin")) if policy is not None else {}
        head = response_head(request.version, chunked=chunked, close=close, more=cors)
        transport.write(head + body)
        sent = SentHead(chunked, len(head), len(body))
        _run(request, hub, self._feed, transport, head=sent, paused=paused)


class _DateHeader:
    """``Date``'s value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._text = now, email.utils.formatdate(now, usegmt=True)
        return self._text


_http_date = _DateHeader()


def response_head(
    version: HttpVersion, *, chunked: bool, close: bool, more: dict[str, str]
) -> bytes:
    """The head aiohttp writes for a stream (its CORS headers in ``more``), byte for byte."""
    lines = [f"HTTP/{version.major}.{version.minor} 200 OK"]
    lines += [f"{name}: {value}" for name, value in SSE_HEADERS.items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    lines += [f"Date: {_http_date()}", f"Server: {SERVER_SOFTWARE}"]
    if close:
        lines.append("Connection: close")
    lines += [f"{name}: {value}" for name, value in more.items()]  # aiohttp's hooks add them last
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
