"""SQL producers with least privilege: a real LOGIN role, only a member of sse_hub_producer."""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from sse_hub import store
from sse_hub.config import DEFAULT_MAX_DATA_BYTES
from sse_hub.migrate import PRODUCER_ROLE, grant_producer, migrate_dsn
from tests.conftest import HubFactory
from tests.sse_client import open_stream
from tests.test_stream import publish

_roles = itertools.count()


@dataclass(frozen=True)
class Producer:
    role: str
    dsn: str


def _as_role(dsn: str, role: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}:{quote(password, safe='')}@{host}"))


@pytest.fixture
async def producer(dsn: str, db: asyncpg.Connection) -> AsyncIterator[Producer]:
    """A LOGIN role with a password whose only right is membership of sse_hub_producer.

    Roles belong to the whole cluster the session shares: the name is unique and
    the role is dropped afterwards (with whatever it came to own in this database).
    """
    role = f"sse_hub_t_producer_{os.getpid()}_{next(_roles)}"
    password = secrets.token_urlsafe(16)
    await db.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        await grant_producer(db, role)
        yield Producer(role, _as_role(dsn, role, password))
    finally:
        await db.execute(f"DROP OWNED BY {role}")
        await db.execute(f"DROP ROLE {role}")


@pytest.fixture
async def producer_db(producer: Producer) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(producer.dsn)
    yield conn
    await conn.close()


async def test_producer_publishes_in_its_own_transactions(
    hub: TestServer, producer_db: asyncpg.Connection, producer: Producer
) -> None:
    assert await producer_db.fetchval("SELECT current_user") == producer.role
    stream = await open_stream(hub.port, "/events?topic=orders")
    try:
        await stream.started()
        rolled_back = producer_db.transaction()
        await rolled_back.start()
        await producer_db.execute("SELECT sse_hub.publish('orders', 'rolled back')")
        await rolled_back.rollback()
        async with producer_db.transaction():
            await producer_db.execute("SELECT sse_hub.publish('orders', 'committed', 'paid')")
            # Still open: an event published over HTTP now overtakes it.
            marker = await publish(hub, "orders", "while open")
            seen = await stream.next_event()
            assert (seen.data, int(seen.id or 0)) == ("while open", marker)
        event = await stream.next_event()
        assert (event.data, event.event, int(event.id or 0)) == ("committed", "paid", marker + 1)
    finally:
        stream.close()


FORBIDDEN = [
    "SELECT * FROM sse_hub.events",
    "INSERT INTO sse_hub.events (id, topic, data) VALUES (1, 't', 'forged')",
    "UPDATE sse_hub.events SET data = 'changed'",
    "DELETE FROM sse_hub.events",
    "SELECT * FROM sse_hub.outbox",
    "INSERT INTO sse_hub.outbox (topic, data) VALUES ('t', 'direct')",
    "TRUNCATE sse_hub.outbox",
    "SELECT last_id FROM sse_hub.sequencer",
    "UPDATE sse_hub.sequencer SET last_id = last_id + 100",
    "SELECT sse_hub.append(ARRAY['t'], ARRAY[NULL], ARRAY['via append'])",
    "SELECT sse_hub.append(NULL, NULL, NULL)",
    "SELECT sse_hub.ensure_producer_role()",
    "SELECT * FROM sse_hub.schema_migrations",
    "CREATE TABLE sse_hub.mine (x int)",
    "CREATE FUNCTION sse_hub.publish(text) RETURNS void LANGUAGE sql AS 'SELECT'",
]


@pytest.mark.parametrize("statement", FORBIDDEN)
async def test_producer_can_do_nothing_else(
    db: asyncpg.Connection, producer_db: asyncpg.Connection, statement: str
) -> None:
    await db.execute(
        "SELECT sse_hub.publish('t', 'stored'); SELECT sse_hub.append(NULL, NULL, NULL)"
    )
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        await producer_db.execute(statement)
    rows = await db.fetch("SELECT id, topic, data FROM sse_hub.events")
    assert [tuple(row) for row in rows] == [(1, "t", "stored")]
    assert await store.head(db) == 1
    assert not await store.outbox_pending(db)


async def test_only_publish_is_executable_by_producers(
    db: asyncpg.Connection, producer: Producer
) -> None:
    """Every function of the schema, including those later migrations add."""
    rows = await db.fetch(
        "SELECT p.oid::regprocedure::text AS signature,"
        " has_function_privilege($1, p.oid, 'EXECUTE') AS executable"
        " FROM pg_proc p WHERE p.pronamespace = 'sse_hub'::regnamespace ORDER BY 1",
        producer.role,
    )
    executable = {row["signature"] for row in rows if row["executable"]}
    assert executable == {"sse_hub.publish(text,text,text)"}
    assert len(rows) > 1
    assert await db.fetchval(
        "SELECT has_schema_privilege($1, 'sse_hub', 'USAGE')"
        " AND NOT has_schema_privilege($1, 'sse_hub', 'CREATE')",
        producer.role,
    )


