"""A raw-socket SSE client for the tests: it sees exactly the bytes the hub sends.

It speaks HTTP/1.1 by hand (request line, headers, chunked decoding) so the
tests can assert the wire format byte for byte, see the final zero-length
chunk of a cleanly ended stream, and stop reading on purpose.
"""

from __future__ import annotations

import asyncio
from collections import deque

from sse_hub.frames import FrameParser, ParsedFrame

DEFAULT_TIMEOUT_S = 20.0


class StreamEnded(Exception):
    pass


class SSEStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.chunked = False
        self.ended_cleanly = False
        self._parser = FrameParser()
        self._frames: deque[ParsedFrame] = deque()

    async def _read_head(self) -> None:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
        self.chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"

    async def read_chunk(self) -> bytes:
        """The next piece of body; raises ``StreamEnded`` at the end."""
        if self.ended_cleanly:
            raise StreamEnded("the stream ended")
        if not self.chunked:
            data = await self.reader.read(65536)
            if not data:
                raise StreamEnded("connection closed")
            self.body += data
            return data
        size_line = await self.reader.readline()
        if not size_line:
            raise StreamEnded("connection closed without the final chunk")
        size = int(size_line.strip().split(b";")[0], 16)
        data = await self.reader.readexactly(size + 2)
        if size == 0:
            self.ended_cleanly = True
            raise StreamEnded("the stream ended")
        payload = data[:-2]
        self.body += payload
        return payload

    async def next_frame(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> ParsedFrame:
        async with asyncio.timeout(timeout_s):
            while not self._frames:
                self._frames.extend(self._parser.feed(await self.read_chunk()))
        return self._frames.popleft()

    async def started(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
        """Read until the stream's opening ``retry:`` line; its value."""
        async with asyncio.timeout(timeout_s):
            while self._parser.retry is None:
                self._frames.extend(self._parser.feed(await self.read_chunk()))
        return self._parser.retry

    async def next_event(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> ParsedFrame:
        """The next frame that carries data (skipping retry and comments)."""
        async with asyncio.timeout(timeout_s):
            while True:
                frame = await self.next_frame(timeout_s)
                if frame.data is not None:
                    return frame

    async def events(self, count: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[ParsedFrame]:
        async with asyncio.timeout(timeout_s):
            return [await self.next_event(timeout_s) for _ in range(count)]

    async def read_until_end(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        async with asyncio.timeout(timeout_s):
            try:
                while True:
                    self._frames.extend(self._parser.feed(await self.read_chunk()))
            except StreamEnded:
                return

    def close(self) -> None:
        self.writer.close()


async def open_stream(
    port: int | None,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> SSEStream:
    assert port is not None, "the server is not started"
    reader, writer = await asyncio.open_connection(host, port)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    stream = SSEStream(reader, writer)
    async with asyncio.timeout(timeout_s):
        await stream._read_head()
    return stream
