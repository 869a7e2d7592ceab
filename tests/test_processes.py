"""Hub processes end to end: several hubs on one database, workers, signals."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from sse_hub.frames import FrameParser
from sse_hub.live import SHUTDOWN_RETRY_SPREAD_MS
from sse_hub.server import OPEN_FILES_RESERVE
from tests import raw_http
from tests.processes import HubProcess
from tests.sse_client import SSEStream, open_stream
from tests.waiting import wait_until

# The environment of a hub that starts its embedded database.
_NO_DSN = {name: "" for name in ("SSE_HUB_DSN", "DATABASE_URL")}


@pytest.fixture
async def hubs() -> AsyncIterator[Callable[..., HubProcess]]:
    started: list[HubProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> HubProcess:
        process = HubProcess(list(args), env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


async def _post(url: str, topic: str, data: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/events", json={"topic": topic, "data": data}) as response,
    ):
        assert response.status == 201, await response.text()
        return int((await response.json())["id"])


async def test_two_hub_processes_share_one_database(
    hubs: Callable[..., HubProcess], dsn: str
) -> None:
    one, two = hubs("--dsn", dsn), hubs("--dsn", dsn)
    await asyncio.gather(one.wait_healthy(), two.wait_healthy())
    streams = [
        await open_stream(one.port, "/events?topic=m"),
        await open_stream(two.port, "/events?topic=m"),
    ]
    try:
        for stream in streams:
            await stream.started()
        ids = [await _post(one.url, "m", "via one"), await _post(two.url, "m", "via two")]
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SELECT sse_hub.publish('m', 'via sql')")
        finally:
            await conn.close()
        for stream in streams:
            events = await stream.events(3)
            assert [e.data for e in events] == ["via one", "via two", "via sql"]
            assert [int(e.id or 0) for e in events][:2] == ids
    finally:
        for stream in streams:
            stream.close()


async def test_sigterm_ends_every_stream_cleanly(hubs: Callable[..., HubProcess], dsn: str) -> None:
    hub = hubs("--dsn", dsn, "--shutdown-timeout", "10", "--retry-ms", "2000")
    await hub.wait_healthy()
    streams: list[SSEStream] = []
    try:
        for n in range(200):
            streams.append(await open_stream(hub.port, f"/events?topic=s/{n % 7}"))
        for stream in streams:
            await stream.started()
        signalled = time.monotonic()
        hub.signal(signal.SIGTERM)
        await asyncio.gather(*(stream.read_until_end(timeout_s=30) for stream in streams))
        assert all(stream.ended_cleanly for stream in streams)
        assert await hub.wait_exit(30) == 0
        assert time.monotonic() - signalled < 10, "not within --shutdown-timeout"
        # the last frame of each stream spreads the reconnections out
        delays = [_last_retry(bytes(stream.body)) for stream in streams]
        assert all(
            delay is not None and 2000 <= delay <= 2000 + SHUTDOWN_RETRY_SPREAD_MS
            for delay in delays
        ), delays
        assert len(set(delays)) > 50, "the delays are not spread"
        log = hub.log_path.read_text(errors="replace")
        assert log.count("closed=shutdown") == 200  # each stream's access line, once
    finally:
        for stream in streams:
            stream.close()


async def test_sigterm_lets_a_download_finish(
    hubs: Callable[..., HubProcess], dsn: str, tmp_path: Path
) -> None:
    content = os.urandom(32 << 20)
    (tmp_path / "big.bin").write_bytes(content)
    hub = hubs("--dsn", dsn, "--files-dir", str(tmp_path), "--shutdown-timeout", "20")
    await hub.wait_healthy()
    reader, writer, status, headers = await raw_http.open_slow(hub.port, "/files/big.bin")
    try:
        assert (status, int(headers["Content-Length"])) == (200, len(content))
        received = await raw_http.read_exactly(reader, 1 << 16)
        hub.signal(signal.SIGTERM)  # mid-download: the hub stops accepting, the download goes on
        received += await raw_http.read_to_end(reader)
        assert received == content
        assert await hub.wait_exit(30) == 0
    finally:
        await raw_http.close(writer)


async def test_workers_share_the_port(hubs: Callable[..., HubProcess], dsn: str) -> None:
    hub = hubs("--dsn", dsn, "--workers", "2")
    await hub.wait_healthy()
    await wait_until(lambda: len(_children(hub.process.pid)) == 2, timeout_s=60)
    streams = [await open_stream(hub.port, "/events?topic=w") for _ in range(12)]
    try:
        for stream in streams:
            await stream.started()
        event_id = await _post(hub.url, "w", "to all workers")
        for stream in streams:
            event = await stream.next_event()
            assert (event.data, int(event.id or 0)) == ("to all workers", event_id)
        hub.signal(signal.SIGTERM)
        for stream in streams:
            await stream.read_until_end()
            assert stream.ended_cleanly
        assert await hub.wait_exit(60) == 0
    finally:
        for stream in streams:
            stream.close()


async def test_a_worker_that_exits_is_replaced_and_the_database_stays(
    hubs: Callable[..., HubProcess], data_dir: Path
) -> None:
    hub = hubs("--data-dir", str(data_dir), "--workers", "2", env=_NO_DSN)
    await hub.wait_healthy()
    await wait_until(lambda: len(_worker_pids(hub)) == 2, timeout_s=60)
    crashed, stopped = _worker_pids(hub)
    os.kill(crashed, signal.SIGKILL)
    os.kill(stopped, signal.SIGTERM)  # a graceful exit runs none of the supervisor's code
    await wait_until(lambda: len(_worker_pids(hub)) == 4, timeout_s=60)
    log = hub.log_path.read_text(errors="replace")
    assert "exited with -9; restarting" in log
    assert "exited with 0; restarting" in log
    streams = [await open_stream(hub.port, "/events?topic=r") for _ in range(8)]
    try:
        for stream in streams:
            await stream.started()
        await _post(hub.url, "r", "after the restarts")
        for stream in streams:
            assert (await stream.next_event()).data == "after the restarts"
    finally:
        for stream in streams:
            stream.close()
    hub.signal(signal.SIGTERM)
    assert await hub.wait_exit(60) == 0


async def test_workers_die_with_the_supervisor(hubs: Callable[..., HubProcess], dsn: str) -> None:
    hub = hubs("--dsn", dsn, "--workers", "2")
    await hub.wait_healthy()
    await wait_until(lambda: len(_worker_pids(hub)) == 2, timeout_s=60)
    hub.signal(signal.SIGKILL)
    assert await hub.wait_exit(60) == -signal.SIGKILL
    await wait_until(lambda: not any(_alive(pid) for pid in _worker_pids(hub)), timeout_s=60)


def _worker_pids(hub: HubProcess) -> list[int]:
    """The workers that have logged that they serve, oldest first."""
    log = hub.log_path.read_text(errors="replace")
    return [int(pid) for pid in re.findall(r"serving on \S+ \(pid (\d+)\)", log)]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _postgres_of(data_dir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b"postgres")
            and str(data_dir).encode() in b" ".join(cmdline)
        ):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def data_dir() -> AsyncIterator[Path]:  # type: ignore[misc]
    folder = Path(tempfile.mkdtemp(prefix="sse-hub-test-data-"))
    folder.chmod(0o755)
    yield folder / "state"
    subprocess.run(["rm", "-rf", str(folder)], check=False)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
async def test_embedded_database_stops_with_the_hub(
    hubs: Callable[..., HubProcess], data_dir: Path, signum: int
) -> None:
    hub = hubs("--data-dir", str(data_dir), env=_NO_DSN)
    await hub.wait_healthy()
    await _post(hub.url, "e", "kept")
    servers = _postgres_of(data_dir)
    assert servers, "the hub started no embedded PostgreSQL"
    hub.signal(signum)
    code = await hub.wait_exit(60)
    assert code == (0 if signum == signal.SIGTERM else -signal.SIGKILL)
    await wait_until(lambda: not any(_alive(pid) for pid in servers), timeout_s=60)
    # the data is kept between runs
    again = hubs("--data-dir", str(data_dir), env=_NO_DSN)
    await again.wait_healthy()
    stream = await open_stream(again.port, "/events?topic=e&lastEventID=earliest")
    try:
        assert (await stream.next_event()).data == "kept"
    finally:
        stream.close()
    assert (data_dir / "pgdata" / "PG_VERSION").is_file()


def _last_retry(body: bytes) -> int | None:
    parser = FrameParser()
    parser.feed(body)
    return parser.retry


async def test_a_low_open_files_limit_lowers_max_streams_so_the_rest_get_503(dsn: str) -> None:
    """Past its open files limit a process cannot accept: clients would wait for nothing."""
    open_files, pool = 256, 10
    room = open_files - pool - 1 - OPEN_FILES_RESERVE  # the pool, the relay, the rest
    hub = HubProcess(["--dsn", dsn, "--db-pool-size", str(pool)], open_files=open_files)
    streams: list[SSEStream] = []
    try:
        await hub.wait_healthy()
        assert f"--max-streams 20000 lowered to {room}" in hub.output()
        streams = list(
            await asyncio.gather(
                *(open_stream(hub.port, "/events?topic=fd") for _ in range(room + 20))
            )
        )
        statuses = [stream.status for stream in streams]
        assert statuses.count(200) == room, statuses
        assert statuses.count(503) == 20
    finally:
        for stream in streams:
            stream.close()
        hub.stop()
