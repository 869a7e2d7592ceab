"""A subscriber's feed on a real hub: bounded pages of history, resets, catch-up, a lost database.

Each test drives a ``Feed`` the way ``stream.py``'s loop does: it writes every
page ``next_page`` returns before asking again, and live frames go to the sink
given to ``ready``. The sink here is the far end of the stream, which reads
only when the test says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from sse_hub import store
from sse_hub.config import DEFAULT_SUBSCRIBER_BUFFER_BYTES, Settings
from sse_hub.events import NewEvent, TopicPattern
from sse_hub.feed import DATABASE_GONE, DEFAULT_PAGE_EVENTS, Feed, FeedClosed
from sse_hub.frames import FrameParser, ParsedFrame
from sse_hub.hub import Hub
from sse_hub.replay import Resume
from sse_hub.subscriber import State
from tests.waiting import wait_until

WAIT_S = 30.0
NO_HEARTBEATS_S = 3600.0

StartHub = Callable[..., Awaitable[Hub]]

# With so short a retention a hub serves no history from memory (recent.py): the
# tests of the database's pages use it so that every page is read from the database.
NO_MEMORY_RETENTION_S = 60.0


@pytest.fixture
async def start_hub_core(dsn: str) -> AsyncIterator[StartHub]:
    """Real hubs (pool, committer, relay) on the test database, without HTTP; closed at the end."""
    hubs: list[Hub] = []

    async def start(
        *,
        subscriber_buffer_bytes: int = DEFAULT_SUBSCRIBER_BUFFER_BYTES,
        retention_s: float = Settings.retention_s,
    ) -> Hub:
        settings = Settings(
            dsn=dsn,
            heartbeat_s=NO_HEARTBEATS_S,
            subscriber_buffer_bytes=subscriber_buffer_bytes,
            retention_s=retention_s,
        )
        hub = await Hub.start(settings, dsn, retention=False)
        hubs.append(hub)
        return hub

    yield start
    for hub in reversed(hubs):
        await hub.close()


class Client:
    """The far end of one stream: every byte that reached it, and how many are unread."""

    def __init__(self) -> None:
        self.bytes_sent = 0
        self.received = bytearray()
        self.unread = 0

    def write(self, frames: bytes) -> None:
        self.received += frames
        self.bytes_sent += len(frames)
        self.unread += len(frames)

    def pending_bytes(self) -> int:
        return self.unread

    def is_closing(self) -> bool:
        return False

    def read(self) -> None:
        self.unread = 0


def _events(data: bytes) -> list[ParsedFrame]:
    return [frame for frame in FrameParser().feed(data) if frame.data is not None]


def _data_before_last(page: bytes) -> int:
    """Bytes of data in ``page`` before its last event (a page stops after reaching its limit)."""
    return sum(len((frame.data or "").encode()) for frame in _events(page)[:-1])


def _ids(data: bytes) -> list[int]:
    return [int(frame.id or 0) for frame in _events(data)]


async def _pages_until_live(feed: Feed, client: Client | None = None) -> list[bytes]:
    """What ``stream.py``'s loop writes until the feed is live: each page, read by the client."""
    pages: list[bytes] = []
    async with asyncio.timeout(WAIT_S):
        while feed.idle() is None:
            page = await feed.next_page()
            if page:
                pages.append(page)
                if client is not None:
                    client.write(page)
                    client.read()  # the stream awaits the page's delivery before going on
    return pages


async def _open(hub: Hub, topic: str, resume: Resume | None) -> Feed:
    feed = hub.feed((TopicPattern(topic),), resume)
    await feed.open()
    return feed


async def _dispatched(hub: Hub, last_id: int) -> None:
    await wait_until(lambda: hub.broker.last_id >= last_id, WAIT_S)


async def test_a_replay_reads_pages_of_at_most_the_page_limit_of_events(
    db: asyncpg.Connection, start_hub_core: StartHub
) -> None:
    """Fails when a page may hold any number of events (one page of the whole history)."""
    history = 2 * DEFAULT_PAGE_EVENTS + 500
    await store.append(db, [NewEvent("t", str(n)) for n in range(history)])
    await store.append(db, [NewEvent("other", "x")])
    hub = await start_hub_core(retention_s=NO_MEMORY_RETENTION_S)
    feed = await _open(hub, "t", Resume(after=0))
    pages = await _pages_until_live(feed)
    assert [len(_ids(page)) for page in pages] == [DEFAULT_PAGE_EVENTS, DEFAULT_PAGE_EVENTS, 500]
    assert [n for page in pages for n in _ids(page)] == list(range(1, history + 1))
    assert feed.subscriber.state is State.LIVE
    counts = feed.take_counts()
    assert (counts.replayed, counts.catch_ups) == (history, 0)
    feed.close()


