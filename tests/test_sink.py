"""A stream's bytes on the wire: HTTP/1.1 chunks, plain HTTP/1.0 bodies, bodiless HEAD."""

from __future__ import annotations

import asyncio
import re

from aiohttp.test_utils import TestServer

from sse_hub.keys import HUB
from sse_hub.sink import as_chunk
from tests.conftest import HubFactory, app_of
from tests.raw_http import close, parse_head, read_to_end
from tests.test_stream import publish

TIMEOUT_S = 30.0
HEARTBEAT_LINE = re.compile(rb": heartbeat\n")


async def _connect(
    server: TestServer, request: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request)
    await writer.drain()
    return reader, writer


async def _read_until(reader: asyncio.StreamReader, body: bytearray, needle: bytes) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        while needle not in body:
            data = await reader.read(65536)
            assert data, f"connection closed before {needle!r}; got {bytes(body)!r}"
            body += data


def test_a_chunk_is_its_size_in_hex_then_the_bytes() -> None:
    assert as_chunk(b"id: 1\ndata: x\n\n") == b"f\r\nid: 1\ndata: x\n\n\r\n"


async def test_http10_gets_plain_bytes_and_the_connection_ends_the_body(
    start_hub: HubFactory,
) -> None:
    server = await start_hub(heartbeat_s=0.2)
    replayed = await publish(server, "t", "old")
    reader, writer = await _connect(
        server, b"GET /events?topic=t HTTP/1.0\r\nLast-Event-ID: 0\r\n\r\n"
    )
    try:
        raw = bytearray()
        await _read_until(reader, raw, b"\r\n\r\n")
        head, _, rest = bytes(raw).partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        assert status == 200
        assert "Transfer-Encoding" not in headers
        assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
        body = bytearray(rest)
        await _read_until(reader, body, b"data: old\n\n")
        live = await publish(server, "t", "live")
        await _read_until(reader, body, b"data: live\n\n")
        await _read_until(reader, body, b"data: live\n\n: heartbeat\n")  # a heartbeat after it
        batch = await publish(server, "t", "two\nlines")
        await _read_until(reader, body, b"data: lines\n\n")
        await server.close()  # shutdown: a last retry line, then the connection closes
        body += await read_to_end(reader)
    finally:
        await close(writer)
    quiet = HEARTBEAT_LINE.sub(b"", bytes(body))
    assert re.fullmatch(
        b"retry: 3000\n"
        + f"id: {replayed}\ndata: old\n\n".encode()
        + f"id: {live}\ndata: live\n\n".encode()
        + f"id: {batch}\ndata: two\ndata: lines\n\n".encode()
        + rb"retry: \d+\n",
        quiet,
    ), bytes(body)
    assert b"\r\n" not in body


async def test_http11_live_frames_and_heartbeats_are_exact_chunks(start_hub: HubFactory) -> None:
    server = await start_hub(heartbeat_s=0.2)
    reader, writer = await _connect(server, b"GET /events?topic=t HTTP/1.1\r\nHost: hub\r\n\r\n")
    try:
        raw = bytearray()
        await _read_until(reader, raw, b"retry: 3000\n\r\n")
        live = await publish(server, "t", "x")
        frame = f"id: {live}\ndata: x\n\n".encode()
        await _read_until(reader, raw, as_chunk(frame))
        await _read_until(reader, raw, as_chunk(frame) + as_chunk(b": heartbeat\n"))
    finally:
        await close(writer)
    head, _, body = bytes(raw).partition(b"\r\n\r\n")
    assert parse_head(head)[1]["Transfer-Encoding"] == "chunked"
    assert body.startswith(as_chunk(b"retry: 3000\n") + as_chunk(frame))


async def test_head_answers_the_stream_headers_without_a_body(hub: TestServer) -> None:
    counters = app_of(hub)[HUB].counters
    reader, writer = await _connect(
        hub,
        b"HEAD /events?topic=t HTTP/1.1\r\nHost: hub\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n",
    )
    try:
        raw = await read_to_end(reader)
    finally:
        await close(writer)
    head, _, after = raw.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    # No body: the very next bytes on the connection are the next response.
    assert after.startswith(b"HTTP/1.1 200 OK\r\n"), after[:200]
    assert b'"database"' in after
    assert (counters.streams_total, counters.streams_open) == (0, 0)


async def test_head_gets_the_problems_get_would(hub: TestServer) -> None:
    reader, writer = await _connect(
        hub,
        b"HEAD /events?lastEventID=x&topic=t HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n",
    )
    try:
        raw = await read_to_end(reader)
    finally:
        await close(writer)
    head, _, body = raw.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    assert status == 400
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body == b""
