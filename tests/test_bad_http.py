"""Garbage and truncated HTTP on a raw socket: refused or dropped, and the hub carries on."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.sse_client import open_stream
from tests.test_publish import post, stored

READ_TIMEOUT_S = 20.0

GARBAGE: list[tuple[str, bytes, set[int]]] = [
    # (name, bytes sent before the client hangs up, statuses the hub may answer; empty: none)
    ("tls handshake", bytes.fromhex("1603010200010001fc0303") + b"\x00" * 64, {400}),
    ("binary noise", bytes(range(256)) * 4, {400}),
    ("not http", b"HELLO THERE\r\n\r\n", {400}),
    ("bad version", b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", {400, 505}),
    ("header without colon", b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", {400}),
    ("control char in header", b"GET /healthz HTTP/1.1\r\nHost: a\x00b\r\n\r\n", {400}),
    ("huge request line", b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", {400, 414}),
    ("huge header", b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", {400, 431}),
    ("truncated request line", b"GET /events?topic=t HT", set()),
    ("truncated headers", b"GET /events?topic=t HTTP/1.1\r\nHost: x\r\n", set()),
    (
        "bad chunk size",
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        {400},
    ),
    (
        "both lengths",
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    (
        "body cut short",
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"topic": "t", "data": "cut',
        set(),
    ),
    (
        "claims a huge body",
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000000000000\r\n\r\n{"topic": "t"',
        {413},
    ),
]


async def _send(port: int | None, payload: bytes, *, wait_for_answer: bool) -> bytes:
    """Send ``payload``; then read the answer's head, or hang up at once."""
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        if not wait_for_answer:
            return b""
        async with asyncio.timeout(READ_TIMEOUT_S):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


@pytest.mark.parametrize(("name", "payload", "statuses"), GARBAGE, ids=[g[0] for g in GARBAGE])
async def test_garbage_then_a_normal_request_works(
    hub: TestServer, db: asyncpg.Connection, name: str, payload: bytes, statuses: set[int]
) -> None:
    stream = await open_stream(hub.port, "/events?topic=t")
    try:
        await stream.started()
        answer = await _send(hub.port, payload, wait_for_answer=bool(statuses))
        if statuses:
            assert answer.startswith((b"HTTP/1.0 ", b"HTTP/1.1 ")), answer[:200]
            assert int(answer.split(b" ")[1]) in statuses, answer[:200]
            if b" 413 " in answer:  # refused by the hub itself, not by aiohttp's parser
                assert b"Content-Type: application/problem+json" in answer
        assert await stored(db) == []
        status, _, body = await post(hub, json={"topic": "t", "data": "after"})
        assert (status, body) == (201, {"id": 1})
        assert (await stream.next_event()).data == "after"
    finally:
        stream.close()
