"""A stream once its head is sent: the connection belongs to the hub, not to aiohttp.

Per connection aiohttp keeps a request parser, the parsed request, the response
and its writer, and two tasks; a stream needs none of them once its head is on
the wire. ``detach_from_aiohttp`` lets aiohttp forget the connection and
``LiveStream.start`` hands its transport to this small protocol, which brings an
idle stream from about 10 KiB of the hub's memory to about 2. Streams that the
front door opens (``front_door.py``) never had aiohttp's objects to begin with.

While a stream is live no task runs for it: the broker writes its frames and
heartbeats into its sink, and a future's callback wakes it when its state
changes. A task runs only while it has history to write (a resume, or a slow
subscriber catching up): the loop that writes pages, with a write timeout. The
hub's shutdown ends every stream with a jittered ``retry:`` and the last chunk,
without a task; ``LiveStreams.close`` waits for them to go.

However a stream ends, ``connection_lost`` is the one place that accounts for
it: the broker forgets it, the counters and the access line are written.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from aiohttp import web

from sse_hub import frames
from sse_hub.accesslog import access_log, log_stream, request_parts
from sse_hub.feed import DATABASE_GONE, Feed, FeedClosed
from sse_hub.hub import Counters
from sse_hub.request_view import RequestView
from sse_hub.sink import ResponseSink, SentHead
from sse_hub.subscriber import State

log = logging.getLogger(__name__)

SHUTDOWN_REASON = "shutdown"
SHUTDOWN_RETRY_SPREAD_MS = 5000
# How long a shutdown waits for streams to take their last bytes before dropping them.
GOODBYE_TIMEOUT_S = 1.0


def shutdown_retry_line(retry_ms: int) -> bytes:
    """``retry:`` with a random delay in ``[retry_ms, retry_ms + SHUTDOWN_RETRY_SPREAD_MS]``.

    Thousands of clients of a stopping hub then do not all reconnect in the same second.
    """
    return frames.retry_line(retry_ms + random.randint(0, SHUTDOWN_RETRY_SPREAD_MS))


class LiveStreams:
    """The streams of one hub process, so that its shutdown can end them all."""

    def __init__(self) -> None:
        self._streams: set[LiveStream] = set()
        self._emptied: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: LiveStream) -> None:
        self._streams.add(stream)

    def discard(self, stream: LiveStream) -> None:
        self._streams.discard(stream)
        if not self._streams and self._emptied is not None:
            self._emptied.set()

    async def close(self, timeout_s: float = GOODBYE_TIMEOUT_S) -> None:
        """Wait (after the broker closed every subscriber) until every stream is gone.

        Streams whose clients do not take their last bytes in ``timeout_s`` are dropped.
        """
        if not self._streams:
            return
        self._emptied = asyncio.Event()
        try:
            async with asyncio.timeout(timeout_s):
                await self._emptied.wait()
        except TimeoutError:
            for stream in list(self._streams):
                stream.abort()


class LiveStream(asyncio.Protocol):
    __slots__ = (
        "_counters",
        "_drain_waiter",
        "_ended",
        "_feed",
        "_head_bytes",
        "_log_parts",
        "_paused",
        "_registry",
        "_retry_ms",
        "_sink",
        "_started_s",
        "_task",
        "_transport",
        "_write_timeout_s",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        feed: Feed,
        *,
        head: SentHead,
        paused: bool,
        counters: Counters,
        registry: LiveStreams,
        retry_ms: int,
        write_timeout_s: float,
        log_parts: tuple[str, str] | None,
    ) -> None:
        self._transport = transport
        self._feed = feed
        self._sink = ResponseSink(
            transport, chunked=head.chunked, drain=self._drain, bytes_sent=head.body_bytes
        )
        self._paused = paused
        self._drain_waiter: asyncio.Future[None] | None = None
        self._counters = counters
        self._registry = registry
        self._retry_ms = retry_ms
        self._write_timeout_s = write_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._ended = ""  # why the hub ended it; empty while it runs, or if the client left
        # Only an access line needs these (aiohttp skips them likewise).
        self._log_parts = log_parts
        self._started_s = time.monotonic() if log_parts is not None else 0.0
        self._head_bytes = head.head_bytes

    def start(self) -> None:
        """Run the stream on its transport, whose head (and first ``retry:``) is sent.

        From here on the stream's slot in ``counters.streams_open`` is this
        object's to give back.
        """
        self._transport.set_protocol(self)
        self._registry.add(self)
        self._feed.ready(self._sink)  # live frames and heartbeats now go straight into the sink
        self._follow()

    # ---- while it runs

    def _follow(self) -> None:
        """Wait for the feed's next change without a task, or write its history in one."""
        if self._ended or self._transport.is_closing():
            return
        idle = self._feed.idle()
        if idle is not None:
            idle.add_done_callback(self._changed)
        elif self._feed.subscriber.state is State.CLOSED:
            self._end(self._feed.subscriber.close_reason)
        elif self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write_history())

    def _changed(self, _: asyncio.Future[None]) -> None:
        self._follow()

    async def _write_history(self) -> None:
        """Write pages until the feed is live again (or the stream ends)."""
        feed = self._feed
        try:
            while (idle := feed.idle()) is None:
                page = await feed.next_page()
                self._count_feed()
                if page:
                    await self._sink.send(page, self._write_timeout_s)
        except FeedClosed as closed:
            self._task = None
            self._end(closed.reason)
            return
        except TimeoutError:
            self._task = None
            self._counters.slow_disconnects += 1
            log.info("disconnected a client that stopped reading")
            self._ended = "slow"
            self._sink.abort()
            return
        except ConnectionError:
            self._task = None
            return  # the client went away mid-write: connection_lost follows
        self._task = None
        idle.add_done_callback(self._changed)  # live again: no task until the next change

    def _end(self, reason: str) -> None:
        """The hub ends the stream: say goodbye on shutdown, then the body's end."""
        if self._ended:
            return
        self._ended = reason
        goodbye = b""
        if reason == SHUTDOWN_REASON:
            goodbye = shutdown_retry_line(self._retry_ms)
        elif reason == DATABASE_GONE:
            log.warning(
                "ended a stream whose history could not be read, the database is unreachable;"
                " the client resumes from its last id"
            )
        self._sink.end(goodbye)

    def abort(self) -> None:
        self._transport.abort()

    # ---- flow control (the transport calls these)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain(None)

    async def _drain(self) -> None:
        if self._transport.is_closing():
            raise ConnectionResetError("client disconnected")
        if not self._paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiter = waiter
        await waiter

    def _wake_drain(self, error: Exception | None) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is None or waiter.done():
            return
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)

    # ---- the end, however it came

    def data_received(self, data: bytes) -> None:
        pass  # a stream's client has nothing more to say; pipelined requests are not served

    def connection_lost(self, exc: Exception | None) -> None:
        self._wake_drain(ConnectionResetError("client disconnected"))
        task, self._task = self._task, None
        if task is not None:
            task.cancel()  # a page read for a client that is gone
        feed = self._feed
        subscriber = feed.subscriber
        closed_by_hub = subscriber.close_reason if subscriber.state is State.CLOSED else ""
        closed = self._ended or closed_by_hub or "client"
        feed.close()
        self._count_feed()
        counters = self._counters
        counters.streams_open -= 1
        counters.bytes_sent += self._sink.bytes_sent
        self._registry.discard(self)
        if self._log_parts is not None:
            log_stream(
                self._log_parts,
                size=self._head_bytes + self._sink.bytes_sent,
                duration_s=time.monotonic() - self._started_s,
                closed=closed,
            )

    def _count_feed(self) -> None:
        """Add what the feed did to the hub's counters (plain ints)."""
        counts = self._feed.take_counts()
        counters = self._counters
        counters.frames_replayed += counts.replayed
        counters.catch_ups += counts.catch_ups
        counters.replayed_from_memory += counts.replayed_from_memory
        counters.replay_pages_from_memory += counts.pages_from_memory
        counters.replay_page_queries += counts.page_queries


def detach_from_aiohttp(request: web.Request) -> tuple[asyncio.Transport, bool]:
    """The connection of ``request``, whose head is sent, taken away from aiohttp.

    aiohttp forgets it (its parser, request, writer and tasks go) and writes
    nothing more on it; the handler returns at once. Also: whether writing is
    paused. Start a ``LiveStream`` on it.
    """
    transport = request.transport
    handler = request.protocol
    assert transport is not None
    paused = handler.writing_paused
    # Its connection_lost() would close a transport it still had.
    handler.transport = None
    handler.connection_lost(None)
    return transport, paused


def access_parts_if_logged(request: RequestView) -> tuple[str, str] | None:
    """What the stream's access line needs of its request, if access lines are written."""
    return request_parts(request) if access_log.isEnabledFor(logging.INFO) else None
