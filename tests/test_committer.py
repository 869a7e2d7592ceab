"""Group commit: shared transactions, whole requests, a cap per transaction, a bounded queue.

To hold requests in the queue deterministically, a test takes the row lock that
``sse_hub.append()`` takes (the only row of ``sse_hub.sequencer``) on a
connection of its own: the committer's transaction in flight then waits on it,
and everything published meanwhile queues up behind it. Which transaction
stored an event is its row's ``xmin``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg
import pytest

from sse_hub.committer import GroupCommitter
from sse_hub.errors import ServiceUnavailable
from sse_hub.events import NewEvent
from tests.waiting import wait_until

WAIT_S = 30.0


class SequencerLock:
    """The sequencer's row lock, held by a transaction on its own connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @classmethod
    async def take(cls, dsn: str) -> SequencerLock:
        conn = await asyncpg.connect(dsn)
        await conn.execute("BEGIN")
        await conn.execute("SELECT last_id FROM sse_hub.sequencer FOR UPDATE")
        return cls(conn)

    async def wait_for_waiters(self, count: int) -> None:
        """Until ``count`` backends are blocked on this lock (a transaction is in flight)."""
        holder = self._conn.get_server_pid()
        async with asyncio.timeout(WAIT_S):
            while await self._waiters(holder) < count:  # noqa: ASYNC110 - the server's state
                await asyncio.sleep(0.02)

    async def _waiters(self, holder: int) -> int:
        return int(
            await self._conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                holder,
            )
        )

    async def release(self) -> None:
        if not self._conn.is_closed():
            await self._conn.execute("ROLLBACK")
            await self._conn.close()


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
async def held(dsn: str) -> AsyncIterator[SequencerLock]:
    lock = await SequencerLock.take(dsn)
    yield lock
    await lock.release()


StartCommitter = Callable[..., GroupCommitter]


@pytest.fixture
async def start_committer(pool: asyncpg.Pool) -> AsyncIterator[StartCommitter]:
    """Started committers on the test's pool, closed at the end of the test."""
    started: list[GroupCommitter] = []

    def start(**limits: int) -> GroupCommitter:
        committer = GroupCommitter(pool, **limits)
        committer.start()
        started.append(committer)
        return committer

    yield start
    for committer in started:
        await committer.close()


def _events(label: str, count: int) -> list[NewEvent]:
    return [NewEvent("t", f"{label}.{n}") for n in range(count)]


def _publish(committer: GroupCommitter, events: Sequence[NewEvent]) -> asyncio.Task[list[int]]:
    return asyncio.create_task(committer.append(events))


async def _queued(committer: GroupCommitter, events: int) -> None:
    """Until ``events`` events wait in the queue (their tasks have made their requests)."""
    await wait_until(lambda: committer._pending_events == events, WAIT_S)


async def _plug(committer: GroupCommitter, held: SequencerLock) -> asyncio.Task[list[int]]:
    """A one-event transaction in flight, waiting on ``held``: later requests queue behind it."""
    plug = _publish(committer, [NewEvent("t", "plug")])
    await held.wait_for_waiters(1)
    return plug


async def _transactions(db: asyncpg.Connection) -> list[list[str]]:
    """The data of every stored event, in id order, grouped by the transaction that stored it."""
    rows = await db.fetch("SELECT xmin::text AS tx, data FROM sse_hub.events ORDER BY id")
    return [
        [row["data"] for row in group] for _, group in itertools.groupby(rows, lambda r: r["tx"])
    ]


def _data(events: Sequence[NewEvent]) -> list[str]:
    return [event.data for event in events]


async def test_publishes_queued_behind_a_transaction_share_the_next_one(
    db: asyncpg.Connection,
    held: SequencerLock,
    start_committer: StartCommitter,
) -> None:
    """Fails when each request gets a transaction of its own (no group commit)."""
    committer = start_committer()
    plug = await _plug(committer, held)
    requests = [_events(f"r{n}", 1) for n in range(20)]
    tasks = [_publish(committer, events) for events in requests]
    await _queued(committer, 20)
    await held.release()
    async with asyncio.timeout(WAIT_S):
        ids = await asyncio.gather(plug, *tasks)
    assert ids == [[n] for n in range(1, 22)]
    assert committer.transactions == 2
    assert committer.events_committed == 21
    assert await _transactions(db) == [["plug"], [data for r in requests for data in _data(r)]]


async def test_no_transaction_holds_more_than_the_cap_and_requests_stay_whole(
    db: asyncpg.Connection,
    held: SequencerLock,
    start_committer: StartCommitter,
) -> None:
    """Fails when the cap is gone (one transaction of 19) or when a request is split to fill one."""
    committer = start_committer(max_transaction_events=10)
    plug = await _plug(committer, held)
    requests = [_events(f"r{n}", size) for n, size in enumerate([4, 4, 4, 4, 3])]
    tasks = [_publish(committer, events) for events in requests]
    await _queued(committer, 19)
    await held.release()
    async with asyncio.timeout(WAIT_S):
        ids = await asyncio.gather(plug, *tasks)
    assert ids == [
        [1],
        [2, 3, 4, 5],
        [6, 7, 8, 9],
        [10, 11, 12, 13],
        [14, 15, 16, 17],
        [18, 19, 20],
    ]
    r0, r1, r2, r3, r4 = map(_data, requests)
    # 4 + 4 + 4 would pass 10: the third request waits, whole, for the next transaction.
    assert await _transactions(db) == [["plug"], r0 + r1, r2 + r3, r4]
    assert committer.transactions == 4


