"""Adversity on the wire for client tests, by real sockets.

``Proxy`` stands before a real hub and can cut every connection (as a network
drop does), only those carrying event streams (publishes go on), or refuse new
ones (as a host whose hub is down does).
``ScriptedServer`` answers each connection with exact bytes the test wrote: a
stream that goes silent (a half-open connection), odd line endings, refusals
with ``Retry-After``, an event too large.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests.waiting import wait_until

HOST = "127.0.0.1"
TIMEOUT_S = 60.0


async def pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    seen: Callable[[bytes], None] | None = None,
) -> None:
    """Copy ``reader`` to ``writer`` until it ends (showing each read to ``seen``), then close."""
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            if seen is not None:
                seen(data)
            writer.write(data)
            await writer.drain()
    writer.close()


class Proxy:
    """A TCP proxy to ``127.0.0.1:target_port``."""

    def __init__(self, target_port: int | None) -> None:
        assert target_port is not None
        self.target_port = target_port
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._streams: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.transport.abort()  # the hub is down: so is the connection
            return
        self._writers += [writer, up_writer]

        def note_stream(request: bytes) -> None:
            # A stream never ends to let another request follow on its connection.
            if b"GET /events" in request:
                self._streams += [writer, up_writer]

        for task in (
            asyncio.create_task(pipe(reader, up_writer, note_stream)),
            asyncio.create_task(pipe(up_reader, writer)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def cut(self) -> None:
        """Drop every connection at once, both ways, without a clean end."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        self._streams.clear()

    def cut_streams(self) -> None:
        """Drop the connections that carry an event stream; other requests go on."""
        for writer in self._streams:
            writer.transport.abort()
        self._streams.clear()

    async def down(self) -> None:
        """Cut every connection and refuse new ones (nothing listens on the port)."""
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self.cut()

    async def up(self) -> None:
        """Listen on the same port again."""
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class Request:
    path: str
    headers: dict[str, str]  # names in lower case
    at: float  # time.monotonic() when its head had arrived


Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
)


def stream(*parts: bytes | float, silent: bool = False) -> Answer:
    """A 200 event stream (its body ends when the connection closes): ``parts`` in order.

    A float is a pause of that many seconds between writes. ``silent``: after
    the parts, write nothing more and never close (a peer gone without a FIN).
    """

    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(STREAM_HEAD)
        for part in parts:
            if isinstance(part, float):
                await asyncio.sleep(part)  # the stream's own pace, part of the script
            else:
                writer.write(part)
            await writer.drain()
        if silent:
            await asyncio.Future()  # until the server closes

    return answer


def refusal(status: int, reason: str, *headers: str, body: bytes = b"") -> Answer:
    async def answer(writer: asyncio.StreamWriter) -> None:
        head = [f"HTTP/1.1 {status} {reason}", *headers, f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    return answer


class ScriptedServer:
    """The n-th connection gets ``answers[n]`` (the last one again for any after it)."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = answers
        self.requests: list[Request] = []
        self.ended_at: list[float] = []  # when each answer was over and its connection closed
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            index = len(self.requests)
            self.requests.append(Request(head[0].split(" ")[1], headers, time.monotonic()))
            answer = self.answers[min(index, len(self.answers) - 1)]
            # Ended by the server's close, not cancelled: asyncio logs a cancelled handler.
            answering = asyncio.ensure_future(answer(writer))
            closing = asyncio.ensure_future(self._closing.wait())
            await asyncio.wait([answering, closing], return_when=asyncio.FIRST_COMPLETED)
            for waiter in (answering, closing):
                waiter.cancel()
            await asyncio.gather(answering, closing, return_exceptions=True)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.ended_at.append(time.monotonic())
            self._tasks.discard(task)

    async def wait_requests(self, count: int) -> None:
        await wait_until(lambda: len(self.requests) >= count, timeout_s=TIMEOUT_S)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._closing.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
