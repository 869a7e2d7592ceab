"""``HeadReader``: streams asking together share a query; none gets a head older than its ask."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from sse_hub import store
from sse_hub.events import NewEvent
from sse_hub.heads import HeadReader
from tests.raw_http import wait_until


def NO_HEAD_WITHOUT_A_QUERY() -> None:
    return None


class HeldAnswers:
    """A real pool whose head answers, once PostgreSQL has given them, wait for ``release``."""

    def __init__(self, pool: store.Database) -> None:
        self.pool = pool
        self.queries = 0
        self.answered = 0  # how many answers PostgreSQL gave (held or not)
        self._gate = asyncio.Event()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.queries += 1
        value = await self.pool.fetchval(sql, *args)
        self.answered += 1
        await self._gate.wait()
        return value

    async def fetch(self, sql: str, *args: object) -> list[store.Row]:
        return await self.pool.fetch(sql, *args)

    async def execute(self, sql: str, *args: object) -> str:
        return await self.pool.execute(sql, *args)

    def release(self) -> None:
        self._gate.set()


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[Any]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def _publish(pool: Any) -> int:
    (event_id,) = await store.append(pool, [NewEvent("t", "x", None)])
    return event_id


async def test_a_read_never_joins_a_query_that_started_before_it(pool: Any) -> None:
    db = HeldAnswers(pool)
    reader = HeadReader(db, NO_HEAD_WITHOUT_A_QUERY)
    first_id = await _publish(pool)
    early = asyncio.create_task(reader.read())
    await wait_until(lambda: db.answered == 1, "the first query to be answered")
    second_id = await _publish(pool)  # committed after the first query's snapshot
    late = [asyncio.create_task(reader.read()) for _ in range(20)]
    db.release()
    assert await early == first_id
    assert await asyncio.gather(*late) == [second_id] * 20
    assert (db.queries, reader.queries) == (2, 2)  # the twenty shared one query
    await reader.close()


async def test_a_caller_that_gives_up_leaves_the_others_their_answer(pool: Any) -> None:
    db = HeldAnswers(pool)
    reader = HeadReader(db, NO_HEAD_WITHOUT_A_QUERY)
    head = await _publish(pool)
    leaving, staying = asyncio.create_task(reader.read()), asyncio.create_task(reader.read())
    await wait_until(lambda: db.answered == 1, "the query to be answered")
    leaving.cancel()
    db.release()
    assert await staying == head
    with pytest.raises(asyncio.CancelledError):
        await leaving
    await reader.close()


async def test_failures_reach_the_callers_and_the_next_query_runs_anew(dsn: str) -> None:
    closed = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    await closed.close()
    reader = HeadReader(closed, NO_HEAD_WITHOUT_A_QUERY)
    for _ in range(2):  # each read gets its own failure, not a remembered one
        with pytest.raises(asyncpg.InterfaceError):
            await reader.read()
    assert reader.queries == 2
    await reader.close()


async def test_close_answers_waiting_callers_and_refuses_new_ones(pool: Any) -> None:
    db = HeldAnswers(pool)
    reader = HeadReader(db, NO_HEAD_WITHOUT_A_QUERY)
    waiting = asyncio.create_task(reader.read())
    await wait_until(lambda: db.answered == 1, "the query to be answered")
    queued = asyncio.create_task(reader.read())  # waits for the next query, which never runs
    await asyncio.sleep(0)
    await reader.close()
    for task in (waiting, queued):
        with pytest.raises(ConnectionError):
            await task
    with pytest.raises(ConnectionError):
        await reader.read()
