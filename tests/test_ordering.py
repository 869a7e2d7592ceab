"""Many producers committing in random order; every subscriber sees every committed
event exactly once, in strictly increasing id order, with no gap."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import asyncpg

from tests.conftest import HubFactory
from tests.sse_client import SSEStream, open_stream

SQL_PRODUCERS = 6
TRANSACTIONS_EACH = 12
HTTP_PRODUCERS = 2
HTTP_EACH = 15


async def test_randomized_commit_order(start_hub: HubFactory, dsn: str) -> None:
    rng = random.Random(20261122)
    hub_a = await start_hub()
    hub_b = await start_hub()
    streams: list[SSEStream] = [
        await open_stream(hub_a.port, "/events?topic=r/*"),
        await open_stream(hub_a.port, "/events?topic=*"),
        await open_stream(hub_b.port, "/events?topic=r/*&topic=r/x/*"),
    ]
    committed: list[str] = []

    async def sql_producer(n: int) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for t in range(TRANSACTIONS_EACH):
                tx = conn.transaction()
                await tx.start()
                markers = [f"sql-{n}-{t}-{k}" for k in range(rng.randint(1, 3))]
                for marker in markers:
                    topic = rng.choice(["r/a", "r/b", "r/x/1"])
                    await conn.execute("SELECT sse_hub.publish($1, $2)", topic, marker)
                await asyncio.sleep(rng.uniform(0, 0.05))  # commit out of start order
                if rng.random() < 0.2:
                    await tx.rollback()
                else:
                    await tx.commit()
                    committed.extend(markers)
        finally:
            await conn.close()

    async def http_producer(n: int) -> None:
        server = hub_a if n % 2 == 0 else hub_b
        async with aiohttp.ClientSession() as session:
            for i in range(HTTP_EACH):
                batch = [{"topic": "r/h", "data": f"http-{n}-{i}-{k}"} for k in range(2)]
                async with session.post(server.make_url("/events"), json=batch) as response:
                    assert response.status == 201
                committed.extend(item["data"] for item in batch)
                await asyncio.sleep(rng.uniform(0, 0.02))

    try:
        for stream in streams:
            await stream.started()
        await asyncio.gather(
            *(sql_producer(n) for n in range(SQL_PRODUCERS)),
            *(http_producer(n) for n in range(HTTP_PRODUCERS)),
        )
        async with (
            aiohttp.ClientSession() as session,
            session.post(hub_b.make_url("/events"), json={"topic": "r/end", "data": "end"}) as r,
        ):
            assert r.status == 201
        committed.append("end")
        for stream in streams:
            events = await stream.events(len(committed), timeout_s=90)
            ids = [int(e.id or 0) for e in events]
            assert ids == list(range(1, len(committed) + 1)), "ids must be dense and increasing"
            assert sorted(e.data or "" for e in events) == sorted(committed)
            assert events[-1].data == "end"
    finally:
        for stream in streams:
            stream.close()