async def test_a_request_larger_than_the_cap_gets_a_transaction_of_its_own(
    db: asyncpg.Connection,
    held: SequencerLock,
    start_committer: StartCommitter,
) -> None:
    """Its events are not split to honour the cap, and nothing else joins them."""
    committer = start_committer(max_transaction_events=10)
    plug = await _plug(committer, held)
    small, large, last = _events("small", 3), _events("large", 25), _events("last", 3)
    tasks = [_publish(committer, events) for events in (small, large, last)]
    await _queued(committer, 31)
    await held.release()
    async with asyncio.timeout(WAIT_S):
        ids = await asyncio.gather(plug, *tasks)
    assert ids == [[1], [2, 3, 4], list(range(5, 30)), [30, 31, 32]]
    assert await _transactions(db) == [["plug"], _data(small), _data(large), _data(last)]
    assert committer.transactions == 4


async def test_past_the_pending_limit_a_publish_is_refused_at_once(
    db: asyncpg.Connection,
    held: SequencerLock,
    start_committer: StartCommitter,
) -> None:
    """Fails when the queue is unbounded: the refused publish would wait for the sequencer."""
    committer = start_committer(max_pending_events=10)
    plug = await _plug(committer, held)  # in flight: no longer pending
    accepted = [_events(f"r{n}", 2) for n in range(4)]
    tasks = [_publish(committer, events) for events in accepted]
    await _queued(committer, 8)
    # The sequencer stays locked throughout, so anything but an immediate answer
    # would wait here until the timeout.
    async with asyncio.timeout(WAIT_S):
        with pytest.raises(ServiceUnavailable) as refused:
            await committer.append(_events("too many", 3))  # 8 + 3 > 10
    assert refused.value.retry_after_s == 1
    fits = _events("fits", 2)
    tasks.append(_publish(committer, fits))  # 8 + 2 = 10: the limit itself is allowed
    accepted.append(fits)
    await _queued(committer, 10)
    async with asyncio.timeout(WAIT_S):
        with pytest.raises(ServiceUnavailable):
            await committer.append(_events("one more", 1))
    assert not plug.done()
    assert not any(task.done() for task in tasks)

    await held.release()
    async with asyncio.timeout(WAIT_S):
        ids = await asyncio.gather(plug, *tasks)
    assert ids == [[1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    stored = [data for tx in await _transactions(db) for data in tx]
    assert stored == ["plug", *(data for r in accepted for data in _data(r))]
    # What was taken out of the queue no longer counts: a full queue's worth is accepted again.
    async with asyncio.timeout(WAIT_S):
        assert await committer.append(_events("again", 10)) == list(range(12, 22))


async def test_close_fails_queued_requests_cancels_the_one_in_flight_and_leaves_no_task(
    db: asyncpg.Connection, held: SequencerLock, start_committer: StartCommitter
) -> None:
    committer = start_committer()
    plug = await _plug(committer, held)
    queued = [_publish(committer, _events(f"q{n}", 2)) for n in range(3)]
    await _queued(committer, 6)
    async with asyncio.timeout(WAIT_S):
        await committer.close()
    assert not [task for task in asyncio.all_tasks() if task.get_name() == "sse-hub-committer"]
    async with asyncio.timeout(WAIT_S):
        for task in queued:
            with pytest.raises(ServiceUnavailable, match="shutting down"):
                await task
        # The transaction in flight was cancelled, and asyncpg cancelled its statement
        # before the pool took the connection back: nothing is stored once the lock goes.
        with pytest.raises(asyncio.CancelledError):
            await plug
    with pytest.raises(ServiceUnavailable, match="not accepting"):
        await committer.append(_events("late", 1))
    await held.release()
    async with asyncio.timeout(WAIT_S):
        # Queued behind any statement still waiting for the lock, so it answers after it.
        assert await db.fetchval("SELECT last_id FROM sse_hub.sequencer FOR UPDATE") == 0
    assert await _transactions(db) == []
    assert committer.transactions == 0


async def test_a_drain_never_waits_for_the_sequencer_and_runs_again_when_told(
    start_committer: StartCommitter, held: SequencerLock, db: asyncpg.Connection
) -> None:
    await db.execute("SELECT sse_hub.publish('t', 'from sql')")  # committed into the outbox
    committer = start_committer()
    committer.request_drain()
    # Another session holds the sequencer: the drain returns at once, and waits on nothing.
    await wait_until(lambda: committer.drains_skipped == 1, WAIT_S)
    assert await held._waiters(held._conn.get_server_pid()) == 0
    assert await db.fetchval("SELECT count(*) FROM sse_hub.outbox") == 1
    await held.release()
    committer.sequenced_elsewhere()  # the holder's commit rang sse_hub_events
    async with asyncio.timeout(WAIT_S):
        while await db.fetchval("SELECT count(*) FROM sse_hub.events") != 1:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert await db.fetchval("SELECT count(*) FROM sse_hub.outbox") == 0
    committer.sequenced_elsewhere()  # no drain was skipped: nothing to do
    assert committer.drains_skipped == 1
