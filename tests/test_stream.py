"""GET /events end to end: a real hub on a real port, read with a raw socket client."""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sse_hub.keys import HUB
from tests.conftest import HubFactory, app_of
from tests.sse_client import open_stream


async def publish(server: TestServer, topic: str, data: object, event: str | None = None) -> int:
    body: dict[str, object] = {"topic": topic, "data": data}
    if event is not None:
        body["event"] = event
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.make_url("/events"), json=body) as response,
    ):
        assert response.status == 201, await response.text()
        return int((await response.json())["id"])


async def test_headers_and_first_bytes(hub: TestServer) -> None:
    stream = await open_stream(hub.port, "/events?topic=demo")
    try:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["x-accel-buffering"] == "no"
        assert stream.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in stream.headers
        assert await stream.started() == 3000
        # A line of its own, no blank line: no client turns it into an empty event.
        assert bytes(stream.body) == b"retry: 3000\n"
    finally:
        stream.close()


async def test_live_events_exact_bytes(hub: TestServer) -> None:
    stream = await open_stream(hub.port, "/events?topic=demo")
    try:
        await stream.started()
        first = await publish(hub, "demo", "hello")
        second = await publish(hub, "demo", {"k": [1, 2]}, event="update")
        third = await publish(hub, "demo", "two\r\nlines\rand\nmore")
        await stream.events(3)
        assert bytes(stream.body) == (
            b"retry: 3000\n"
            + f"id: {first}\ndata: hello\n\n".encode()
            + f'id: {second}\nevent: update\ndata: {{"k":[1,2]}}\n\n'.encode()
            + f"id: {third}\ndata: two\ndata: lines\ndata: and\ndata: more\n\n".encode()
        )
    finally:
        stream.close()


async def test_topics_and_patterns(hub: TestServer) -> None:
    exact = await open_stream(hub.port, "/events?topic=orders")
    wild = await open_stream(hub.port, "/events?topic=orders/*")
    everything = await open_stream(hub.port, "/events?topic=*")
    multi = await open_stream(hub.port, "/events?topic=users&topic=orders/eu/*")
    try:
        for s in (exact, wild, everything, multi):
            await s.started()
        for topic in ["orders", "orders/1", "orders/eu/2", "users", "other"]:
            await publish(hub, topic, topic)
        await publish(hub, "end", "end")
        assert [e.data for e in await exact.events(1)] == ["orders"]
        assert [e.data for e in await wild.events(2)] == ["orders/1", "orders/eu/2"]
        assert [e.data for e in await everything.events(6)] == [
            "orders",
            "orders/1",
            "orders/eu/2",
            "users",
            "other",
            "end",
        ]
        assert [e.data for e in await multi.events(2)] == ["orders/eu/2", "users"]
        # nothing else arrived for the exact one, the next frame is later proof
        await publish(hub, "orders", "again")
        assert (await exact.next_event()).data == "again"
    finally:
        for s in (exact, wild, everything, multi):
            s.close()


async def test_heartbeat_comment_after_silence(start_hub: HubFactory) -> None:
    server = await start_hub(heartbeat_s=0.2)
    stream = await open_stream(server.port, "/events?topic=quiet")
    try:
        await stream.started()
        await stream.read_chunk()  # the heartbeat, after 0.2 s of silence
        assert bytes(stream.body) == b"retry: 3000\n: heartbeat\n"
    finally:
        stream.close()


async def test_retry_setting(start_hub: HubFactory) -> None:
    server = await start_hub(retry_ms=1234)
    stream = await open_stream(server.port, "/events?topic=x")
    try:
        assert await stream.started() == 1234
    finally:
        stream.close()


async def test_resume_with_header_query_and_spellings(hub: TestServer) -> None:
    ids = [await publish(hub, "r", f"e{i}") for i in range(5)]
    cases = {
        f"/events?topic=r&lastEventID={ids[1]}": {},
        f"/events?topic=r&last_event_id={ids[1]}": {},
        f"/events?topic=r&lastEventId={ids[1]}": {},
        "/events?topic=r&lastEventID=0": {"Last-Event-ID": str(ids[1])},  # header wins
    }
    for path, headers in cases.items():
        stream = await open_stream(hub.port, path, headers=headers)
        try:
            got = await stream.events(3)
            assert [int(e.id or 0) for e in got] == ids[2:], path
        finally:
            stream.close()


async def test_earliest_replays_everything_retained(hub: TestServer) -> None:
    ids = [await publish(hub, "r", f"e{i}") for i in range(3)]
    stream = await open_stream(hub.port, "/events?topic=r&lastEventID=earliest")
    try:
        assert [int(e.id or 0) for e in await stream.events(3)] == ids
    finally:
        stream.close()


async def test_resume_then_live_without_gap_or_duplicate(hub: TestServer) -> None:
    ids = [await publish(hub, "seam", str(i)) for i in range(3)]
    stream = await open_stream(
        hub.port, "/events?topic=seam", headers={"Last-Event-ID": str(ids[0])}
    )
    try:
        replayed = await stream.events(2)
        later = [await publish(hub, "seam", str(i)) for i in range(3, 6)]
        live = await stream.events(3)
        assert [int(e.id or 0) for e in replayed + live] == ids[1:] + later
    finally:
        stream.close()


