"""The Python client against real hubs, and against servers scripted byte for byte.

Whatever happens to the connection (a drop, a hub restarting on the same port,
refused connections, a peer gone silent), a subscription delivers every event
once and in order; what would be refused again raises instead of looping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sse_hub import Client, Event, ProblemError, Reset, StreamError, Subscription, store
from sse_hub.app import create_app
from sse_hub.auth import mint_token
from sse_hub.config import Settings
from sse_hub.embedded_pg import free_port
from sse_hub.events import NewEvent
from sse_hub.keys import HUB
from tests.conftest import HubFactory, app_of
from tests.network import Proxy, ScriptedServer, refusal, stream
from tests.processes import HubProcess
from tests.waiting import wait_until

TIMEOUT_S = 60.0
KEY = "client-test-key-" + "k" * 32


def url_of(server: TestServer) -> str:
    return str(server.make_url("/")).rstrip("/")


async def take(subscription: Subscription, count: int) -> list[Event]:
    """The next ``count`` events; the subscription stays open for more."""
    events: list[Event] = []
    async with asyncio.timeout(TIMEOUT_S):
        async for event in subscription:
            events.append(event)
            if len(events) == count:
                break
    return events


def pairs(events: list[Event]) -> list[tuple[int, str]]:
    return [(event.id, event.data) for event in events]


async def publish_sql(db: asyncpg.Connection, topic: str, data: str) -> None:
    """Publish from SQL: no hub needs to run (a hub gives it its id later)."""
    await db.execute("SELECT sse_hub.publish($1, $2)", topic, data)


async def stored(db: asyncpg.Connection) -> list[tuple[int, str]]:
    """Every stored event, as (id, data), in id order."""
    return [tuple(row) for row in await db.fetch("SELECT id, data FROM sse_hub.events ORDER BY id")]


async def test_live_events_arrive_typed_once_and_in_order(start_hub: HubFactory) -> None:
    server = await start_hub()
    counters = app_of(server)[HUB].counters
    async with Client(url_of(server)) as hub:
        subscription = hub.subscribe("orders/*", "alerts")
        reading = asyncio.ensure_future(take(subscription, 4))
        await wait_until(lambda: counters.streams_total == 1, timeout_s=TIMEOUT_S)
        ids = [
            await hub.publish("orders/1", "plain"),
            await hub.publish("orders/eu/2", "two\r\nlines\rand\nmore"),
            await hub.publish("elsewhere", "not subscribed"),
            await hub.publish("alerts", {"status": "paid"}, event="order.paid"),
            await hub.publish("alerts", "héllo 🎉 ☃"),
        ]
        events = await reading
    assert events == [
        Event(ids[0], None, "plain"),
        Event(ids[1], None, "two\nlines\nand\nmore"),
        Event(ids[3], "order.paid", '{"status":"paid"}'),
        Event(ids[4], None, "héllo 🎉 ☃"),
    ]
    assert events[2].json() == {"status": "paid"}
    assert subscription.last_event_id == ids[4]


@pytest.mark.parametrize("how", ["cut", "cut and refused"])
async def test_a_dropped_connection_resumes_where_it_was(start_hub: HubFactory, how: str) -> None:
    server = await start_hub(retry_ms=100)
    proxy = Proxy(server.port)
    await proxy.start()
    try:
        async with (
            Client(proxy.url, max_retry_delay_s=1.0) as hub,
            Client(url_of(server)) as producer,
        ):
            before = await producer.publish("t", "before")
            subscription = hub.subscribe("t", last_event_id=before - 1)
            got = await take(subscription, 1)
            if how == "cut":
                proxy.cut()  # the client reconnects at once; the events may come either way
                missed = [await producer.publish("t", f"missed {n}") for n in (1, 2)]
            else:
                await proxy.down()
                missed = [await producer.publish("t", f"missed {n}") for n in (1, 2)]
                await proxy.up()
            got += await take(subscription, 2)
            after = await producer.publish("t", "after")
            got += await take(subscription, 1)
        assert pairs(got) == [
            (before, "before"),
            (missed[0], "missed 1"),
            (missed[1], "missed 2"),
            (after, "after"),
        ]
        assert proxy.connections == 2
    finally:
        await proxy.close()


async def test_a_hub_restart_on_the_same_port_loses_and_repeats_nothing(
    dsn: str, db: asyncpg.Connection
) -> None:
    args = ["--dsn", dsn, "--retry-ms", "200"]
    first = HubProcess(args)
    second: HubProcess | None = None
    try:
        await first.wait_healthy()
        async with Client(first.url, max_retry_delay_s=1.0) as hub:
            before = await hub.publish("t", "before")
            subscription = hub.subscribe("t", last_event_id=before - 1)
            got = await take(subscription, 1)
            first.signal(signal.SIGTERM)
            assert await first.wait_exit() == 0
            for n in (1, 2):
                await publish_sql(db, "t", f"missed {n}")
            second = HubProcess(args, port=first.port)  # the client's URL
            await second.wait_healthy()
            got += await take(subscription, 2)
            await publish_sql(db, "t", "after")
            got += await take(subscription, 1)
        assert [data for _, data in pairs(got)] == ["before", "missed 1", "missed 2", "after"]
        assert pairs(got) == await stored(db)
    finally:
        first.stop()
        if second is not None:
            second.stop()


def _refused_attempts(caplog: pytest.LogCaptureFixture) -> int:
    return sum("Cannot connect" in r.getMessage() for r in caplog.records)


async def test_refused_connections_for_seconds_then_a_hub(
    dsn: str, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there yet
    caplog.set_level(logging.WARNING, logger="sse_hub.client")
    async with Client(f"http://127.0.0.1:{port}", retry_ms=100, max_retry_delay_s=0.5) as hub:
        # A database of the test's own: every event after 0 is one published below.
        reading = asyncio.ensure_future(take(hub.subscribe("t", last_event_id=0), 2))
        for n in (1, 2):
            await publish_sql(db, "t", f"missed {n}")
        await asyncio.sleep(3.0)  # the outage the client has to sit through
        await wait_until(lambda: _refused_attempts(caplog) >= 4, timeout_s=TIMEOUT_S)
        assert not reading.done()
        server = TestServer(
            create_app(Settings(dsn=dsn, retry_ms=100)), host="127.0.0.1", port=port
        )
        await server.start_server()
        try:
            events = await reading
        finally:
            await server.close()
    assert [data for _, data in pairs(events)] == ["missed 1", "missed 2"]
    assert pairs(events) == await stored(db)


async def test_a_silent_connection_is_replaced_after_idle_timeout() -> None:
    server = await ScriptedServer(
        stream(b"retry: 50\nid: 1\ndata: one\n\n", silent=True),  # then nothing, not even a FIN
        stream(b"id: 2\ndata: two\n\n", silent=True),
    ).start()
    try:
        async with Client(server.url, idle_timeout_s=0.5) as hub:
            events = await take(hub.subscribe("t"), 2)
        assert pairs(events) == [(1, "one"), (2, "two")]
        first, second = server.requests
        assert "last-event-id" not in first.headers
        assert second.headers["last-event-id"] == "1"
        assert second.at - first.at >= 0.5
    finally:
        await server.close()


async def test_reconnect_drops_the_stream_and_resumes_at_once() -> None:
    server = await ScriptedServer(
        stream(b"retry: 10000\nid: 1\ndata: one\n\n", silent=True),
        stream(b"id: 2\ndata: two\n\n", silent=True),
    ).start()
    try:
        async with Client(server.url) as hub:
            subscription = hub.subscribe("t")
            assert (subscription.connects, subscription.connected_at) == (0, None)
            before = time.time()
            reading = asyncio.ensure_future(take(subscription, 1))
            await asyncio.wait_for(subscription.wait_connected(), TIMEOUT_S)
            first_at = subscription.connected_at
            assert first_at is not None
            assert before <= first_at <= time.time()
            assert pairs(await reading) == [(1, "one")]
            assert subscription.reconnect()
            assert pairs(await take(subscription, 1)) == [(2, "two")]
            assert subscription.connects == 2
            assert (subscription.connected_at or 0) >= first_at
        first, second = server.requests
        assert second.headers["last-event-id"] == "1"
        assert second.at - first.at < 5.0  # not the hub's retry: of 10 s
    finally:
        await server.close()


async def test_connected_at_is_when_the_stream_was_asked_for() -> None:
    async def held_back(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.5)  # a proxy holding the answer with its first events
        await stream(b"id: 1\ndata: one\n\n", silent=True)(writer)

    server = await ScriptedServer(held_back).start()
    try:
        async with Client(server.url) as hub:
            subscription = hub.subscribe("t")
            before = time.time()
            assert pairs(await take(subscription, 1)) == [(1, "one")]
            answered = time.time()
            assert subscription.connected_at is not None
            assert before <= subscription.connected_at <= answered - 0.5
    finally:
        await server.close()


async def test_reconnect_cuts_a_wait_between_attempts_short(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sse_hub.client")
    server = await ScriptedServer(
        refusal(503, "Service Unavailable", "Retry-After: 30"),
        stream(b"id: 1\ndata: one\n\n", silent=True),
    ).start()
    try:
        async with Client(server.url, max_retry_delay_s=60.0) as hub:
            subscription = hub.subscribe("t")
            reading = asyncio.ensure_future(take(subscription, 1))
            waiting = "reconnecting in 3"  # Retry-After: 30 s, plus jitter
            await wait_until(
                lambda: any(waiting in r.getMessage() for r in caplog.records),
                timeout_s=TIMEOUT_S,
            )
            assert not subscription.reconnect()  # no stream was open
            assert pairs(await reading) == [(1, "one")]
        first, second = server.requests
        assert second.at - first.at < 15.0
    finally:
        await server.close()


async def test_heartbeats_keep_a_quiet_stream_open() -> None:
    beats: list[bytes | float] = [b": heartbeat\n", 0.1] * 15  # 1.5 s, three idle timeouts
    server = await ScriptedServer(
        stream(b"retry: 50\n", *beats, b"id: 1\ndata: late\n\n", silent=True)
    ).start()
    try:
        async with Client(server.url, idle_timeout_s=0.5) as hub:
            assert pairs(await take(hub.subscribe("t"), 1)) == [(1, "late")]
        assert len(server.requests) == 1
    finally:
        await server.close()


async def test_a_reset_arrives_typed_then_what_is_retained(
    start_hub: HubFactory, db: asyncpg.Connection
) -> None:
    await store.append(db, [NewEvent("old", str(n)) for n in range(3)])
    await db.execute("UPDATE sse_hub.events SET created_at = created_at - interval '1 hour'")
    (kept_id,) = await store.append(db, [NewEvent("old", "kept")])
    assert await store.prune(db, datetime.now(UTC) - timedelta(minutes=1), 100) == 3
    # Started after the pruning: a hub that had relayed the events before they
    # were aged by hand would still know them as young and replay them from memory.
    server = await start_hub()
    async with Client(url_of(server)) as hub:
        subscription = hub.subscribe("old", last_event_id=1)
        reset, kept = await take(subscription, 2)
    assert isinstance(reset, Reset)
    assert (reset.reason, reset.oldest_id, reset.id, reset.event) == (
        "history-truncated",
        kept_id,
        1,
        "sse-hub.reset",
    )
    assert json.loads(reset.data) == {"reason": "history-truncated", "oldest_id": kept_id}
    assert kept == Event(kept_id, None, "kept")
    assert subscription.last_event_id == kept_id


def _token(*, publish: tuple[str, ...] = (), subscribe: tuple[str, ...] = ()) -> str:
    return mint_token(key=KEY, publish=publish, subscribe=subscribe, ttl_s=3600)


def _counting_session() -> tuple[aiohttp.ClientSession, list[str]]:
    requests: list[str] = []

    async def on_request_start(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        requests.append(f"{params.method} {params.url.path}")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    return aiohttp.ClientSession(trace_configs=[trace]), requests


@pytest.mark.parametrize(
    ("path", "token", "topic", "status", "title"),
    [
        ("", None, "orders/1", 401, "Unauthorized"),
        ("", _token(subscribe=("news",)), "orders/1", 403, "Forbidden"),
        ("", _token(subscribe=("*",)), "", 422, "Unprocessable Content"),
        ("/nowhere", _token(subscribe=("*",)), "orders/1", 404, "Not Found"),
    ],
)
async def test_refusals_raise_their_problem_without_reconnecting(
    start_hub: HubFactory, path: str, token: str | None, topic: str, status: int, title: str
) -> None:
    server = await start_hub(jwt_key=KEY)
    session, requests = _counting_session()
    async with session:
        async with Client(url_of(server) + path, token=token, session=session) as hub:
            with pytest.raises(ProblemError) as refused:
                await take(hub.subscribe(topic), 1)
        assert not session.closed  # the caller's session is the caller's to close
    problem = refused.value
    assert (problem.status, problem.title) == (status, title)
    assert problem.detail
    assert str(problem).startswith(f"{status} {title}: ")
    assert requests == [f"GET {path}/events"]


async def test_a_400_problem_is_carried_whole() -> None:
    body = {
        "type": "https://sse-hub.dev/problems/malformed-request",
        "title": "Bad Request",
        "status": 400,
        "detail": "Last-Event-ID must be a non-negative integer",
    }
    server = await ScriptedServer(
        refusal(
            400,
            "Bad Request",
            "Content-Type: application/problem+json",
            body=json.dumps(body).encode(),
        )
    ).start()
    try:
        async with Client(server.url) as hub:
            with pytest.raises(ProblemError) as refused:
                await take(hub.subscribe("t"), 1)
        problem = refused.value
        assert (problem.status, problem.type, problem.title, problem.detail) == (
            400,
            body["type"],
            "Bad Request",
            body["detail"],
        )
        assert len(server.requests) == 1
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("status", "reason"), [(503, "Service Unavailable"), (429, "Too Many Requests")]
)
async def test_retry_after_is_honoured(status: int, reason: str) -> None:
    server = await ScriptedServer(
        refusal(status, reason, "Retry-After: 1"),
        stream(b"id: 7\ndata: at last\n\n", silent=True),
    ).start()
    try:
        async with Client(server.url, retry_ms=50) as hub:
            assert pairs(await take(hub.subscribe("t"), 1)) == [(7, "at last")]
        assert server.requests[1].at - server.requests[0].at >= 1.0
    finally:
        await server.close()


async def test_the_hubs_retry_is_the_first_wait_and_failures_in_a_row_double_it() -> None:
    unavailable = refusal(503, "Service Unavailable")
    server = await ScriptedServer(
        stream(b"retry: 300\nid: 1\ndata: one\n\n"),  # then a clean end
        unavailable,
        unavailable,
        stream(b"id: 2\ndata: two\n\n"),
        stream(b"id: 3\ndata: three\n\n", silent=True),
    ).start()
    try:
        # Without the hub's retry: the client would wait its own 10 s.
        async with Client(server.url, retry_ms=10_000) as hub:
            assert pairs(await take(hub.subscribe("t"), 3)) == [
                (1, "one"),
                (2, "two"),
                (3, "three"),
            ]
        requests, ended = server.requests, server.ended_at
        waits = [requests[n + 1].at - ended[n] for n in range(4)]
        slack = 0.05  # the server notes an end a little after the client saw it
        assert 0.3 - slack <= waits[0] < 5.0
        assert waits[1] >= 0.6 - slack
        assert waits[2] >= 1.2 - slack
        assert waits[3] < 1.0  # that stream delivered: back to the hub's retry
        assert [r.headers.get("last-event-id") for r in requests] == [None, "1", "1", "1", "2"]
    finally:
        await server.close()


async def test_frames_are_read_per_whatwg() -> None:
    server = await ScriptedServer(
        stream(
            b"\xef\xbb\xbfretry: 50\r\n: a comment\n"
            b"id: 1\r\nevent: typed\r\ndata:  two spaces\r\ndata:none\r\n\r\n"
            b"id: 2\rdata\rdata: after an empty line\r\r"
            b"id: 3\ndata: \xe2\x98\x83\nunknown: field\nevent:\n\n: last comment\n"
            b"id: 4\r\ndata: split\r",
            0.05,
            b"\ndata: crlf\r\n\r\nid: 5\rdata: ends with CR, then silence\r\r",
            silent=True,
        )
    ).start()
    try:
        async with Client(server.url) as hub:
            events = await take(hub.subscribe("t"), 5)
        assert events == [
            Event(1, "typed", " two spaces\nnone"),
            Event(2, None, "\nafter an empty line"),
            Event(3, None, "☃"),
            Event(4, None, "split\ncrlf"),
            Event(5, None, "ends with CR, then silence"),
        ]
    finally:
        await server.close()


async def test_an_event_over_max_event_bytes_raises_without_reconnecting() -> None:
    near = b"y" * (200 * 1024)
    endless = [b"x" * 65536] * 64  # a 4 MiB line, never ended
    server = await ScriptedServer(
        stream(b"id: 1\ndata: " + near + b"\n\nid: 2\ndata: ", *endless, silent=True)
    ).start()
    try:
        async with Client(server.url, max_event_bytes=256 * 1024) as hub:
            subscription = hub.subscribe("t")
            assert pairs(await take(subscription, 1)) == [(1, near.decode())]
            with pytest.raises(StreamError, match="max_event_bytes"):
                await take(subscription, 1)
        assert len(server.requests) == 1
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (refusal(200, "OK", "Content-Type: text/html", body=b"<html></html>"), "text/html"),
        (stream(b"data: no id\n\n", silent=True), "integer id"),
        (stream(b"event: sse-hub.reset\ndata: {}\n\n", silent=True), "malformed"),
    ],
)
async def test_what_is_not_a_hubs_stream_raises(answer: Any, message: str) -> None:
    server = await ScriptedServer(answer).start()
    try:
        async with Client(server.url) as hub:
            with pytest.raises(StreamError, match=message):
                await take(hub.subscribe("t"), 1)
        assert len(server.requests) == 1
    finally:
        await server.close()


async def test_a_token_function_is_asked_before_every_request() -> None:
    tokens = iter(["first", "second"])

    async def token() -> str:
        return next(tokens)

    server = await ScriptedServer(
        stream(b"retry: 50\nid: 1\ndata: one\n\n"),
        stream(b"id: 2\ndata: two\n\n", silent=True),
    ).start()
    try:
        async with Client(server.url, token=token) as hub:
            await take(hub.subscribe("t"), 2)
        assert [r.headers["authorization"] for r in server.requests] == [
            "Bearer first",
            "Bearer second",
        ]
    finally:
        await server.close()


async def test_closing_the_client_ends_its_subscriptions() -> None:
    server = await ScriptedServer(stream(b"retry: 50\n", silent=True)).start()
    try:
        hub = Client(server.url)
        reading = asyncio.ensure_future(take(hub.subscribe("t"), 1))
        await server.wait_requests(1)
        await hub.close()
        assert await asyncio.wait_for(reading, TIMEOUT_S) == []
    finally:
        await server.close()


async def test_publish_returns_the_id_and_raises_refusals(start_hub: HubFactory) -> None:
    server = await start_hub(jwt_key=KEY)
    async with Client(url_of(server), token=_token(publish=("orders/*",))) as hub:
        first = await hub.publish("orders/1", "x")
        assert await hub.publish("orders/2", ["y"], event="e") == first + 1
        with pytest.raises(ProblemError) as forbidden:
            await hub.publish("news", "x")
        assert forbidden.value.status == 403
        with pytest.raises(ProblemError) as invalid:
            await hub.publish("orders/1", "x", event="bad\nevent")
        assert (invalid.value.status, invalid.value.type) == (
            422,
            "https://sse-hub.dev/problems/invalid-input",
        )
    async with Client(url_of(server)) as anonymous:
        with pytest.raises(ProblemError) as unauthorized:
            await anonymous.publish("orders/1", "x")
        assert unauthorized.value.status == 401


def test_client_and_subscribe_check_their_arguments() -> None:
    for url in ("hub.example:8080", "ftp://hub.example"):
        with pytest.raises(ValueError, match="http:// or https://"):
            Client(url)
    hub = Client("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="at least one topic"):
        hub.subscribe()
    for bad in ("abc", -1, "1.5", True):
        with pytest.raises(ValueError, match="last_event_id"):
            hub.subscribe("t", last_event_id=bad)
    assert hub.subscribe("t", last_event_id="12").last_event_id == 12
    assert hub.subscribe("t", last_event_id="earliest").last_event_id == "earliest"
