"""The relay survives losing its LISTEN connection, and catches up without loss."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sse_hub.broker import InMemoryBroker
from sse_hub.committer import GroupCommitter
from sse_hub.keys import HUB
from sse_hub.listener import Relay
from tests.conftest import app_of
from tests.sse_client import open_stream
from tests.waiting import wait_until


async def test_killed_listener_reconnects_and_loses_nothing(hub: TestServer, dsn: str) -> None:
    relay = app_of(hub)[HUB].relay
    stream = await open_stream(hub.port, "/events?topic=k")
    admin = await asyncpg.connect(dsn)
    producer = await asyncpg.connect(dsn)
    total = 120
    try:
        await stream.started()
        for i in range(total):
            await producer.execute("SELECT sse_hub.publish('k', $1)", str(i))
            if i % 40 == 20:
                pid = relay.backend_pid
                assert pid is not None
                killed = await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                assert killed
                before = relay.reconnects
                await wait_until(lambda: relay.reconnects > before)  # noqa: B023
        events = await stream.events(total, timeout_s=60)
        assert [e.data for e in events] == [str(i) for i in range(total)]
        ids = [int(e.id or 0) for e in events]
        assert ids == list(range(ids[0], ids[0] + total))
        assert relay.reconnects >= 3
        assert relay.connected
    finally:
        stream.close()
        await admin.close()
        await producer.close()


async def test_events_published_while_listener_is_down_arrive(hub: TestServer, dsn: str) -> None:
    """Notifications sent while the relay is disconnected are lost; the table is not."""
    relay = app_of(hub)[HUB].relay
    stream = await open_stream(hub.port, "/events?topic=gap")
    admin = await asyncpg.connect(dsn)
    try:
        await stream.started()
        # Block the relay's reconnects by terminating it repeatedly while publishing.
        for i in range(10):
            pid = relay.backend_pid
            if pid is not None:
                await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            await admin.execute("SELECT sse_hub.publish('gap', $1)", str(i))
        events = await stream.events(10, timeout_s=60)
        assert [e.data for e in events] == [str(i) for i in range(10)]
    finally:
        stream.close()
        await admin.close()


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
async def test_close_is_not_lost_when_the_bell_rings_at_the_same_time(dsn: str, steps: int) -> None:
    """Stopping the relay just as it is woken must still stop it.

    Python 3.11's ``asyncio.wait_for`` returns the inner result and drops the
    cancellation when both land in the same loop turn; the relay then ran on
    and ``close`` waited for ever (seen as rare hangs when a hub stopped).
    """
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    committer = GroupCommitter(pool)
    committer.start()
    relay = Relay(dsn, InMemoryBroker(), committer)
    await relay.start()
    try:
        await asyncio.sleep(0.05)  # parked, waiting for the bell
        relay.ring()
        for _ in range(steps):
            await asyncio.sleep(0)
        async with asyncio.timeout(10):
            await relay.close()
    finally:
        await committer.close()
        await pool.close()


async def test_notification_for_ids_already_read_costs_no_query(hub: TestServer, dsn: str) -> None:
    relay = app_of(hub)[HUB].relay
    broker = app_of(hub)[HUB].broker
    producer = await asyncpg.connect(dsn)
    try:
        await producer.execute("SELECT sse_hub.publish('n', 'x')")
        await wait_until(lambda: broker.last_id > 0)
        skipped, reads = relay.notifications_skipped, relay.reads
        await producer.execute("SELECT pg_notify('sse_hub_events', $1)", str(broker.last_id))
        await wait_until(lambda: relay.notifications_skipped > skipped)
        # A notification past what was read (or one without an id) still reads.
        skipped = relay.notifications_skipped
        await producer.execute("SELECT pg_notify('sse_hub_events', $1)", str(broker.last_id + 1))
        await wait_until(lambda: relay.reads > reads)
        reads = relay.reads
        await producer.execute("SELECT pg_notify('sse_hub_events', 'soon')")
        await wait_until(lambda: relay.reads > reads)
        assert relay.notifications_skipped == skipped
    finally:
        await producer.close()
