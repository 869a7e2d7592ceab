"""The sequencer: ids follow commit order, producers never wait for each other."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from sse_hub import store
from sse_hub.events import NewEvent, TopicPattern

WAIT_S = 10.0


async def _events(db: asyncpg.Connection) -> list[tuple[int, str, str | None, str]]:
    rows = await db.fetch("SELECT id, topic, event, data FROM sse_hub.events ORDER BY id")
    return [(r["id"], r["topic"], r["event"], r["data"]) for r in rows]


async def test_append_assigns_dense_ids_in_order(db: asyncpg.Connection) -> None:
    ids = await store.append(db, [NewEvent("a", "1"), NewEvent("b", "2", "t")])
    assert ids == [1, 2]
    assert await store.append(db, [NewEvent("c", "3")]) == [3]
    assert await _events(db) == [(1, "a", None, "1"), (2, "b", "t", "2"), (3, "c", None, "3")]
    assert await store.head(db) == 3


async def test_empty_append_without_outbox_is_a_noop(db: asyncpg.Connection) -> None:
    assert await store.append(db, []) == []
    assert await store.head(db) == 0


async def test_ids_follow_commit_order_not_start_order(dsn: str, db: asyncpg.Connection) -> None:
    first = await asyncpg.connect(dsn)
    second = await asyncpg.connect(dsn)
    try:
        tx_first = first.transaction()
        tx_second = second.transaction()
        await tx_first.start()
        await tx_second.start()
        await first.execute("SELECT sse_hub.publish('t', 'started first')")
        await second.execute("SELECT sse_hub.publish('t', 'started second')")
        await tx_second.commit()
        await store.append(db, [])  # the sequencer runs between the two commits
        await tx_first.commit()
        await store.append(db, [])
    finally:
        await first.close()
        await second.close()
    assert await _events(db) == [(1, "t", None, "started second"), (2, "t", None, "started first")]


async def test_open_publishing_transaction_neither_blocks_nor_delays(
    dsn: str, db: asyncpg.Connection
) -> None:
    slow = await asyncpg.connect(dsn)
    idle = await asyncpg.connect(dsn)
    other = await asyncpg.connect(dsn)
    try:
        await slow.execute("BEGIN; SELECT sse_hub.publish('t', 'slow')")
        await idle.execute("BEGIN; SELECT txid_current()")  # an unrelated open writer
        async with asyncio.timeout(WAIT_S):
            # another producer is not serialised behind the open one
            await other.execute("BEGIN; SELECT sse_hub.publish('t', 'quick'); COMMIT")
            # and delivery of what committed is not delayed by either open transaction
            assert await store.append(db, [NewEvent("t", "via hub")]) == [2]
        assert await _events(db) == [(1, "t", None, "quick"), (2, "t", None, "via hub")]
        await slow.execute("COMMIT")
        await idle.execute("ROLLBACK")
        await store.append(db, [])
        assert (await _events(db))[-1] == (3, "t", None, "slow")
    finally:
        for conn in (slow, idle, other):
            await conn.close()


async def test_rollback_publishes_nothing(db: asyncpg.Connection) -> None:
    await db.execute("BEGIN; SELECT sse_hub.publish('t', 'never'); ROLLBACK")
    assert await store.append(db, []) == []
    assert await _events(db) == []
    assert await store.head(db) == 0


async def test_sequential_publishes_keep_their_order_across_paths(db: asyncpg.Connection) -> None:
    await db.execute("SELECT sse_hub.publish('t', 'sql 1')")
    await store.append(db, [NewEvent("t", "hub 2")])
    await db.execute("SELECT sse_hub.publish('t', 'sql 3')")
    await db.execute("SELECT sse_hub.publish('t', 'sql 4')")
    await store.append(db, [NewEvent("t", "hub 5"), NewEvent("t", "hub 6")])
    assert [e[3] for e in await _events(db)] == [
        "sql 1",
        "hub 2",
        "sql 3",
        "sql 4",
        "hub 5",
        "hub 6",
    ]


async def test_plain_insert_into_outbox_works_too(db: asyncpg.Connection) -> None:
    await db.execute("INSERT INTO sse_hub.outbox (topic, data, event) VALUES ('t', 'x', 'e')")
    await store.append(db, [])
    assert await _events(db) == [(1, "t", "e", "x")]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("SELECT sse_hub.publish(E'a\\nb', 'x')", "control characters"),
        ("SELECT sse_hub.publish('', 'x')", "1 to 256 bytes"),
        ("SELECT sse_hub.publish(repeat('x', 257), 'x')", "1 to 256 bytes"),
        ("SELECT sse_hub.publish('t', 'x', E'ev\\rent')", "control characters"),
        ("SELECT sse_hub.publish('t', NULL)", "must not be null"),
    ],
)
async def test_sql_publish_validates(db: asyncpg.Connection, call: str, message: str) -> None:
    with pytest.raises(asyncpg.PostgresError, match=message):
        await db.execute(call)
    assert await db.fetchval("SELECT count(*) FROM sse_hub.outbox") == 0


async def test_concurrent_sequencers_never_duplicate_or_skip(dsn: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=8)
    try:

        async def producer(n: int) -> list[int]:
            got: list[int] = []
            for i in range(20):
                got += await store.append(pool, [NewEvent("t", f"{n}-{i}"), NewEvent("t", "x")])
            return got

        results = await asyncio.gather(*(producer(n) for n in range(8)))
        all_ids = sorted(i for ids in results for i in ids)
        assert all_ids == list(range(1, 8 * 20 * 2 + 1))
        for ids in results:
            assert ids == sorted(ids)
    finally:
        await pool.close()


async def test_fetch_page_filters_and_reports_range(db: asyncpg.Connection) -> None:
    topics = ["a", "b", "orders/1", "orders/eu/2", "orders", "a"]
    await store.append(db, [NewEvent(t, str(i)) for i, t in enumerate(topics)])
    page = await store.fetch_page(db, (TopicPattern("a"),), after=0, upto=6, limit=10)
    assert (page.oldest, page.head) == (1, 6)
    assert [e.id for e in page.events] == [1, 6]
    page = await store.fetch_page(db, (TopicPattern("orders/*"),), after=0, upto=6, limit=10)
    assert [e.id for e in page.events] == [3, 4]
    page = await store.fetch_page(
        db, (TopicPattern("orders/*"), TopicPattern("b")), after=2, upto=3, limit=10
    )
    assert [e.id for e in page.events] == [3]
    page = await store.fetch_page(db, (TopicPattern("*"),), after=1, upto=6, limit=2)
    assert [e.id for e in page.events] == [2, 3]
    page = await store.fetch_page(db, (TopicPattern("nothing"),), after=0, upto=6, limit=2)
    assert (page.oldest, page.head, page.events) == (1, 6, [])


async def test_fetch_page_merges_topics_in_id_order_once(db: asyncpg.Connection) -> None:
    topics = ["x", "y", "orders/1", "x", "orders/2", "y", "z", "x", "orders/1"]
    await store.append(db, [NewEvent(t, str(i)) for i, t in enumerate(topics)])
    subscription = (TopicPattern("y"), TopicPattern("orders/*"), TopicPattern("x"))
    page = await store.fetch_page(db, subscription, after=0, upto=9, limit=100)
    assert [e.id for e in page.events] == [1, 2, 3, 4, 5, 6, 8, 9]
    both = (TopicPattern("orders/1"), TopicPattern("orders/*"))
    page = await store.fetch_page(db, both, after=0, upto=9, limit=100)
    assert [e.id for e in page.events] == [3, 5, 9]  # matched twice, returned once
    page = await store.fetch_page(db, subscription, after=1, upto=8, limit=3)
    assert [e.id for e in page.events] == [2, 3, 4]
    assert page.full
    page = await store.fetch_page(db, subscription, after=4, upto=8, limit=3)
    assert [e.id for e in page.events] == [5, 6, 8]


async def test_fetch_page_escapes_like_characters(db: asyncpg.Connection) -> None:
    await store.append(db, [NewEvent("a%/1", "x"), NewEvent("ab/1", "y"), NewEvent("a_/1", "z")])
    page = await store.fetch_page(db, (TopicPattern("a%/*"),), after=0, upto=3, limit=10)
    assert [e.data for e in page.events] == ["x"]


async def test_prune_deletes_oldest_first_and_stops_at_young(db: asyncpg.Connection) -> None:
    await store.append(db, [NewEvent("t", str(i)) for i in range(6)])
    old = datetime.now(UTC) - timedelta(hours=2)
    await db.execute("UPDATE sse_hub.events SET created_at = $1 WHERE id IN (1, 2, 4)", old)
    cutoff = datetime.now(UTC) - timedelta(hours=1)
    assert await store.prune(db, cutoff, 100) == 2  # 4 is old but 3 is not: keep a suffix
    assert [e[0] for e in await _events(db)] == [3, 4, 5, 6]
    page = await store.fetch_page(db, (TopicPattern("*"),), after=0, upto=6, limit=1)
    assert page.oldest == 3
    assert page.head == 6


async def test_fetch_page_is_bounded_in_bytes(db: asyncpg.Connection) -> None:
    await store.append(db, [NewEvent("t", "x" * 1000) for _ in range(10)])
    everything = (TopicPattern("*"),)
    page = await store.fetch_page(db, everything, after=0, upto=10, limit=100, max_bytes=2500)
    assert [e.id for e in page.events] == [1, 2, 3]  # the third reaches the limit
    assert page.full
    page = await store.fetch_page(db, everything, after=8, upto=10, limit=100, max_bytes=2500)
    assert [e.id for e in page.events] == [9, 10]
    assert not page.full
    page = await store.fetch_page(db, everything, after=0, upto=10, limit=4, max_bytes=1 << 20)
    assert [e.id for e in page.events] == [1, 2, 3, 4]
    assert page.full
    one_big = await store.fetch_page(db, everything, after=0, upto=10, limit=100, max_bytes=10)
    assert [e.id for e in one_big.events] == [1]  # always at least one event
