"""Which PostgreSQL a command works on: the DSN given, else the embedded server."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sse_hub.config import Settings
from sse_hub.database import open_database


async def test_a_dsn_is_used_as_given(dsn: str) -> None:
    database = await open_database(Settings(dsn=dsn))
    assert (database.dsn, database.embedded) == (dsn, None)
    await database.close()
    conn = await asyncpg.connect(dsn)  # closing left the server alone
    await conn.close()


async def _longest_stall_s(work: asyncio.Future[Any]) -> float:
    """The longest time the event loop went without running a 10 ms ticker while ``work`` ran."""
    longest = 0.0
    last = time.monotonic()
    while not work.done():
        await asyncio.wait([work], timeout=0.01)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest


async def test_the_embedded_server_starts_and_stops_without_blocking_the_loop(
    cluster_dir: Path,
) -> None:
    settings = Settings(data_dir=cluster_dir / "data")
    started_at = time.monotonic()
    opening = asyncio.ensure_future(open_database(settings))
    start_stall_s = await _longest_stall_s(opening)
    start_s = time.monotonic() - started_at
    database = opening.result()
    assert database.embedded is not None
    assert database.embedded.owned
    pid = database.embedded.pid
    conn = await asyncpg.connect(database.dsn)
    assert await conn.fetchval("SELECT 1") == 1
    await conn.close()

    closing = asyncio.ensure_future(database.close())
    stop_stall_s = await _longest_stall_s(closing)
    assert pid is not None
    with pytest.raises(ProcessLookupError):  # stopped, and reaped
        os.kill(pid, 0)
    # initdb and the server's start take seconds, all of which a blocking start
    # would hold the loop for; a stall of a fraction of that is the machine's noise.
    assert start_stall_s < max(0.5, start_s / 4), (start_stall_s, start_s)
    assert stop_stall_s < 0.5, stop_stall_s
