"""Apply the numbered SQL files of ``migrations/`` once each, in order.

Every hub runs this at start-up, so several may run it at the same moment: a
session advisory lock makes them take turns, and the second one finds nothing
left to do. Each file runs in its own transaction together with the row that
records it, so a failed file leaves no trace. A file whose text changed after it
was applied is refused (its SHA-256 is stored): the database would no longer be
what the files describe.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

MIGRATIONS_LOCK_KEY = 0x55E_4B_0001
PRODUCER_ROLE = "sse_hub_producer"
_FILE_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS sse_hub;
CREATE TABLE IF NOT EXISTS sse_hub.schema_migrations (
    version text PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


log = logging.getLogger(__name__)

_SCHEMA_EXISTS = "42P06"  # duplicate_schema


class MigrationError(Exception):
    pass


class GrantError(MigrationError):
    """A role could not be made a producer; the message says why and what to do."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def default_directory() -> Path:
    """``migrations/`` of a source checkout, else the copy installed with the package."""
    checkout = Path(__file__).resolve().parent.parent / "migrations"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("sse_hub") / "migrations"))


def load_migrations(directory: Path | None = None) -> list[Migration]:
    folder = directory or default_directory()
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_some_name.sql")
        found.append(Migration(match.group(1), path.name, path.read_text(encoding="utf-8")))
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a number in {folder}")
    return found


@asynccontextmanager
async def _migrations_lock(conn: asyncpg.Connection) -> AsyncIterator[None]:
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATIONS_LOCK_KEY)
    try:
        yield
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK_KEY)


def _log_server_message(name: str) -> Callable[[object, Any], None]:
    """Log what a migration file raises: WARNING as a warning, NOTICE as information."""

    def listener(_: object, message: Any) -> None:
        if getattr(message, "sqlstate", None) == _SCHEMA_EXISTS:
            return  # 0001 says CREATE SCHEMA IF NOT EXISTS after _BOOTSTRAP made it
        severity = getattr(message, "severity_en", None) or getattr(message, "severity", "")
        level = logging.WARNING if severity == "WARNING" else logging.INFO
        hint = getattr(message, "hint", None)
        log.log(level, "%s: %s%s", name, message.message, f" ({hint})" if hint else "")

    return listener


async def apply_migrations(conn: asyncpg.Connection, directory: Path | None = None) -> list[str]:
    """Apply what is pending; returns the names of the files applied now."""
    migrations = load_migrations(directory)
    applied_now: list[str] = []
    async with _migrations_lock(conn):
        await conn.execute(_BOOTSTRAP)
        rows = await conn.fetch("SELECT version, name, checksum FROM sse_hub.schema_migrations")
        recorded = {row["version"]: row for row in rows}
        for migration in migrations:
            row = recorded.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"{migration.name} was changed after it was applied "
                        f"(as {row['name']}); add a new migration instead"
                    )
                continue
            listener = _log_server_message(migration.name)
            conn.add_log_listener(listener)
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO sse_hub.schema_migrations (version, name, checksum)"
                        " VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            finally:
                conn.remove_log_listener(listener)
            applied_now.append(migration.name)
    return applied_now


async def grant_producer(conn: asyncpg.Connection, role: str) -> None:
    """Make ``role`` a member of ``sse_hub_producer``: it may then call only ``sse_hub.publish()``.

    Sets up the group role first when it is missing (see migration 0002).
    Raises ``GrantError`` when ``role`` does not exist or this user may not do it.
    """
    async with _migrations_lock(conn):
        if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role
        ):
            raise GrantError(
                f"role {role!r} does not exist; create it first (CREATE ROLE ... LOGIN)"
            )
        if not await conn.fetchval("SELECT sse_hub.ensure_producer_role()"):
            raise GrantError(
                f"role {PRODUCER_ROLE} is missing and this user may not create roles: have a"
                f" role administrator run CREATE ROLE {PRODUCER_ROLE} NOLOGIN, then run this again"
            )
        statement = await conn.fetchval(
            f"SELECT format('GRANT {PRODUCER_ROLE} TO %I', $1::text)", role
        )
        try:
            await conn.execute(statement)
        except asyncpg.PostgresError as exc:
            raise GrantError(f"{statement} failed: {exc}") from None


async def store_data_limit(conn: asyncpg.Connection, max_data_bytes: int) -> None:
    """Hold SQL producers to ``max_data_bytes`` of data per event (a hub's ``--max-data``)."""
    async with conn.transaction():
        previous = await conn.fetchval("SELECT max_data_bytes FROM sse_hub.limits FOR UPDATE")
        if previous != max_data_bytes:
            await conn.execute("UPDATE sse_hub.limits SET max_data_bytes = $1", max_data_bytes)
            log.info(
                "data limit for SQL producers: %d bytes (was %d), from --max-data",
                max_data_bytes,
                previous,
            )


async def migrate_dsn(
    dsn: str, directory: Path | None = None, *, max_data_bytes: int | None = None
) -> list[str]:
    """Apply pending migrations; with ``max_data_bytes``, also store that data limit."""
    conn = await asyncpg.connect(dsn)
    try:
        applied = await apply_migrations(conn, directory)
        if max_data_bytes is not None:
            await store_data_limit(conn, max_data_bytes)
        return applied
    finally:
        await conn.close()
