from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from sse_hub import store
from sse_hub.embedded_pg import EmbeddedPostgres
from sse_hub.events import NewEvent
from sse_hub.migrate import (
    PRODUCER_ROLE,
    GrantError,
    MigrationError,
    default_directory,
    grant_producer,
    load_migrations,
    migrate_dsn,
)
from tests.conftest import with_database

WAIT_S = 60.0


async def _versions(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT version FROM sse_hub.schema_migrations ORDER BY version")
        return [row["version"] for row in rows]
    finally:
        await conn.close()


def _copy_migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(default_directory(), folder)
    return folder


async def test_apply_then_nothing_left(fresh_db: str, caplog: pytest.LogCaptureFixture) -> None:
    expected = [m.name for m in load_migrations()]
    with caplog.at_level(logging.INFO, logger="sse_hub.migrate"):
        assert await migrate_dsn(fresh_db) == expected
    # Nothing to tell a new user: not the schema the bootstrap made just before 0001.
    assert [r.getMessage() for r in caplog.records] == []
    assert await migrate_dsn(fresh_db) == []
    assert await _versions(fresh_db) == [m.version for m in load_migrations()]


async def test_concurrent_hubs_apply_each_file_once(fresh_db: str) -> None:
    results = await asyncio.gather(*(migrate_dsn(fresh_db) for _ in range(6)))
    applied = [names for names in results if names]
    assert applied == [[m.name for m in load_migrations()]]
    assert await _versions(fresh_db) == [m.version for m in load_migrations()]


async def test_changed_applied_file_is_refused(fresh_db: str, tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path)
    (folder / "0900_extra.sql").write_text("CREATE TABLE sse_hub.extra (x int);\n")
    await migrate_dsn(fresh_db, folder)
    (folder / "0900_extra.sql").write_text("CREATE TABLE sse_hub.extra (x bigint);\n")
    with pytest.raises(MigrationError, match=r"0900_extra\.sql was changed"):
        await migrate_dsn(fresh_db, folder)


async def test_failed_file_leaves_no_trace(fresh_db: str, tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path)
    (folder / "0901_broken.sql").write_text(
        "CREATE TABLE sse_hub.half (x int);\nSELECT no_such_function();\n"
    )
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await migrate_dsn(fresh_db, folder)
    assert "0901" not in await _versions(fresh_db)
    conn = await asyncpg.connect(fresh_db)
    try:
        assert await conn.fetchval("SELECT to_regclass('sse_hub.half')") is None
        # the lock was released: another run proceeds
        (folder / "0901_broken.sql").unlink()
        assert await migrate_dsn(fresh_db, folder) == []
    finally:
        await conn.close()


def test_file_names_are_checked(tmp_path: Path) -> None:
    (tmp_path / "1_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_some_name\.sql"):
        load_migrations(tmp_path)
    (tmp_path / "1_bad.sql").unlink()
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="share a number"):
        load_migrations(tmp_path)


# Roles belong to a whole cluster, and the session's shared cluster already has
# sse_hub_producer (the template database made it): these tests need one without.
@pytest.fixture
def bare_cluster() -> Iterator[str]:
    server = EmbeddedPostgres.throwaway()
    try:
        yield asyncio.run(server.start())
    finally:
        asyncio.run(server.remove())


def _as_role(dsn: str, role: str, password: str, database: str) -> str:
    parts = urlsplit(with_database(dsn, database))
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


async def test_user_who_may_not_create_roles_migrates_with_a_warning(
    bare_cluster: str, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await asyncpg.connect(bare_cluster)
    try:
        await admin.execute(
            "CREATE ROLE hub_owner LOGIN PASSWORD 'owner-pw' NOCREATEROLE;"
            " CREATE ROLE app LOGIN PASSWORD 'app-pw'"
        )
        await admin.execute("CREATE DATABASE hub OWNER hub_owner")
        owner_dsn = _as_role(bare_cluster, "hub_owner", "owner-pw", "hub")
        with caplog.at_level(logging.INFO, logger="sse_hub.migrate"):
            assert await migrate_dsn(owner_dsn) == [m.name for m in load_migrations()]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith("0002_producer_role.sql: sse_hub: role sse_hub_producer")
        assert "hub_owner may not create roles" in warnings[0]
        assert "CREATE ROLE sse_hub_producer NOLOGIN" in warnings[0]
        assert not await admin.fetchval(f"SELECT to_regrole('{PRODUCER_ROLE}') IS NOT NULL")

        owner = await asyncpg.connect(owner_dsn)
        try:
            await owner.execute("SELECT sse_hub.publish('t', 'from the owner')")
            assert await store.append(owner, [NewEvent("t", "x")]) == [2]
            with pytest.raises(GrantError, match=f"CREATE ROLE {PRODUCER_ROLE} NOLOGIN"):
                await grant_producer(owner, "app")
        finally:
            await owner.close()

        # Once a role administrator has made the role, `sse-hub grant` sets it up.
        await admin.execute(f"CREATE ROLE {PRODUCER_ROLE} NOLOGIN")
        admin_hub = await asyncpg.connect(with_database(bare_cluster, "hub"))
        try:
            await grant_producer(admin_hub, "app")
        finally:
            await admin_hub.close()
        app = await asyncpg.connect(_as_role(bare_cluster, "app", "app-pw", "hub"))
        try:
            await app.execute("SELECT sse_hub.publish('t', 'from app')")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.fetch("SELECT * FROM sse_hub.events")
        finally:
            await app.close()
    finally:
        await admin.close()


async def test_two_databases_may_make_the_role_at_the_same_moment(bare_cluster: str) -> None:
    """The migrations' lock is per database; the role is not: creating it may race."""
    admin = await asyncpg.connect(bare_cluster)
    other = await asyncpg.connect(bare_cluster)
    try:
        await admin.execute("CREATE DATABASE racing")
        other_tx = other.transaction()
        await other_tx.start()
        await other.execute(f"CREATE ROLE {PRODUCER_ROLE} NOLOGIN")  # not committed yet
        migration = asyncio.create_task(migrate_dsn(with_database(bare_cluster, "racing")))
        async with asyncio.timeout(WAIT_S):
            # A state of the server, not an event we could await: its CREATE ROLE
            # waits for ours to commit or roll back.
            while not await admin.fetchval(  # noqa: ASYNC110
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity"
                " WHERE datname = 'racing' AND wait_event_type = 'Lock')"
            ):
                await asyncio.sleep(0.02)
        await other_tx.commit()
        assert await migration == [m.name for m in load_migrations()]
        racing = await asyncpg.connect(with_database(bare_cluster, "racing"))
        try:
            assert await racing.fetchval(
                "SELECT has_function_privilege($1, 'sse_hub.publish(text, text, text)', 'EXECUTE')",
                PRODUCER_ROLE,
            )
        finally:
            await racing.close()
    finally:
        await other.close()
        await admin.close()
