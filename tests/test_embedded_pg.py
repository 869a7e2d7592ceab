from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from sse_hub.embedded_pg import (
    CLUSTER_NOTE,
    ROOT_CLUSTERS_DIR,
    THROWAWAY_PREFIX,
    EmbeddedPostgres,
    find_bindir,
    sweep_stale_throwaways,
)
from tests.processes import HubProcess
from tests.sse_client import open_stream


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


async def _select_one(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


async def test_start_stop_restart_on_unix_socket(cluster_dir: Path) -> None:
    pg = EmbeddedPostgres(cluster_dir / "data")
    dsn = await pg.start()
    try:
        assert "host=" in dsn
        assert str(cluster_dir) in dsn
        assert await _select_one(dsn) == 1
        assert await pg.start() == dsn  # a second start is a no-op
        first_pid = pg.pid
        assert first_pid is not None
    finally:
        await pg.stop()
    assert _wait_gone(first_pid)
    await pg.stop()  # idempotent
    started = time.monotonic()
    await pg.start()  # warm start keeps the data
    warm_s = time.monotonic() - started
    try:
        assert await _select_one(pg.dsn) == 1
        assert warm_s < 10  # generous: this machine is shared
    finally:
        await pg.stop()


async def test_second_launcher_reuses_running_server(cluster_dir: Path) -> None:
    owner = EmbeddedPostgres(cluster_dir / "data")
    await owner.start()
    try:
        guest = EmbeddedPostgres(cluster_dir / "data")
        dsn = await guest.start()
        assert not guest.owned
        assert await _select_one(dsn) == 1
        await guest.stop()  # not its server: still running
        assert await _select_one(owner.dsn) == 1
    finally:
        await owner.stop()


def test_server_dies_with_a_killed_parent(cluster_dir: Path) -> None:
    script = (
        "import asyncio, sys, time\n"
        "from pathlib import Path\n"
        "from sse_hub.embedded_pg import EmbeddedPostgres\n"
        "pg = EmbeddedPostgres(Path(sys.argv[1]))\n"
        "asyncio.run(pg.start())\n"
        "print(pg.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(cluster_dir / "data")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert _alive(server_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    assert _wait_gone(server_pid), "postgres outlived its SIGKILLed parent"


async def test_throwaway_uses_tcp_and_removes_itself() -> None:
    pg = EmbeddedPostgres.throwaway()
    folder = pg.data_dir
    assert folder.name.startswith(THROWAWAY_PREFIX)
    try:
        dsn = await pg.start()
        assert dsn.startswith("postgresql://postgres@127.0.0.1:")
    finally:
        await pg.remove()
    assert not folder.exists()


def test_stale_throwaways_are_swept(tmp_path: Path) -> None:
    dead = tmp_path / (THROWAWAY_PREFIX + "dead")
    dead.mkdir()
    (dead / "owner.pid").write_text("999999999")
    alive = tmp_path / (THROWAWAY_PREFIX + "alive")
    alive.mkdir()
    (alive / "owner.pid").write_text(str(os.getpid()))
    removed = sweep_stale_throwaways(tmp_path)
    assert removed == [dead]
    assert not dead.exists()
    assert alive.exists()


def test_bindir_override_and_error(tmp_path: Path) -> None:
    found = find_bindir()
    assert (found / "postgres").is_file()
    assert find_bindir(str(found)) == found
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "postgres").touch()
    (fake / "initdb").touch()
    assert find_bindir(str(fake)) == fake


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops privileges")
async def test_root_serves_from_a_private_directory_and_keeps_its_data() -> None:
    private = Path(tempfile.mkdtemp())  # mode 0700, as root's home or mktemp -d
    data_dir = private / ".sse-hub"
    home: Path | None = None
    try:
        for round_ in range(2):
            hub = HubProcess(["--data-dir", str(data_dir)])
            try:
                await hub.wait_healthy(timeout_s=120)
                async with aiohttp.ClientSession() as session:
                    if round_ == 0:
                        async with session.post(
                            f"{hub.url}/events", json={"topic": "kept", "data": "across runs"}
                        ) as response:
                            assert response.status == 201
                    else:  # a new process on the same --data-dir: the event is still there
                        stream = await open_stream(
                            hub.port, "/events?topic=kept", headers={"Last-Event-ID": "0"}
                        )
                        try:
                            assert (await stream.next_event()).data == "across runs"
                        finally:
                            stream.close()
                hub.signal(signal.SIGTERM)
                assert await hub.wait_exit() == 0
            finally:
                hub.stop()
            home = Path((data_dir / CLUSTER_NOTE).read_text().strip())
            assert home.parent == ROOT_CLUSTERS_DIR
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o700  # no permission was changed
    finally:
        shutil.rmtree(private, ignore_errors=True)
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
