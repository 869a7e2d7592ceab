"""``--db-pool-size`` bounds a hub's PostgreSQL connections, and the hub still serves."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.conftest import HubFactory
from tests.sse_client import open_stream
from tests.test_stream import publish

POOL = 2
REPLAYS = 6


async def test_the_pool_size_caps_connections_under_concurrent_replays(
    start_hub: HubFactory, dsn: str
) -> None:
    hub = await start_hub(db_pool_size=POOL)
    observer = await asyncpg.connect(dsn)
    peak = 0
    watching = True

    async def watch() -> None:
        nonlocal peak
        count = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        while watching:
            peak = max(peak, await observer.fetchval(count))
            await asyncio.sleep(0.005)

    for n in range(20):
        await publish(hub, "pool", f"event {n}")
    watcher = asyncio.create_task(watch())
    streams = await asyncio.gather(
        *(open_stream(hub.port, "/events?topic=pool&lastEventID=earliest") for _ in range(REPLAYS))
    )
    try:
        for stream in streams:
            events = await stream.events(20)
            assert [e.data for e in events] == [f"event {n}" for n in range(20)]
    finally:
        watching = False
        await watcher
        for stream in streams:
            stream.close()
        await observer.close()
    assert 0 < peak <= POOL + 1  # the pool, and the relay's LISTEN connection
