"""Deletes events older than ``--retention``, in small batches, one hub at a time.

Every hub runs this loop, but each round first takes a transaction-level
advisory lock with ``pg_try_advisory_xact_lock``: whoever gets it prunes, the
others skip the round. Small batches keep each transaction (and its locks)
short so publishing never waits behind a large delete.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from sse_hub import store
from sse_hub.tasks import stop_task

log = logging.getLogger(__name__)

RETENTION_LOCK_KEY = 0x55E_4B_0002
DEFAULT_BATCH = 5000
MAX_BATCHES_PER_ROUND = 200
MIN_INTERVAL_S = 1.0
MAX_INTERVAL_S = 60.0


def interval_for(retention_s: float) -> float:
    """Prune about ten times per retention period, within [1 s, 60 s]."""
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, retention_s / 10))


async def prune_once(pool: asyncpg.Pool, retention_s: float, *, batch: int = DEFAULT_BATCH) -> int:
    """One round: delete expired events if no other hub is doing so; returns how many."""
    cutoff = datetime.now(UTC) - timedelta(seconds=retention_s)
    deleted = 0
    for _ in range(MAX_BATCHES_PER_ROUND):
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RETENTION_LOCK_KEY):
                return deleted
            count = await store.prune(conn, cutoff, batch)
        deleted += count
        if count < batch:
            break
    return deleted


class Retention:
    def __init__(self, pool: asyncpg.Pool, retention_s: float) -> None:
        self._pool = pool
        self._retention_s = retention_s
        self._task: asyncio.Task[None] | None = None
        self.deleted = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sse-hub-retention")

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _run(self) -> None:
        interval_s = interval_for(self._retention_s)
        while True:
            try:
                self.deleted += await prune_once(self._pool, self._retention_s)
            except Exception as exc:  # the database may be away; try again next round
                log.warning("retention round failed: %s", exc)
            await asyncio.sleep(interval_s)
