"""Where a stream without a resume id starts: the broker's position while the relay is
caught up, else the database's head, read with a query."""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
from aiohttp.test_utils import TestServer

from sse_hub import store
from sse_hub.events import NewEvent
from sse_hub.keys import HUB
from tests.conftest import app_of
from tests.raw_http import wait_until
from tests.sse_client import open_stream
from tests.test_stream import publish


async def test_a_stream_opened_while_the_relay_is_caught_up_costs_no_query(
    hub: TestServer,
) -> None:
    state = app_of(hub)[HUB]
    first = await publish(hub, "t", "before")
    await wait_until(lambda: state.relay.known_head() == first, "the relay to be caught up")
    stream = await open_stream(hub.port, "/events?topic=t")
    try:
        await stream.started()
        after = await publish(hub, "t", "after")
        event = await stream.next_event()
        assert (event.data, int(event.id or 0)) == ("after", after)
        assert state.heads.queries == 0
    finally:
        stream.close()


async def test_a_stream_opened_while_the_relay_cannot_read_starts_at_the_database_head(
    hub: TestServer, dsn: str, pg_admin_dsn: str
) -> None:
    """Another hub's commit the relay has not read is not sent to a stream asked for after it."""
    state = app_of(hub)[HUB]
    await publish(hub, "t", "warm")  # the hub's pool holds a connection from here on
    name = urlsplit(dsn).path.lstrip("/")
    admin = await asyncpg.connect(pg_admin_dsn)
    elsewhere = await asyncpg.connect(dsn)  # another hub, publishing
    stream = None
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        relay_pid = state.relay.backend_pid
        await admin.execute("SELECT pg_terminate_backend($1)", relay_pid)
        await wait_until(lambda: state.relay.known_head() is None, "the relay to notice")
        (unread,) = await store.append(elsewhere, [NewEvent("t", "before the request", None)])
        assert unread > state.broker.last_id
        stream = await open_stream(hub.port, "/events?topic=t")
        await stream.started()
        assert state.heads.queries == 1
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await wait_until(lambda: state.relay.known_head() == unread, "the relay to catch up")
        (after,) = await store.append(elsewhere, [NewEvent("t", "after the request", None)])
        event = await stream.next_event(timeout_s=60)
        assert (event.data, int(event.id or 0)) == ("after the request", after)
    finally:
        if stream is not None:
            stream.close()
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        await elsewhere.close()


async def test_a_relay_with_a_notification_to_read_does_not_know_the_head(
    hub: TestServer,
) -> None:
    relay = app_of(hub)[HUB].relay
    await wait_until(lambda: relay.known_head() is not None, "the relay to be caught up")
    assert relay.ring()  # a notification naming no id: the relay must read to know
    assert relay.known_head() is None
    await wait_until(lambda: relay.known_head() is not None, "the relay to have read")


async def test_a_stream_asked_for_after_a_post_was_answered_never_gets_its_event(
    hub: TestServer,
) -> None:
    for attempt in range(20):
        await publish(hub, "t", f"answered {attempt}")
        stream = await open_stream(hub.port, "/events?topic=t")
        try:
            await stream.started()
            after = await publish(hub, "t", f"after {attempt}")
            event = await stream.next_event()
            assert (event.data, int(event.id or 0)) == (f"after {attempt}", after)
        finally:
            stream.close()
