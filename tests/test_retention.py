from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from sse_hub import store
from sse_hub.events import NewEvent
from sse_hub.retention import RETENTION_LOCK_KEY, interval_for, prune_once
from tests.conftest import HubFactory
from tests.sse_client import open_stream


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def _age(db: asyncpg.Connection, seconds: int) -> None:
    await db.execute(
        "UPDATE sse_hub.events SET created_at = created_at - make_interval(secs => $1)", seconds
    )


async def test_prune_once_deletes_expired_in_batches(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    await store.append(db, [NewEvent("t", str(i)) for i in range(25)])
    await _age(db, 3600)
    await store.append(db, [NewEvent("t", "young")])
    assert await prune_once(pool, 60, batch=10) == 25
    assert [r["data"] for r in await db.fetch("SELECT data FROM sse_hub.events")] == ["young"]
    assert await store.head(db) == 26


async def test_only_one_hub_prunes_at_a_time(
    pool: asyncpg.Pool, db: asyncpg.Connection, dsn: str
) -> None:
    await store.append(db, [NewEvent("t", "old")])
    await _age(db, 3600)
    other = await asyncpg.connect(dsn)
    try:
        await other.execute("BEGIN")
        assert await other.fetchval("SELECT pg_try_advisory_xact_lock($1)", RETENTION_LOCK_KEY)
        assert await prune_once(pool, 60) == 0  # someone else is pruning: skip the round
        await other.execute("COMMIT")
        assert await prune_once(pool, 60) == 1
    finally:
        await other.close()


def test_interval() -> None:
    assert interval_for(30) == 3
    assert interval_for(1) == 1
    assert interval_for(7 * 86400) == 60


async def test_background_retention_leads_to_reset(
    start_hub: HubFactory, db: asyncpg.Connection
) -> None:
    server = await start_hub(retention_s=2.0)
    await store.append(db, [NewEvent("old", str(i)) for i in range(3)])
    await _age(db, 3600)
    await store.append(db, [NewEvent("old", "kept")])
    async with asyncio.timeout(30):
        while await db.fetchval("SELECT count(*) FROM sse_hub.events") != 1:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    stream = await open_stream(server.port, "/events?topic=old", headers={"Last-Event-ID": "1"})
    try:
        reset = await stream.next_event()
        assert reset.event == "sse-hub.reset"
        assert json.loads(reset.data or "") == {"reason": "history-truncated", "oldest_id": 4}
        assert (await stream.next_event()).data == "kept"
    finally:
        stream.close()
