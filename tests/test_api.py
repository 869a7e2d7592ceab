"""Embedding: the hub mounted inside an existing aiohttp app, publishing from its code."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import sse_hub
from sse_hub.errors import InvalidInput
from tests.sse_client import open_stream

ORDERS = web.AppKey("orders_pool", asyncpg.Pool)


def host_app(dsn: str) -> tuple[web.Application, web.Application]:
    hub_app = sse_hub.create_app(sse_hub.Settings(dsn=dsn))
    app = web.Application()

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        app[ORDERS] = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        async with app[ORDERS].acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY)")
        yield
        await app[ORDERS].close()

    async def create_order(request: web.Request) -> web.Response:
        order_id = int(request.match_info["id"])
        fail = request.query.get("fail") == "1"
        try:
            async with request.app[ORDERS].acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO orders (id) VALUES ($1)", order_id)
                await sse_hub.publish_in_transaction(
                    conn, f"orders/{order_id}", {"id": order_id}, "order.created"
                )
                if fail:
                    raise RuntimeError("business rule failed after publishing")
        except RuntimeError:
            return web.Response(status=409)
        return web.Response(status=201)

    async def notify(request: web.Request) -> web.Response:
        event_id = await sse_hub.hub_of(hub_app).publish("notices", "from the host app")
        return web.json_response({"id": event_id})

    app.cleanup_ctx.append(pool_ctx)
    app.router.add_post("/orders/{id}", create_order)
    app.router.add_post("/notify", notify)
    app.add_subapp("/realtime", hub_app)
    return app, hub_app


@pytest.fixture
async def host(dsn: str) -> AsyncIterator[TestServer]:
    app, _ = host_app(dsn)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_mounted_hub_streams_and_publishes_under_prefix(host: TestServer) -> None:
    stream = await open_stream(host.port, "/realtime/events?topic=orders/*&topic=notices")
    try:
        await stream.started()
        async with aiohttp.ClientSession() as session:
            async with session.post(host.make_url("/orders/1")) as response:
                assert response.status == 201
            async with session.post(host.make_url("/orders/2?fail=1")) as response:
                assert response.status == 409
            async with session.post(host.make_url("/notify")) as response:
                notice_id = (await response.json())["id"]
            async with session.post(
                host.make_url("/realtime/events"), data={"topic": "notices", "data": "over http"}
            ) as response:
                assert response.status == 201
            async with session.get(host.make_url("/realtime/healthz")) as response:
                assert response.status == 200
        events = await stream.events(3)
        assert [(e.event, e.data) for e in events] == [
            ("order.created", '{"id":1}'),
            (None, "from the host app"),
            (None, "over http"),
        ]
        assert int(events[1].id or 0) == notice_id
    finally:
        stream.close()


async def test_hub_of_before_start_is_a_clear_error(dsn: str) -> None:
    _, hub_app = host_app(dsn)
    with pytest.raises(RuntimeError, match="after start-up"):
        sse_hub.hub_of(hub_app)


async def test_publish_in_transaction_validates(db: asyncpg.Connection) -> None:
    with pytest.raises(InvalidInput):
        await sse_hub.publish_in_transaction(db, "bad\ntopic", "x")
    assert await db.fetchval("SELECT count(*) FROM sse_hub.outbox") == 0


def test_public_api_is_sorted() -> None:
    assert sse_hub.__all__ == sorted(sse_hub.__all__)
    for name in sse_hub.__all__:
        assert hasattr(sse_hub, name)
