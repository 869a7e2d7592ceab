"""The one writer of a stream's socket: SSE frames in, the HTTP body's bytes out.

Everything below the HTTP layer hands over frames (``Subscriber`` at each
dispatched batch and heartbeat, the stream loop for ``retry:`` and replayed
pages); this object alone decides how they travel and counts what they cost:

- HTTP/1.1: each write is one chunk (RFC 9112 section 7.1); aiohttp writes the
  final zero-length chunk when the handler returns.
- HTTP/1.0 (nginx talks it to upstreams unless told otherwise): plain bytes,
  and the connection closes at the end, which is how such a body ends.

It tells aiohttp the same decision before the head is sent, so the head and the
end of the message agree with the body. ``HEAD`` never gets a sink: there is no
body to write.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.http import HttpVersion11


def as_chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk: ``<hex size>\\r\\n<data>\\r\\n``."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class ResponseSink:
    __slots__ = ("_chunked", "_request", "_transport", "bytes_sent")

    def __init__(self, request: web.Request, transport: asyncio.Transport, *, chunked: bool):
        self._request = request
        self._transport = transport
        self._chunked = chunked
        self.bytes_sent = 0  # body bytes, chunk framing included

    @classmethod
    async def start(cls, request: web.Request, response: web.StreamResponse) -> ResponseSink:
        """Send ``response``'s head; from then on its body is written through the sink.

        Raises ``ConnectionResetError`` when the client is already gone.
        """
        chunked = request.version >= HttpVersion11
        if chunked:
            response.enable_chunked_encoding()
        await response.prepare(request)
        # aiohttp keeps the head until the first body write: send it now, alone,
        # since every body byte from here on bypasses aiohttp's writer.
        await response.write(b"")
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("client disconnected")
        _shed_sent_state(request, response)
        return cls(request, transport, chunked=chunked)

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
            await self._request.writer.drain()

    def pending_bytes(self) -> int:
        return self._transport.get_write_buffer_size()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def abort(self) -> None:
        """Drop the connection: its unread bytes would never drain."""
        self._transport.abort()

    @property
    def head_bytes(self) -> int:
        """What aiohttp wrote itself: the response head."""
        return self._request.writer.output_size


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


class EventStreamResponse(web.StreamResponse):
    """A ``GET /events`` response: it logs itself when the stream ends (see ``accesslog``).

    A type, not a header: the sent headers are cleared while the stream runs.
    """

    __slots__ = ()