async def test_a_replay_reads_pages_of_at_most_the_buffer_limit_of_bytes(
    db: asyncpg.Connection, start_hub_core: StartHub
) -> None:
    """A page stops after the event that reaches the subscriber's buffer limit in data.

    Fails when a page's bytes are unbounded (one page of 50 events, 50 000 bytes).
    """
    limit = 10_000
    data = [f"{n:04d}" + "x" * 996 for n in range(50)]  # 1000 bytes each
    await store.append(db, [NewEvent("t", d) for d in data])
    hub = await start_hub_core(subscriber_buffer_bytes=limit)
    feed = await _open(hub, "t", Resume(after=0))
    pages = await _pages_until_live(feed)
    assert all(_data_before_last(page) < limit for page in pages)
    assert [len(_ids(page)) for page in pages] == [10] * 5
    assert [frame.data for page in pages for frame in _events(page)] == data


async def test_a_resume_replays_matching_events_after_its_id_then_continues_live(
    db: asyncpg.Connection, start_hub_core: StartHub
) -> None:
    await store.append(db, [NewEvent("a" if n % 2 == 0 else "b", str(n)) for n in range(10)])
    hub = await start_hub_core()
    feed = await _open(hub, "a", Resume(after=4))
    client = Client()
    feed.ready(client)
    # Published after the feed opened and dispatched before its first page: once, from the page.
    (seam,) = await hub.publish_events([NewEvent("a", "seam")])
    await _dispatched(hub, seam)
    assert await _pages_until_live(feed, client) == [
        b"id: 5\ndata: 4\n\nid: 7\ndata: 6\n\nid: 9\ndata: 8\n\nid: 11\ndata: seam\n\n"
    ]
    await hub.publish_events([NewEvent("b", "not for us"), NewEvent("a", "live")])
    await wait_until(lambda: client.received.endswith(b"id: 13\ndata: live\n\n"), WAIT_S)
    assert _ids(bytes(client.received)) == [5, 7, 9, 11, 13]
    feed.close()


async def test_a_resume_past_truncated_history_gets_a_reset_first(
    db: asyncpg.Connection, start_hub_core: StartHub
) -> None:
    """Fails when the reset notice is missing, or owed to a client that lost nothing."""
    await store.append(db, [NewEvent("t", str(n)) for n in range(10)])
    await db.execute("DELETE FROM sse_hub.events WHERE id <= 5")  # what retention does
    hub = await start_hub_core()
    retained = b"".join(f"id: {n}\ndata: {n - 1}\n\n".encode() for n in range(6, 11))

    lost = await _open(hub, "t", Resume(after=2))
    assert await _pages_until_live(lost) == [
        b'event: sse-hub.reset\ndata: {"reason": "history-truncated", "oldest_id": 6}\n\n'
        + retained
    ]
    lost_nothing = await _open(hub, "t", Resume(after=5))
    assert await _pages_until_live(lost_nothing) == [retained]
    # "earliest" asks for wherever history starts: nothing to be told.
    earliest = await _open(hub, "t", Resume(after=0, from_earliest=True))
    assert await _pages_until_live(earliest) == [retained]
    for feed in (lost, lost_nothing, earliest):
        feed.close()


async def test_a_subscriber_past_its_buffer_limit_catches_up_without_gap_or_duplicate(
    start_hub_core: StartHub,
) -> None:
    """Fails when the buffer limit is gone: the unread bytes would grow with every event."""
    limit = 8 * 1024
    hub = await start_hub_core(subscriber_buffer_bytes=limit)
    feed = await _open(hub, "t", None)
    assert feed.subscriber.state is State.LIVE
    client = Client()
    feed.ready(client)
    ids: list[int] = []
    for batch in range(20):
        ids += await hub.publish_events(
            [NewEvent("t", f"{batch}.{n}:" + "x" * 500) for n in range(10)]
        )
    await _dispatched(hub, ids[-1])
    # The client has not read a byte: the subscriber stopped at its limit and fell behind.
    assert client.unread <= limit
    assert feed.subscriber.state is State.BEHIND
    assert feed.idle() is None
    before = _ids(bytes(client.received))
    assert before == ids[: len(before)]

    client.read()
    pages = await _pages_until_live(feed, client)
    assert all(_data_before_last(page) < limit for page in pages)  # pages share the bound
    assert _ids(bytes(client.received)) == ids
    (after,) = await hub.publish_events([NewEvent("t", "live again")])
    await wait_until(lambda: client.received.endswith(b"data: live again\n\n"), WAIT_S)
    assert _ids(bytes(client.received)) == [*ids, after]
    counts = feed.take_counts()
    assert (counts.replayed, counts.catch_ups) == (len(ids) - len(before), 1)
    feed.close()


async def test_a_feed_whose_history_cannot_be_read_ends_with_database_gone(
    db: asyncpg.Connection, pg_admin_dsn: str, start_hub_core: StartHub
) -> None:
    """Fails when a failed read escapes as a database error, or the feed stays open."""
    await store.append(db, [NewEvent("t", str(n)) for n in range(5)])
    hub = await start_hub_core(retention_s=NO_MEMORY_RETENTION_S)
    feed = await _open(hub, "t", Resume(after=0))
    name = await db.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
    finally:
        await admin.close()
    async with asyncio.timeout(WAIT_S):
        with pytest.raises(FeedClosed) as closed:
            await feed.next_page()
    assert closed.value.reason == DATABASE_GONE
    assert feed.subscriber.state is State.CLOSED
    assert feed.subscriber.close_reason == DATABASE_GONE
    with pytest.raises(FeedClosed):
        await feed.next_page()
    feed.close()
