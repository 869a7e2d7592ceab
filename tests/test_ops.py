"""``/healthz`` tells the truth about the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import HubFactory


async def health(server: TestServer) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.make_url("/healthz")) as response,
    ):
        return response.status, await response.json()


@pytest.fixture
async def admin(pg_admin_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_admin_dsn)
    yield conn
    await conn.close()


async def test_healthz_is_503_while_the_database_is_unreachable(
    start_hub: HubFactory, dsn: str, admin: asyncpg.Connection
) -> None:
    hub = await start_hub()
    status, body = await health(hub)
    assert (status, body["database"], body["listener"]) == (200, "ok", "connected")
    name = urlsplit(dsn).path.lstrip("/")
    await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        status, body = await health(hub)
        assert status == 503
        async with aiohttp.ClientSession() as session, session.get(hub.make_url("/healthz")) as r:
            assert r.headers["Cache-Control"] == "no-store"
        assert body["database"] == "unreachable"
        assert body["status"] == "degraded"
        async with (
            aiohttp.ClientSession() as session,
            session.post(hub.make_url("/events"), json={"topic": "t", "data": "x"}) as response,
        ):
            assert response.status == 503
            assert response.content_type == "application/problem+json"
            assert response.headers["Retry-After"]
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    # and it recovers by itself
    async with asyncio.timeout(60):
        while (await health(hub))[0] != 200:  # noqa: ASYNC110 - polling the hub's answer
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
async def test_operations_answers_are_never_cached(hub: TestServer, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(hub.make_url(path)) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
