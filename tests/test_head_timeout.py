"""``--request-head-timeout``: a connection that does not finish its request head is closed.

A real ``sse-hub serve`` process (the timer is the server's, set in ``server.serve``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.processes import HubProcess
from tests.raw_http import close
from tests.sse_client import open_stream

HEAD_TIMEOUT_S = 1.0
CLOSED_WITHIN_S = 20.0  # generous: a shared, noisy machine


@pytest.fixture
async def hub(dsn: str) -> AsyncIterator[HubProcess]:
    process = HubProcess(["--dsn", dsn, "--request-head-timeout", str(HEAD_TIMEOUT_S)])
    try:
        await process.wait_healthy()
        yield process
    finally:
        process.stop()


async def _closed_by_hub(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(CLOSED_WITHIN_S):
        return await reader.read()  # b"" once the hub closes the connection


async def test_a_silent_connection_is_closed(hub: HubProcess) -> None:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    try:
        assert await _closed_by_hub(reader) == b""
        assert time.monotonic() - started >= HEAD_TIMEOUT_S * 0.9
    finally:
        await close(writer)


async def test_a_trickled_request_head_is_closed(hub: HubProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    head = b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Slow: " + b"a" * 200

    async def trickle() -> None:
        for byte in head:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.3)  # the attack's pace, not synchronisation

    sending = asyncio.create_task(trickle())
    try:
        assert await _closed_by_hub(reader) == b""
        assert not sending.done()  # closed while the head was still incomplete
    finally:
        sending.cancel()
        await close(writer)


async def test_streams_outlive_the_head_timeout(hub: HubProcess) -> None:
    stream = await open_stream(hub.port, "/events?topic=long")
    try:
        await stream.started()
        await asyncio.sleep(HEAD_TIMEOUT_S * 3)  # well past the timeout: still open
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{hub.url}/events", json={"topic": "long", "data": "still here"}
            ) as response,
        ):
            assert response.status == 201
        event = await stream.next_event()
        assert event.data == "still here"
    finally:
        stream.close()
