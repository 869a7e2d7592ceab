"""A client that stops reading can neither grow the hub's memory nor slow anyone down,
and it never silently misses an event."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
from aiohttp.test_utils import TestServer

from sse_hub.keys import HUB
from tests.conftest import HubFactory, app_of
from tests.sse_client import SSEStream, StreamEnded, open_stream
from tests.waiting import wait_until

BUFFER_LIMIT = 64 * 1024
EVENT_BYTES = 20_000
EVENTS = 300  # ~6 MB in all, far beyond the buffer and the socket buffers


async def _publish_many(server: TestServer, count: int, start: int = 0) -> list[int]:
    ids: list[int] = []
    payload = "x" * EVENT_BYTES
    async with aiohttp.ClientSession() as session:
        for first in range(start, start + count, 50):
            batch = [
                {"topic": "bulk", "data": f"{n}:{payload}"}
                for n in range(first, min(first + 50, start + count))
            ]
            async with session.post(server.make_url("/events"), json=batch) as response:
                assert response.status == 201
                ids += (await response.json())["ids"]
    return ids


async def _open_unread(port: int | None, path: str) -> SSEStream:
    """A stream whose socket has a tiny receive buffer and that we do not read."""
    assert port is not None
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    stream = SSEStream(reader, writer)
    await stream._read_head()
    return stream


async def test_never_reading_client_falls_behind_then_catches_up(start_hub: HubFactory) -> None:
    server = await start_hub(subscriber_buffer_bytes=BUFFER_LIMIT, write_timeout_s=120)
    hub = app_of(server)[HUB]
    slow = await _open_unread(server.port, "/events?topic=bulk")
    fast = await open_stream(server.port, "/events?topic=bulk")
    try:
        await fast.started()
        peak = 0
        subscribers = list(hub.broker._index.all())
        assert len(subscribers) == 2

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, *(s.buffered_bytes for s in subscribers))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        ids = await _publish_many(server, EVENTS)
        # The fast reader gets everything while the slow one is stuck.
        received = await fast.events(EVENTS, timeout_s=60)
        watcher.cancel()
        assert [int(e.id or 0) for e in received] == ids
        # Live frames stop at the limit; a replay page may pass it by its last
        # event, on top of what the transport still holds below its low-water mark.
        assert peak <= BUFFER_LIMIT + EVENT_BYTES + 64 * 1024
        assert max(s.overflows for s in subscribers) >= 1  # the slow one fell behind
        # Now the slow client reads: it gets every event, once, in order.
        got = await slow.events(EVENTS, timeout_s=120)
        assert [int(e.id or 0) for e in got] == ids
        assert [e.data.split(":", 1)[0] for e in got if e.data] == [str(n) for n in range(EVENTS)]
        more = await _publish_many(server, 5, start=EVENTS)
        assert [int(e.id or 0) for e in await slow.events(5)] == more
    finally:
        slow.close()
        fast.close()


async def test_stalled_client_is_disconnected_and_resumes(start_hub: HubFactory) -> None:
    server = await start_hub(subscriber_buffer_bytes=BUFFER_LIMIT, write_timeout_s=1.0)
    hub = app_of(server)[HUB]
    slow = await _open_unread(server.port, "/events?topic=bulk")
    try:
        ids = await _publish_many(server, EVENTS)
        await wait_until(lambda: hub.counters.slow_disconnects >= 1, timeout_s=60)
        # What did reach the client before the cut ends on a complete frame or is dropped.
        last_seen = 0
        try:
            while True:
                frame = await slow.next_event(timeout_s=30)
                last_seen = int(frame.id or 0)
        except (StreamEnded, ConnectionError, asyncio.IncompleteReadError):
            pass
    finally:
        slow.close()
    assert len(hub.broker) == 0
    resumed = await open_stream(
        server.port, "/events?topic=bulk", headers={"Last-Event-ID": str(last_seen)}
    )
    try:
        rest = [i for i in ids if i > last_seen]
        got = await resumed.events(len(rest), timeout_s=60)
        assert [int(e.id or 0) for e in got] == rest
    finally:
        resumed.close()
