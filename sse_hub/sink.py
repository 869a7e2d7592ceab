"""The one writer of a stream's socket: SSE frames in, the HTTP body's bytes out.

Everything below the HTTP layer hands over frames (``Subscriber`` at each
dispatched batch and heartbeat, the stream loop for ``retry:`` and replayed
pages); this object alone decides how they travel and counts what they cost:

- HTTP/1.1: each write is one chunk (RFC 9112 section 7.1), and the body ends
  with the zero-length chunk.
- HTTP/1.0 (nginx talks it to upstreams unless told otherwise): plain bytes,
  and the connection closes at the end, which is how such a body ends.

It tells aiohttp the same decision before the head is sent (``send_head``), so
the head and the end of the message agree with the body. ``HEAD`` never gets a
sink: there is no body to write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from aiohttp import web
from aiohttp.http import HttpVersion11

LAST_CHUNK = b"0\r\n\r\n"


def as_chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk: ``<hex size>\\r\\n<data>\\r\\n``."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class ResponseSink:
    """Writes a stream's body to its transport; ``drain`` waits while the socket is full."""

    __slots__ = ("_chunked", "_drain", "_transport", "bytes_sent")

    def __init__(
        self,
        transport: asyncio.Transport,
        *,
        chunked: bool,
        drain: Callable[[], Awaitable[None]],
        bytes_sent: int = 0,
    ) -> None:
        self._transport = transport
        self._chunked = chunked
        self._drain = drain
        self.bytes_sent = bytes_sent  # body bytes, chunk framing included

    def write(self, frames: bytes) -> None:
        data = as_chunk(frames) if self._chunked else frames
        self._transport.write(data)
        self.bytes_sent += len(data)

    async def send(self, frames: bytes, timeout_s: float) -> None:
        """Write ``frames`` and wait, at most ``timeout_s``, until the socket takes them.

        Raises ``TimeoutError`` for a client that stopped reading and
        ``ConnectionResetError`` for one that is gone.
        """
        if self._transport.is_closing():
            raise ConnectionResetError("client disconnected")
        self.write(frames)
        async with asyncio.timeout(timeout_s):
            await self._drain()

    def end(self, frames: bytes = b"") -> None:
        """The end of the body, after ``frames``: HTTP/1.1's last chunk, then the connection closes.

        One write for both: a hub that stops ends every stream at once.
        """
        transport = self._transport
        if not transport.is_closing():
            data = as_chunk(frames) if self._chunked and frames else frames
            self.bytes_sent += len(data)
            payload = data + LAST_CHUNK if self._chunked else data
            if payload:
                transport.write(payload)
        transport.close()

    def pending_bytes(self) -> int:
        return self._transport.get_write_buffer_size()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def abort(self) -> None:
        """Drop the connection: its unread bytes would never drain."""
        self._transport.abort()


class SentHead(NamedTuple):
    chunked: bool  # whether the body is chunked (HTTP/1.1) or plain bytes (HTTP/1.0)
    head_bytes: int
    body_bytes: int  # of the first frames, chunk framing included


async def send_head(
    request: web.Request, response: web.StreamResponse, first_frames: bytes
) -> SentHead:
    """Send ``response``'s head and ``first_frames`` with it, in one write.

    Raises ``ConnectionResetError`` when the client is already gone.
    """
    chunked = request.version >= HttpVersion11
    if chunked:
        response.enable_chunked_encoding()
    await response.prepare(request)
    # Every body byte after these bypasses aiohttp's writer.
    await response.write(first_frames)
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("client disconnected")
    body_bytes = len(as_chunk(first_frames)) if chunked else len(first_frames)
    return SentHead(chunked, request.writer.output_size - body_bytes, body_bytes)


class EventStreamResponse(web.StreamResponse):
    """A ``GET /events`` response: it logs itself when the stream ends (see ``accesslog``).

    A type, not a header: the sent headers are cleared while the stream runs.
    """

    __slots__ = ()
    # aiohttp then holds the head until the first body write (``send_head``), as it
    # does for a ``web.Response``: one write, one segment, instead of two.
    _send_headers_immediately = False
