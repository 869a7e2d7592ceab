"""Which PostgreSQL a command works on: the configured DSN, else the embedded server.

The one place that decides it, for ``serve`` (one process, or the supervisor of
``--workers``), for ``migrate``, ``grant``, ``publish`` and ``tail``, and for an
application that mounts the hub. Migrations are each caller's own decision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sse_hub.config import Settings
from sse_hub.embedded_pg import EmbeddedPostgres

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Database:
    dsn: str
    embedded: EmbeddedPostgres | None = None

    async def close(self) -> None:
        """Stop the embedded server if this process started it (not one it found running)."""
        if self.embedded is not None and self.embedded.owned:
            await self.embedded.stop()


async def open_database(settings: Settings) -> Database:
    """``settings.dsn`` when set; else start (or join) the embedded server in ``--data-dir``."""
    if settings.dsn is not None:
        return Database(settings.dsn)
    embedded = EmbeddedPostgres(settings.data_dir, bindir=settings.pg_bindir)
    dsn = await embedded.start()
    log.info("embedded PostgreSQL in %s", embedded.data_dir)
    return Database(dsn, embedded)
