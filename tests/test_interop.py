"""Third-party SSE clients against a real hub: what their users' handlers actually get.

Node's ``eventsource`` (WHATWG-compliant), ``@microsoft/fetch-event-source`` and
Python's ``httpx-sse`` (installed by ``make test``: tests/clients/ and the dev
extra). Each must see exactly the published events: ids, types, multi-line and
non-BMP data, and no empty "phantom" message for the opening ``retry:`` or for
heartbeats. And each one's request is plain enough for the hub's front door,
which opens it without aiohttp's request handling (``front_door.py``).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import pytest
from aiohttp.test_utils import TestServer
from httpx_sse import aconnect_sse

from sse_hub.keys import HUB
from tests.conftest import HubFactory, app_of
from tests.nginx import nginx_before
from tests.processes import HubProcess
from tests.test_stream import publish

CLIENTS = Path(__file__).parent / "clients"
TIMEOUT_S = 60.0
HEARTBEAT_S = 0.2
END = "the end"


def _opened_by_front_door(server: TestServer) -> int:
    return app_of(server)[HUB].counters.streams_front_door


async def _listen(client: str, url: str) -> asyncio.subprocess.Process:
    """``tests/clients/listen.mjs``: a Node client reading ``url``, one JSON line per message."""
    node = shutil.which("node")
    assert node, "node is needed (make test installs the clients with npm)"
    process = await asyncio.create_subprocess_exec(
        node, str(CLIENTS / "listen.mjs"), client, url, stdout=asyncio.subprocess.PIPE, cwd=CLIENTS
    )
    assert process.stdout is not None
    return process


async def _publish_all(server: TestServer) -> list[dict[str, Any]]:
    """Publish the samples; what a client should report for them, in order."""
    expected = []
    for data, event in [
        ("plain", None),
        ("two\r\nlines\rand\nmore", None),
        ('{"status": "paid"}', "order.paid"),
        ("héllo 🎉 ☃", None),
    ]:
        event_id = await publish(server, "t", data, event=event)
        joined = data.replace("\r\n", "\n").replace("\r", "\n")
        expected.append({"id": str(event_id), "event": event or "message", "data": joined})
    return expected


async def _quiet_then_end(server: TestServer) -> dict[str, Any]:
    # Time for several heartbeats to pass, which no client may report: an
    # absence over time, so a wait is the test, not a synchronisation.
    await asyncio.sleep(HEARTBEAT_S * 5)
    end_id = await publish(server, "t", END)
    return {"id": str(end_id), "event": "message", "data": END}


@pytest.mark.parametrize("client", ["eventsource", "fetch-event-source"])
async def test_node_clients_see_exactly_the_events(start_hub: HubFactory, client: str) -> None:
    server = await start_hub(heartbeat_s=HEARTBEAT_S)
    process = await _listen(client, str(server.make_url("/events?topic=t")))
    assert process.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT_S):
            assert json.loads(await process.stdout.readline()) == {"open": True}
            expected = await _publish_all(server)
            expected.append(await _quiet_then_end(server))
            got: list[dict[str, Any]] = []
            while not got or got[-1].get("data") != END:
                got.append(json.loads(await process.stdout.readline()))
        assert got == expected
        assert _opened_by_front_door(server) == 1
    finally:
        process.kill()
        await process.wait()


async def test_httpx_sse_sees_exactly_the_events(start_hub: HubFactory) -> None:
    server = await start_hub(heartbeat_s=HEARTBEAT_S)
    got: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(timeout=TIMEOUT_S) as http,
        aconnect_sse(http, "GET", str(server.make_url("/events?topic=t"))) as source,
    ):
        async with asyncio.timeout(TIMEOUT_S):
            expected = await _publish_all(server)
            ending = asyncio.ensure_future(_quiet_then_end(server))
            async for sse in source.aiter_sse():
                got.append({"id": sse.id, "event": sse.event, "data": sse.data})
                if sse.data == END:
                    break
            expected.append(await ending)
    assert got == expected
    assert _opened_by_front_door(server) == 1


@pytest.fixture
async def nginx_in_front(
    start_hub: HubFactory, tmp_path: Path
) -> AsyncIterator[tuple[str, TestServer]]:
    """nginx on its defaults (HTTP/1.0 to the upstream, buffering on) before a hub."""
    server = await start_hub(heartbeat_s=HEARTBEAT_S)
    async with nginx_before(server.port, tmp_path) as url:
        yield url, server


async def test_node_eventsource_through_nginx_on_its_defaults(
    nginx_in_front: tuple[str, TestServer],
) -> None:
    url, server = nginx_in_front
    process = await _listen("eventsource", f"{url}/events?topic=t")
    assert process.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT_S):
            assert json.loads(await process.stdout.readline()) == {"open": True}
            expected = await _publish_all(server)
            expected.append(await _quiet_then_end(server))
            got: list[dict[str, Any]] = []
            while not got or got[-1].get("data") != END:
                got.append(json.loads(await process.stdout.readline()))
        assert got == expected
        assert _opened_by_front_door(server) == 1
    finally:
        process.kill()
        await process.wait()


async def test_the_body_through_nginx_is_exactly_the_frames(
    nginx_in_front: tuple[str, TestServer],
) -> None:
    url, server = nginx_in_front
    body = b""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/events?topic=t") as response,
    ):
        assert response.status == 200
        async with asyncio.timeout(TIMEOUT_S):
            body += await response.content.readuntil(b"retry: 3000\n")
            first = await publish(server, "t", "one")
            second = await publish(server, "t", "two")
            while b"data: two\n\n" not in body:
                body += await response.content.readany()
    # Heartbeats may fall anywhere between frames; nothing else may.
    assert re.sub(rb": heartbeat\n", b"", body) == (
        f"retry: 3000\nid: {first}\ndata: one\n\nid: {second}\ndata: two\n\n".encode()
    )
    assert _opened_by_front_door(server) == 1  # nginx's HTTP/1.0 request is plain too


async def _next_message(stdout: asyncio.StreamReader) -> dict[str, Any]:
    """The next message a listen.mjs client dispatched, past opens and errors."""
    while True:
        line: dict[str, Any] = json.loads(await stdout.readline())
        if "data" in line:
            return line


@pytest.mark.parametrize("client", ["eventsource", "fetch-event-source"])
async def test_node_clients_resume_by_themselves_across_a_hub_restart(
    dsn: str, db: asyncpg.Connection, client: str
) -> None:
    args = ["--dsn", dsn, "--retry-ms", "200"]
    first = HubProcess(args)
    second: HubProcess | None = None
    await first.wait_healthy()
    process = await _listen(client, f"{first.url}/events?topic=t")
    assert process.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT_S):
            assert json.loads(await process.stdout.readline()) == {"open": True}
            await db.execute("SELECT sse_hub.publish('t', 'before')")
            assert (await _next_message(process.stdout))["data"] == "before"
            first.signal(signal.SIGTERM)
            assert await first.wait_exit() == 0
            for n in (1, 2):
                await db.execute(f"SELECT sse_hub.publish('t', 'missed {n}')")
            second = HubProcess(args, port=first.port)  # same port: the client's URL
            await second.wait_healthy()
            got = [await _next_message(process.stdout), await _next_message(process.stdout)]
            await db.execute("SELECT sse_hub.publish('t', 'after')")
            got.append(await _next_message(process.stdout))
        ids = [row["id"] for row in await db.fetch("SELECT id FROM sse_hub.events ORDER BY id")]
        assert [m["data"] for m in got] == ["missed 1", "missed 2", "after"]
        assert [int(m["id"]) for m in got] == ids[1:]
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        first.stop()
        if second is not None:
            second.stop()
