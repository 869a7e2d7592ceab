"""Every example runs as written, against a real hub."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sse_hub.embedded_pg import free_port
from tests.processes import HubProcess
from tests.sse_client import open_stream

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BIN = Path(sys.executable).parent


@pytest.fixture
async def hub_process(dsn: str) -> AsyncIterator[HubProcess]:
    hub = HubProcess(["--dsn", dsn])
    await hub.wait_healthy()
    yield hub
    hub.stop()


async def run(*command: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=EXAMPLES.parent,
    )
    async with asyncio.timeout(120):
        output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_curl_example(hub_process: HubProcess) -> None:
    code, output = await run("bash", str(EXAMPLES / "curl.sh"), env={"HUB": hub_process.url})
    assert code == 0, output
    seen = output.split("== what the subscriber saw")[1].split("== resume")[0]
    assert "id: 1\ndata: hello\n" in seen
    assert "id: 2\nevent: greeting\ndata: world\n" in seen
    assert 'id: 3\ndata: {"n":3}\n' in seen
    resumed = output.split("== resume after id 1")[1]
    assert "id: 1\n" not in resumed
    assert "id: 2\n" in resumed
    assert "id: 3\n" in resumed


async def test_producer_example(hub_process: HubProcess, dsn: str) -> None:
    stream = await open_stream(hub_process.port, "/events?topic=orders/*&topic=demo")
    try:
        await stream.started()
        code, output = await run(
            sys.executable,
            str(EXAMPLES / "producer.py"),
            env={"HUB": hub_process.url, "SSE_HUB_DSN": dsn},
        )
        assert code == 0, output
        assert "committed" in output
        assert "rolled back (payment declined), nothing was published" in output
        http_event, order_event = await stream.events(2)
        assert http_event.data == '{"hello":"from producer.py"}'
        assert order_event.event == "order.placed"
        assert order_event.data == '{"id":1,"status":"placed"}'
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                hub_process.url + "/events", json={"topic": "demo", "data": "marker"}
            ) as response,
        ):
            assert response.status == 201
        assert (await stream.next_event()).data == "marker"  # the rolled-back order never came
    finally:
        stream.close()


async def test_replay_example(hub_process: HubProcess) -> None:
    code, output = await run(
        sys.executable, str(EXAMPLES / "replay.py"), env={"HUB": hub_process.url}
    )
    assert code == 0, output
    assert "nothing missed, nothing repeated" in output


async def test_gunicorn_example(dsn: str) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(EXAMPLES / "deploy" / "gunicorn.sh"),
        env={
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "SSE_HUB_DSN": dsn,
            "BIND": f"127.0.0.1:{port}",
            "WORKERS": "2",
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(60):
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass  # not listening yet
                await asyncio.sleep(0.1)
        stream = await open_stream(port, "/events?topic=g")
        try:
            await stream.started()
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"http://127.0.0.1:{port}/events", data={"topic": "g", "data": "via gunicorn"}
                ) as response,
            ):
                assert response.status == 201
            assert (await stream.next_event()).data == "via gunicorn"
        finally:
            stream.close()
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            assert await process.wait() == 0


@pytest.mark.parametrize("framework", ["psycopg", "sqlalchemy", "django"])
async def test_producers_publish_inside_their_frameworks_transactions(
    hub_process: HubProcess, dsn: str, framework: str
) -> None:
    stream = await open_stream(hub_process.port, "/events?topic=orders/*")
    try:
        await stream.started()
        code, output = await run(
            sys.executable, str(EXAMPLES / f"{framework}_producer.py"), env={"SSE_HUB_DSN": dsn}
        )
        assert code == 0, output
        assert "order 1: committed and published" in output
        assert "order 2: rolled back (payment declined), nothing was published" in output
        placed = await stream.next_event()
        assert (placed.event, placed.data) == ("order.placed", f'{{"id":1,"via":"{framework}"}}')
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                hub_process.url + "/events", json={"topic": "orders/marker", "data": "marker"}
            ) as response,
        ):
            assert response.status == 201
        assert (await stream.next_event()).data == "marker"  # the rolled-back order never came
    finally:
        stream.close()
