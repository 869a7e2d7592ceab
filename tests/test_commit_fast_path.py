"""A hub's own publishes go to its subscribers at commit, without reading them back,
only when nothing can lie between them and what it has already handed on."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer

from sse_hub.keys import HUB
from tests.conftest import HubFactory, app_of
from tests.sse_client import open_stream
from tests.waiting import wait_until


async def _post(server: TestServer, body: object) -> list[int]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.make_url("/events"), json=body) as response,
    ):
        assert response.status == 201, await response.text()
        answer = await response.json()
    return [int(answer["id"])] if "id" in answer else [int(i) for i in answer["ids"]]


async def test_own_publish_is_sent_at_commit_without_a_read(hub: TestServer) -> None:
    relay = app_of(hub)[HUB].relay
    stream = await open_stream(hub.port, "/events?topic=f")
    try:
        await stream.started()
        await _post(hub, {"topic": "f", "data": "warm"})
        assert [e.data for e in await stream.events(1)] == ["warm"]
        reads, skipped = relay.reads, relay.notifications_skipped
        ids = await _post(hub, [{"topic": "f", "data": str(i)} for i in range(3)])
        # Its NOTIFY comes back naming ids already handed on: no query for it either.
        await wait_until(lambda: relay.notifications_skipped > skipped)
        events = await stream.events(3)
        assert [e.data for e in events] == ["0", "1", "2"]
        assert [int(e.id or 0) for e in events] == ids
        assert relay.events_sent_at_commit == 4
        assert relay.reads == reads
    finally:
        stream.close()


async def test_outbox_rows_sequenced_in_the_same_transaction_are_read_from_the_table(
    hub: TestServer, dsn: str
) -> None:
    """The transaction's first id does not follow the relay's position: the relay reads."""
    state = app_of(hub)[HUB]
    relay, committer = state.relay, state.committer
    stream = await open_stream(hub.port, "/events?topic=g")
    holder = await asyncpg.connect(dsn)
    observer = await asyncpg.connect(dsn)
    try:
        await stream.started()
        # Hold the sequencer: the drain that the outbox row rings for skips (drains
        # never queue), so the row is still there when the hub's own transaction runs.
        held = holder.transaction()
        await held.start()
        await holder.execute("SELECT last_id FROM sse_hub.sequencer FOR UPDATE")
        skipped = committer.drains_skipped
        await observer.execute("SELECT sse_hub.publish('g', 'from sql')")
        await wait_until(lambda: committer.drains_skipped > skipped)
        reads, sent_at_commit = relay.reads, relay.events_sent_at_commit
        posted = asyncio.create_task(_post(hub, {"topic": "g", "data": "from http"}))
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        while not await observer.fetchval(waiting):  # noqa: ASYNC110 - PostgreSQL's state
            await asyncio.sleep(0.02)
        await held.rollback()
        (http_id,) = await asyncio.wait_for(posted, 30)
        events = await stream.events(2)
        assert [e.data for e in events] == ["from sql", "from http"]
        assert [int(e.id or 0) for e in events] == [http_id - 1, http_id]
        assert relay.events_sent_at_commit == sent_at_commit
        assert relay.reads > reads
    finally:
        stream.close()
        await holder.close()
        await observer.close()


async def test_each_hub_sends_its_own_at_commit_and_reads_the_others(
    start_hub: HubFactory,
) -> None:
    """Publishes alternate between two hubs: every subscriber gets each once, in order."""
    hubs = [await start_hub(), await start_hub()]
    streams = [await open_stream(server.port, "/events?topic=m") for server in hubs]
    try:
        for stream in streams:
            await stream.started()
        sent: list[int] = []
        for i in range(40):
            sent += await _post(hubs[i % 2], [{"topic": "m", "data": str(i)}])
        for stream in streams:
            events = await stream.events(len(sent))
            assert [int(e.id or 0) for e in events] == sent
            assert [e.data for e in events] == [str(i) for i in range(40)]
        for server in hubs:
            relay = app_of(server)[HUB].relay
            assert relay.events_sent_at_commit > 0  # its own, when it had read the other's
            assert relay.events_relayed - relay.events_sent_at_commit >= 20  # the other's
    finally:
        for stream in streams:
            stream.close()
