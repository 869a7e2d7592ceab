"""``sse-hub probe`` run as a user runs it, against real hubs, nginx and a lossy middlebox.

Runs are short (a few seconds at 20 events a second): long enough for the
figures to mean something, short enough for a shared machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sse_hub.auth import mint_token
from sse_hub.keys import HUB
from tests.conftest import HubFactory, app_of
from tests.network import Proxy, pipe
from tests.nginx import nginx_before
from tests.waiting import wait_until

COMMAND = [sys.executable, "-m", "sse_hub", "probe"]
TIMEOUT_S = 120.0
KEY = "probe-test-key-" + "k" * 32
SHORT = ["--duration", "3s", "--rate", "20"]


async def probe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``sse-hub probe ARGS``: exit status, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        async with asyncio.timeout(TIMEOUT_S):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def probe_json(*args: str, status: int = 0) -> dict[str, Any]:
    code, out, err = await probe(*args, "--json")
    assert code == status, f"exit {code}\n{out}\n{err}"
    report: dict[str, Any] = json.loads(out)
    return report


def url_of(port: int | None) -> str:
    return f"http://127.0.0.1:{port}"


def assert_nothing_lost(report: dict[str, Any], connections: int) -> None:
    published = report["published"]
    assert published == 60
    overall = report["overall"]
    assert (overall["lost"], overall["duplicates"], overall["out_of_order"]) == (0, 0, 0)
    assert overall["received"] == overall["expected"] == connections * published
    assert len(report["connections"]) == connections
    assert report["ok"] is True
    assert report["problems"] == []


async def test_a_healthy_hub_loses_nothing_and_exits_0(start_hub: HubFactory) -> None:
    server = await start_hub()
    report = await probe_json(url_of(server.port), "--connections", "3", *SHORT)
    assert_nothing_lost(report, 3)
    assert report["topic"].startswith("sse-hub-probe/")
    assert report["publish_errors"] == 0
    assert report["overall"]["reconnects"] == 0
    assert report["open_at_start"] == 3
    assert report["buffering"]["suspected"] is False
    assert report["buffering"]["measured_pairs"] >= 100
    latency = report["overall"]["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert app_of(server)[HUB].counters.streams_total == 3


async def test_deliberate_drops_lose_nothing_and_are_counted(start_hub: HubFactory) -> None:
    server = await start_hub()
    report = await probe_json(
        url_of(server.port), "--connections", "2", "--drop-every", "1s", *SHORT
    )
    assert_nothing_lost(report, 2)
    overall = report["overall"]
    planned = overall["planned_reconnects"]
    assert planned >= 2  # at 1 s and 2 s of a 3 s run, on connection 1 then 2
    assert [c["planned_reconnects"] for c in report["connections"]][:1] == [1]
    assert overall["reconnects"] == planned  # none the probe did not ask for
    # Each drop was a real one: the hub opened a stream per reconnect.
    assert app_of(server)[HUB].counters.streams_total == 2 + planned


async def test_through_nginx_on_its_defaults_no_buffering(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    server = await start_hub()
    # The hub's X-Accel-Buffering: no turns nginx's default buffering off for streams.
    async with nginx_before(server.port, tmp_path) as url:
        code, out, err = await probe(url, "--connections", "2", "--drop-every", "1s", *SHORT)
    assert code == 0, f"{out}\n{err}"
    assert "\nbuffering: not suspected: " in out
    assert out.endswith("result: OK: nothing lost, duplicated or misordered\n")
    assert "held back" not in out


async def test_a_proxy_that_buffers_the_stream_is_flagged(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    server = await start_hub()
    buffering = "proxy_ignore_headers X-Accel-Buffering;"  # nginx's buffering stays on
    async with nginx_before(server.port, tmp_path, location_extra=buffering) as url:
        report = await probe_json(url, "--connections", "2", *SHORT)
    assert_nothing_lost(report, 2)  # late, in clumps, but every one of them
    assert report["buffering"]["suspected"] is True
    assert report["buffering"]["clumped_fraction"] >= 0.5
    assert report["open_at_start"] == 0  # nginx held the response head back too
    assert report["overall"]["latency_ms"]["p50"] > 200


async def test_drops_the_path_makes_are_counted_and_their_replays_are_no_clumps(
    start_hub: HubFactory,
) -> None:
    server = await start_hub(retry_ms=1000)
    counters = app_of(server)[HUB].counters
    proxy = Proxy(server.port)  # publishes go through it too, and on while streams are cut
    await proxy.start()
    try:
        probing = asyncio.ensure_future(probe_json(proxy.url, "--connections", "2", *SHORT))
        await wait_until(lambda: counters.events_published >= 20, timeout_s=TIMEOUT_S)
        proxy.cut_streams()  # the clients wait the hub's retry: of 1 s, then resume
        report = await probing
    finally:
        await proxy.close()
    assert_nothing_lost(report, 2)
    assert [c["reconnects"] for c in report["connections"]] == [1, 1]
    assert report["overall"]["planned_reconnects"] == 0
    # About 20 events a connection came back in one replay: no clumps of a proxy's.
    assert counters.frames_replayed >= 2 * 15
    assert report["buffering"]["suspected"] is False


class EventEatingProxy:
    """A middlebox that swallows every stream frame holding ``needle``, once per frame.

    It asks the hub for HTTP/1.0 (so the body is the frames themselves, no
    chunks to re-frame), passes everything else through, and closes each
    connection after one answer. The client then never sees that event, and
    its ``Last-Event-ID`` moves past it: a real loss, as a broken proxy makes.
    """

    def __init__(self, target_port: int | None, needle: bytes) -> None:
        assert target_port is not None
        self.target_port = target_port
        self.needle = needle
        self.eaten = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return url_of(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            line = await reader.readline()
            up_writer.write(line.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n"))
            upstream = asyncio.create_task(pipe(reader, up_writer))
            try:
                await self._answer(up_reader, writer)
            finally:
                upstream.cancel()
                up_writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _answer(self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await up_reader.readuntil(b"\r\n\r\n"))
        pending = b""
        while data := await up_reader.read(65536):
            pending += data
            *frames, pending = pending.split(b"\n\n")
            for frame in frames:
                if self.needle in frame:
                    self.eaten += 1
                else:
                    writer.write(frame + b"\n\n")
            await writer.drain()
        writer.write(pending)
        await writer.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def test_an_event_lost_on_the_way_is_reported_and_exits_1(start_hub: HubFactory) -> None:
    server = await start_hub()
    proxy = EventEatingProxy(server.port, needle=b'"seq":7,')
    url = await proxy.start()
    try:
        code, out, err = await probe(url, "--connections", "2", "--grace", "2s", *SHORT)
    finally:
        await proxy.close()
    assert code == 1, f"{out}\n{err}"
    assert proxy.eaten == 2  # one frame on each connection
    assert "result: FAILED: 1 lost on connection 1 (seq 7); 1 lost on connection 2 (seq 7)" in out
    lines = out.splitlines()
    assert any(line.split()[:3] == ["all", "118/120", "2"] for line in lines), out


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "publishing to t: 401 Unauthorized"),
        (mint_token(key=KEY, publish=["t"], ttl_s=3600), "subscribing to t: 403 Forbidden"),
    ],
)
async def test_a_refusal_exits_3_with_the_problem(
    start_hub: HubFactory, token: str | None, message: str
) -> None:
    server = await start_hub(jwt_key=KEY)
    env = {"SSE_HUB_TOKEN": token} if token else {}
    code, out, err = await probe(url_of(server.port), "--topic", "t", *SHORT, env=env)
    assert code == 3, f"{out}\n{err}"
    assert out == ""
    assert message in err.splitlines()[-1]


async def test_a_token_with_both_rights_is_enough(start_hub: HubFactory) -> None:
    server = await start_hub(jwt_key=KEY)
    token = mint_token(
        key=KEY, publish=["sse-hub-probe/*"], subscribe=["sse-hub-probe/*"], ttl_s=3600
    )
    code, out, err = await probe(
        url_of(server.port), "--token", token, "--connections", "1", "--duration", "1s"
    )
    assert code == 0, f"{out}\n{err}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hub.example"], "URL: must start with http:// or https://"),
        (["--connections", "0"], "--connections: must be between 1 and 64, got 0"),
        (["--connections", "many"], "--connections: expected a number of connections"),
        (["--duration", "2h"], "--duration: must be at most 3600s"),
        (["--duration", "10"], "--duration: unknown duration unit"),
        (["--rate", "0"], "--rate: must be between 0.1 and 1000"),
        (["--drop-every", "10s"], "--drop-every: 10s is not shorter than --duration 10s"),
        (["--topic", "orders/*"], "--topic: 'orders/*' is a pattern"),
        (["--grace", "0s"], "--grace: must be greater than zero"),
    ],
)
async def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    url = [] if args[0] == "hub.example" else ["http://127.0.0.1:1"]
    code, out, err = await probe(*url, *args)
    assert code == 2
    assert out == ""
    assert err.startswith("sse-hub: error: ")
    assert message in err
    assert err.count("\n") == 1
