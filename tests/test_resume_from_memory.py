"""Resumes of recent history served from the hub's memory, on real hubs and real streams.

Each test checks the delivery guarantees (every matching id once, in order,
no gap or duplicate at the seam) and, through the hub's counters, which path
the history took: memory (no query) or the database.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer

from sse_hub import store
from sse_hub.config import Settings
from sse_hub.events import NewEvent, TopicPattern
from sse_hub.hub import Counters, Hub
from sse_hub.keys import HUB
from sse_hub.recent import RECENT_MAX_EVENTS
from sse_hub.replay import Resume
from sse_hub.subscriber import State
from tests.conftest import HubFactory, app_of
from tests.sse_client import SSEStream, open_stream
from tests.test_feed import Client
from tests.test_feed import _ids as _page_ids
from tests.test_metrics import samples, scrape, value
from tests.waiting import wait_until

WAIT_S = 30.0


def _counters(server: TestServer) -> Counters:
    return app_of(server)[HUB].counters


async def _publish(session: aiohttp.ClientSession, server: TestServer, topic: str) -> int:
    async with session.post(server.make_url("/events"), json={"topic": topic, "data": topic}) as r:
        assert r.status == 201, await r.text()
        return int((await r.json())["id"])


async def _publish_once(server: TestServer, topic: str) -> int:
    async with aiohttp.ClientSession() as session:
        return await _publish(session, server, topic)


async def _resume(server: TestServer, topic: str, after: int) -> SSEStream:
    stream = await open_stream(
        server.port, f"/events?topic={topic}", headers={"Last-Event-ID": str(after)}
    )
    assert stream.status == 200
    return stream


async def _ids(stream: SSEStream, count: int) -> list[int]:
    return [int(frame.id or 0) for frame in await stream.events(count)]


async def _resume_then_live(
    server: TestServer, topic: str, after: int, expected: list[int]
) -> None:
    """Resume after ``after``: exactly ``expected``, then one live event, once."""
    stream = await _resume(server, topic, after)
    try:
        assert await _ids(stream, len(expected)) == expected
        live = await _publish_once(server, topic)
        assert await _ids(stream, 1) == [live]
    finally:
        stream.close()


async def test_a_recent_resume_is_served_from_memory_exactly_once(hub: TestServer) -> None:
    """Fails when recent history is read from the database, or comes out wrong."""
    async with aiohttp.ClientSession() as session:
        ids = [await _publish(session, hub, "a" if n % 3 else "b") for n in range(12)]
        matching = [i for n, i in enumerate(ids) if n % 3 and i > ids[4]]
        stream = await _resume(hub, "a", ids[4])
        try:
            assert await _ids(stream, len(matching)) == matching
            counters = _counters(hub)
            assert counters.replayed_from_memory == len(matching)
            assert counters.replay_pages_from_memory == 1
            assert counters.replay_page_queries == 0
            live = await _publish(session, hub, "a")  # live after the page: once, no repeat
            assert await _ids(stream, 1) == [live]
        finally:
            stream.close()
    found = samples((await scrape(hub))[1])
    assert value(found, "sse_hub_events_replayed_from_memory_total") == len(matching)
    assert value(found, "sse_hub_replay_pages_from_memory_total") == 1
    assert value(found, "sse_hub_replay_page_queries_total") == 0


async def test_a_started_hub_remembers_the_newest_events(
    db: asyncpg.Connection, start_hub: HubFactory
) -> None:
    """The clients of a restarted hub come back at once: their resumes need no query."""
    older = await store.append(db, [NewEvent("a" if n % 2 else "b", "old") for n in range(6)])
    hub = await start_hub()
    assert app_of(hub)[HUB].broker.recent.first_id == older[0]
    expected = [i for n, i in enumerate(older) if n % 2 and i > older[1]]
    await _resume_then_live(hub, "a", older[1], expected)
    counters = _counters(hub)
    assert counters.replay_page_queries == 0
    assert counters.replayed_from_memory == len(expected)


async def test_a_resume_older_than_memory_reads_the_database(
    db: asyncpg.Connection, start_hub: HubFactory
) -> None:
    """Events older than what the hub remembers come from the database.

    Fails when memory answers for a range it does not hold whole (the resume
    would miss the older events).
    """
    stored = RECENT_MAX_EVENTS + 10
    older = await store.append(db, [NewEvent("a" if n % 2 else "b", "old") for n in range(stored)])
    hub = await start_hub()
    async with aiohttp.ClientSession() as session:
        newer = [await _publish(session, hub, "a") for _ in range(3)]
    assert app_of(hub)[HUB].broker.recent.first_id == older[-1] + 3 - RECENT_MAX_EVENTS + 1
    after = older[1]
    expected = [i for n, i in enumerate(older) if n % 2 and i > after] + newer
    await _resume_then_live(hub, "a", after, expected)
    counters = _counters(hub)
    assert counters.replay_page_queries >= 1
    # The database's pages reach the remembered events; the rest may come from memory.
    assert counters.replayed_from_memory < len(expected)
    assert counters.frames_replayed == len(expected)


async def test_streams_resuming_from_memory_while_events_pour_in_get_each_id_once(
    start_hub: HubFactory,
) -> None:
    """The seam between a page from memory and live delivery: no gap, no duplicate.

    Fails when a page from memory does not move the stream's position to what
    it covered (repeats), or goes live before covering ``last_id`` (gaps).
    """
    hub = await start_hub()
    topics = ("s/1", "s/2", "x")
    total = 300
    resumed = asyncio.Event()
    published: list[int] = []

    async def produce() -> None:
        async with aiohttp.ClientSession() as session:
            for n in range(total):
                published.append(await _publish(session, hub, topics[n % 3]))
                if n == total // 3:
                    await resumed.wait()  # the streams open while events keep coming

    producer = asyncio.create_task(produce())
    try:
        await wait_until(lambda: len(published) > total // 3, WAIT_S)
        resume_at = [published[k] for k in (0, 10, 50, 90, len(published) - 1)]
        streams = [await _resume(hub, "s/*", after) for after in resume_at]
        resumed.set()
        await asyncio.wait_for(producer, WAIT_S)
        try:
            for after, stream in zip(resume_at, streams, strict=True):
                wanted = [i for n, i in enumerate(published) if n % 3 != 2 and i > after]
                got = await _ids(stream, len(wanted))
                assert got == wanted
        finally:
            for stream in streams:
                stream.close()
    finally:
        producer.cancel()
    counters = _counters(hub)
    assert counters.replay_pages_from_memory >= len(resume_at)
    assert counters.replayed_from_memory > 0


async def test_a_resume_after_pruned_history_gets_the_reset_not_memory(
    start_hub: HubFactory, db: asyncpg.Connection
) -> None:
    """With a short retention the ring is never used, though it holds the range.

    Fails when the ring ignores the age rule: the resume would get the pruned
    events from memory and no reset notice.
    """
    hub = await start_hub(retention_s=30.0)  # prunes every 3 s; events live 30 s
    async with aiohttp.ClientSession() as session:
        ids = [await _publish(session, hub, "old") for _ in range(3)]
        await db.execute("UPDATE sse_hub.events SET created_at = created_at - interval '1 hour'")
        kept = await _publish(session, hub, "old")
    ring = app_of(hub)[HUB].broker.recent
    assert ring.first_id == ids[0]  # memory holds the whole range...
    assert ring.last_id == kept
    async with asyncio.timeout(WAIT_S):
        while await db.fetchval("SELECT count(*) FROM sse_hub.events") != 1:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    stream = await _resume(hub, "old", ids[0])
    try:
        reset = await stream.next_event()
        assert reset.event == "sse-hub.reset"
        assert json.loads(reset.data or "") == {"reason": "history-truncated", "oldest_id": kept}
        assert await _ids(stream, 1) == [kept]
    finally:
        stream.close()
    assert _counters(hub).replay_pages_from_memory == 0


async def test_a_page_from_memory_overtaken_by_new_events_continues_after_it(dsn: str) -> None:
    """Events dispatched while a page is being written come next, once.

    Fails when a page from memory does not move the stream's position past
    what it covered: the next page would repeat it.
    """
    hub = await Hub.start(Settings(dsn=dsn, heartbeat_s=3600.0), dsn, retention=False)
    try:
        ids = await hub.publish_events([NewEvent("t", str(n)) for n in range(10)])
        await wait_until(lambda: hub.broker.last_id >= ids[-1], WAIT_S)
        feed = hub.feed((TopicPattern("t"),), Resume(after=ids[2]))
        await feed.open()
        client = Client()
        feed.ready(client)
        first = await feed.next_page()
        assert _page_ids(first) == ids[3:]
        # While that page is on its way, more events are dispatched.
        more = await hub.publish_events([NewEvent("t", "more") for _ in range(3)])
        await wait_until(lambda: hub.broker.last_id >= more[-1], WAIT_S)
        second = await feed.next_page()
        assert _page_ids(second) == more
        assert await feed.next_page() == b""
        assert feed.subscriber.state is State.LIVE
        (live,) = await hub.publish_events([NewEvent("t", "live")])
        await wait_until(lambda: bool(client.received), WAIT_S)
        assert _page_ids(bytes(client.received)) == [live]
        counts = feed.take_counts()
        assert (counts.pages_from_memory, counts.page_queries) == (2, 0)
        assert counts.replayed_from_memory == len(ids[3:]) + len(more)
        feed.close()
    finally:
        await hub.close()
