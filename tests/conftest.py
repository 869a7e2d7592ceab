"""Shared fixtures: a real PostgreSQL for the session, a fresh database per test.

``SSE_HUB_TEST_DSN`` points the suite at an existing server (its role needs
CREATEDB); without it a throwaway embedded PostgreSQL is started on a free port.
Migrations run once into a template database; each test gets its own copy.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from sse_hub.app import create_app
from sse_hub.config import Settings
from sse_hub.embedded_pg import EmbeddedPostgres
from sse_hub.front_door import FrontDoorSite
from sse_hub.migrate import migrate_dsn

TEMPLATE_DB = "sse_hub_test_template"
_counter = itertools.count()


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    external = os.environ.get("SSE_HUB_TEST_DSN")
    if external:
        yield external
        return
    server = EmbeddedPostgres.throwaway()
    try:
        yield asyncio.run(server.start())
    finally:
        asyncio.run(server.remove())


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_dsn(pg_admin_dsn: str) -> str:
    async def build() -> None:
        await _admin(
            pg_admin_dsn,
            f"DROP DATABASE IF EXISTS {TEMPLATE_DB}",
            f"CREATE DATABASE {TEMPLATE_DB}",
        )
        await migrate_dsn(with_database(pg_admin_dsn, TEMPLATE_DB))

    asyncio.run(build())
    return with_database(pg_admin_dsn, TEMPLATE_DB)


@pytest.fixture
async def fresh_db(pg_admin_dsn: str) -> AsyncIterator[str]:
    """An empty database (no migrations applied)."""
    name = f"sse_hub_t{os.getpid()}_{next(_counter)}"
    await _admin(pg_admin_dsn, f"CREATE DATABASE {name}")
    yield with_database(pg_admin_dsn, name)
    await _admin(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def dsn(pg_admin_dsn: str, template_dsn: str) -> AsyncIterator[str]:
    """A migrated database of this test's own."""
    name = f"sse_hub_t{os.getpid()}_{next(_counter)}"
    await _admin(pg_admin_dsn, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    yield with_database(pg_admin_dsn, name)
    await _admin(pg_admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn)
    yield conn
    await conn.close()


HubFactory = Callable[..., Awaitable[TestServer]]


class FrontDoorTestServer(TestServer):
    """A ``TestServer`` whose connections meet the front door first, as under ``sse-hub serve``.

    Plain stream requests are then served by the front door, everything else by
    aiohttp: the suite runs both paths as the hub does.
    """

    def __init__(self, app: web.Application, *, head_timeout_s: float) -> None:
        super().__init__(app, host="127.0.0.1")
        self._head_timeout_s = head_timeout_s

    async def start_server(
        self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any
    ) -> None:
        if self.runner:
            return
        self.runner = await self._make_runner(handler_cancellation=True, **kwargs)
        await self.runner.setup()
        sock = self.socket_factory(self.host, 0, socket.AF_INET)
        self.host, self.port = sock.getsockname()[:2]
        assert isinstance(self.runner, web.AppRunner)
        site = FrontDoorSite(self.runner, sock=sock, head_timeout_s=self._head_timeout_s)
        await site.start()
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")


@pytest.fixture
async def start_hub(dsn: str) -> AsyncIterator[HubFactory]:
    """Start real hubs on real ports (stopped at the end of the test)."""
    servers: list[TestServer] = []

    async def start(**overrides: object) -> TestServer:
        settings = Settings(**{"dsn": dsn, **overrides})  # type: ignore[arg-type]
        server = FrontDoorTestServer(
            create_app(settings), head_timeout_s=settings.request_head_timeout_s
        )
        await server.start_server()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        await server.close()


@pytest.fixture
async def hub(start_hub: HubFactory) -> TestServer:
    return await start_hub()


def app_of(server: TestServer) -> web.Application:
    app = server.app
    assert app is not None
    return app


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    """A folder for an embedded cluster of the test's own.

    Not under pytest's tmp_path: its parents are private to root, and the server
    may run as another user that must be able to reach the directory.
    """
    folder = Path(tempfile.mkdtemp(prefix="sse-hub-test-cluster-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