async def test_callers_search_path_cannot_hijack_publish(
    db: asyncpg.Connection, producer_db: asyncpg.Connection, producer: Producer
) -> None:
    """publish() runs as its owner, so a function it resolved in the caller's schema would too."""
    await db.execute(f"CREATE SCHEMA hijack AUTHORIZATION {producer.role}")
    await producer_db.execute(
        "CREATE FUNCTION hijack.octet_length(text) RETURNS integer LANGUAGE sql"
        " AS 'UPDATE sse_hub.sequencer SET last_id = last_id + 1000 RETURNING 1'"
    )
    await producer_db.execute("SET search_path = hijack, pg_catalog")
    await producer_db.execute("SELECT sse_hub.publish('t', 'innocent')")
    assert await store.head(db) == 0
    assert await store.append(db, []) == []
    rows = await db.fetch("SELECT id, data FROM sse_hub.events")
    assert [tuple(row) for row in rows] == [(1, "innocent")]


async def test_producer_role_is_a_group_that_cannot_log_in(db: asyncpg.Connection) -> None:
    row = await db.fetchrow(
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1",
        PRODUCER_ROLE,
    )
    assert row is not None
    assert tuple(row) == (False, False, False, False)


async def _stored_sizes(db: asyncpg.Connection) -> list[int]:
    await store.append(db, [])
    rows = await db.fetch("SELECT octet_length(data) AS size FROM sse_hub.events ORDER BY id")
    return [row["size"] for row in rows]


@pytest.mark.parametrize("size", [DEFAULT_MAX_DATA_BYTES + 1, 20 * 1024 * 1024])
async def test_sql_data_over_the_limit_is_refused(
    db: asyncpg.Connection, producer_db: asyncpg.Connection, size: int
) -> None:
    with pytest.raises(asyncpg.StringDataRightTruncationError) as refused:
        await producer_db.execute("SELECT sse_hub.publish('t', repeat('x', $1))", size)
    assert refused.value.sqlstate == "22001"
    assert refused.value.message == (
        f"sse_hub: data is {size} bytes; the limit is {DEFAULT_MAX_DATA_BYTES} bytes"
    )
    # The hub's own user is held to it too, even with a plain INSERT.
    with pytest.raises(asyncpg.StringDataRightTruncationError):
        await db.execute(
            "INSERT INTO sse_hub.outbox (topic, data) VALUES ('t', repeat('x', $1))", size
        )
    assert not await store.outbox_pending(db)
    assert await _stored_sizes(db) == []


async def test_sql_data_at_the_limit_is_published(
    db: asyncpg.Connection, producer_db: asyncpg.Connection
) -> None:
    limit = DEFAULT_MAX_DATA_BYTES
    await producer_db.execute("SELECT sse_hub.publish('t', repeat('x', $1))", limit)
    # The limit counts bytes of UTF-8, as on HTTP: 'é' is two.
    await producer_db.execute("SELECT sse_hub.publish('t', repeat('é', $1))", limit // 2)
    with pytest.raises(asyncpg.StringDataRightTruncationError, match=f"is {limit + 1} bytes"):
        await producer_db.execute("SELECT sse_hub.publish('t', repeat('é', $1) || 'x')", limit // 2)
    assert await _stored_sizes(db) == [limit, limit]


async def test_sql_limit_is_the_hubs_max_data(
    start_hub: HubFactory, dsn: str, db: asyncpg.Connection
) -> None:
    assert await db.fetchval("SELECT max_data_bytes FROM sse_hub.limits") == DEFAULT_MAX_DATA_BYTES
    hub = await start_hub(max_data_bytes=1000)
    with pytest.raises(asyncpg.StringDataRightTruncationError, match="the limit is 1000 bytes"):
        await db.execute("SELECT sse_hub.publish('t', repeat('x', 1001))")
    await db.execute("SELECT sse_hub.publish('t', repeat('x', 1000))")
    async with (
        aiohttp.ClientSession() as session,
        session.post(hub.make_url("/events"), json={"topic": "t", "data": "x" * 1001}) as response,
    ):
        assert response.status == 413
    await migrate_dsn(dsn)  # `sse-hub migrate` and the other commands leave it as it is
    assert await db.fetchval("SELECT max_data_bytes FROM sse_hub.limits") == 1000
    assert await _stored_sizes(db) == [1000]
