from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from sse_hub.migrate import MigrationError, default_directory, load_migrations, migrate_dsn


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


async def test_apply_then_nothing_left(fresh_db: str) -> None:
    expected = [m.name for m in load_migrations()]
    assert await migrate_dsn(fresh_db) == expected
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