async def test_resume_while_publishing_continues(hub: TestServer) -> None:
    """Resume at every boundary while a producer keeps publishing: no gap, no duplicate."""
    total = 60
    published: list[int] = []
    ten_published = asyncio.Event()

    async def producer() -> None:
        for i in range(total):
            published.append(await publish(hub, "busy", str(i)))
            if len(published) == 10:
                ten_published.set()

    task = asyncio.create_task(producer())
    try:
        await asyncio.wait_for(ten_published.wait(), 30)
        for resume_at in [0, *published[:8]]:
            stream = await open_stream(
                hub.port, "/events?topic=busy", headers={"Last-Event-ID": str(resume_at)}
            )
            try:
                want = 15
                got = [int(e.id or 0) for e in await stream.events(want)]
                assert got == list(range(resume_at + 1, resume_at + 1 + want)), resume_at
            finally:
                stream.close()
    finally:
        await task


async def test_malformed_last_event_id_is_400(hub: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        for url, headers in [
            ("/events?topic=a&lastEventID=abc", {}),
            ("/events?topic=a", {"Last-Event-ID": "-5"}),
            ("/events?topic=a", {"Last-Event-ID": "1.0"}),
        ]:
            async with session.get(hub.make_url(url), headers=headers) as response:
                assert response.status == 400
                assert response.content_type == "application/problem+json"
                body = json.loads(await response.text())
                assert body["status"] == 400
                assert "Last-Event-ID" in body["detail"]


async def test_missing_or_bad_topic(hub: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(hub.make_url("/events")) as response:
            assert response.status == 400
            assert response.content_type == "application/problem+json"
        async with session.get(hub.make_url("/events?topic=a%0Ab")) as response:
            assert response.status == 422
        async with session.get(hub.make_url("/events?topic=" + "x" * 257)) as response:
            assert response.status == 422


async def test_reset_after_pruning(start_hub: HubFactory, db: asyncpg.Connection) -> None:
    # Deleting rows seconds old stands in for retention. Real retention never
    # removes events that young, so the hub would serve them from memory: a
    # retention this short keeps every resume on the database.
    hub = await start_hub(retention_s=60.0)
    ids = [await publish(hub, "p", str(i)) for i in range(6)]
    await db.execute("DELETE FROM sse_hub.events WHERE id <= $1", ids[2])
    stream = await open_stream(hub.port, "/events?topic=p", headers={"Last-Event-ID": str(ids[0])})
    try:
        reset = await stream.next_event()
        assert reset.event == "sse-hub.reset"
        assert reset.id is None
        assert json.loads(reset.data or "") == {"reason": "history-truncated", "oldest_id": ids[3]}
        assert [int(e.id or 0) for e in await stream.events(3)] == ids[3:]
    finally:
        stream.close()
    # resuming inside retention: no reset
    stream = await open_stream(hub.port, "/events?topic=p", headers={"Last-Event-ID": str(ids[3])})
    try:
        first = await stream.next_event()
        assert first.event is None
        assert int(first.id or 0) == ids[4]
    finally:
        stream.close()
    # earliest never gets a reset
    stream = await open_stream(hub.port, "/events?topic=p&lastEventID=earliest")
    try:
        assert int((await stream.next_event()).id or 0) == ids[3]
    finally:
        stream.close()


async def test_unknown_future_id_gets_reset_and_everything(hub: TestServer) -> None:
    ids = [await publish(hub, "f", str(i)) for i in range(2)]
    stream = await open_stream(hub.port, "/events?topic=f", headers={"Last-Event-ID": "999999"})
    try:
        reset = await stream.next_event()
        assert reset.event == "sse-hub.reset"
        assert json.loads(reset.data or "") == {"reason": "unknown-id", "oldest_id": ids[0]}
        assert [int(e.id or 0) for e in await stream.events(2)] == ids
    finally:
        stream.close()


async def test_sql_publish_reaches_stream_on_commit_only(hub: TestServer, dsn: str) -> None:
    stream = await open_stream(hub.port, "/events?topic=sql")
    producer = await asyncpg.connect(dsn)
    try:
        await stream.started()
        await producer.execute("BEGIN; SELECT sse_hub.publish('sql', 'rolled back'); ROLLBACK")
        async with producer.transaction():
            await producer.execute("SELECT sse_hub.publish('sql', 'committed', 'kind')")
        event = await stream.next_event()
        assert (event.data, event.event) == ("committed", "kind")
        marker = await publish(hub, "sql", "marker")
        after = await stream.next_event()
        assert (after.data, int(after.id or 0)) == ("marker", marker)
    finally:
        stream.close()
        await producer.close()


async def test_a_burst_never_opens_more_than_max_streams(start_hub: HubFactory) -> None:
    server = await start_hub(max_streams=20)
    results = await asyncio.gather(
        *(open_stream(server.port, "/events?topic=burst") for _ in range(100))
    )
    try:
        statuses = [stream.status for stream in results]
        assert statuses.count(200) == 20, statuses
        assert statuses.count(503) == 80
        assert all(s.headers.get("retry-after") for s in results if s.status == 503)
        counters = app_of(server)[HUB].counters
        assert (counters.streams_open, counters.streams_refused) == (20, 80)
    finally:
        for stream in results:
            stream.close()


async def test_history_needed_while_the_database_is_away_ends_the_stream_cleanly(
    start_hub: HubFactory, dsn: str, pg_admin_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A retention this short keeps the hub from serving the history from memory.
    hub = await start_hub(retention_s=60.0)
    await publish(hub, "t", "missed")
    name = urlsplit(dsn).path.lstrip("/")
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        stream = await open_stream(hub.port, "/events?topic=t", headers={"Last-Event-ID": "0"})
        try:
            assert stream.status == 200
            await stream.read_until_end(timeout_s=60)
            assert stream.ended_cleanly  # the final chunk: the client resumes from its id
        finally:
            stream.close()
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    ended = [r for r in caplog.records if "history could not be read" in r.getMessage()]
    assert len(ended) == 1
    assert ended[0].levelname == "WARNING"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
